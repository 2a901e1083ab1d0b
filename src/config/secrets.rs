//! The policy's `secrets:`: which host variables are secrets, the hosts
//! each may be sent to and where in a request. A bound secret never enters
//! the sandbox: its runs see a placeholder, which the door replaces with the
//! value only in requests to those hosts ([`crate::sandbox::secrets`]).
//! `plain: true` hands the guest the value itself, for code that must hold
//! it (to sign with it); `validate` names every batch given one so.

use serde::Deserialize;

/// Where in a request a secret may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// A header's value (basic auth and URL user information included).
    Header,
    Query,
    Path,
    Body,
}

impl Place {
    pub const ALL: [Place; 4] = [Place::Header, Place::Query, Place::Path, Place::Body];

    pub fn name(self) -> &'static str {
        match self {
            Place::Header => "header",
            Place::Query => "query",
            Place::Path => "path",
            Place::Body => "body",
        }
    }
}

/// One entry of `secrets:`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Binding {
    /// The hosts the value may be sent to (names, `*.domain`, addresses).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Where in a request (empty: anywhere but a host name).
    #[serde(default, rename = "in")]
    pub places: Vec<Place>,
    /// May go over plain HTTP (only HTTPS otherwise).
    #[serde(default)]
    pub http: bool,
    /// The guest gets the value itself, not a placeholder.
    #[serde(default)]
    pub plain: bool,
    /// The batches given it without listing it in `ingest_env` (names or
    /// `PREFIX*`); when set, only these may have it.
    #[serde(default)]
    pub batches: Vec<String>,
}

impl Binding {
    /// Check one entry; the error says what to change.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let valid_name = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Err(format!(
                "secrets: `{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                name.escape_default()
            ));
        }
        if self.plain {
            if !self.hosts.is_empty() || !self.places.is_empty() || self.http {
                return Err(format!(
                    "secrets: {name}: `plain: true` hands the code the value itself, so `hosts`, `in` and `http` \
                     would bind nothing; remove them, or remove `plain` to keep the value out of the sandbox"
                ));
            }
            return Ok(());
        }
        if self.hosts.is_empty() {
            return Err(format!(
                "secrets: {name}: give the hosts the value may be sent to (`hosts: [api.example.com]`), \
                 or `plain: true` to hand the code the value itself"
            ));
        }
        for h in &self.hosts {
            super::hosts::check_pattern(h).map_err(|m| format!("secrets: {name}: hosts: {m}"))?;
        }
        Ok(())
    }
}

/// A secret a batch's runs get as a placeholder, with where it may go.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretGrant {
    pub name: String,
    pub hosts: Vec<String>,
    /// Never empty: every place when the policy names none.
    pub places: Vec<Place>,
    /// May go over plain HTTP.
    pub http: bool,
}

impl SecretGrant {
    pub(super) fn new(name: &str, binding: &Binding) -> SecretGrant {
        SecretGrant {
            name: name.to_string(),
            hosts: binding.hosts.clone(),
            places: if binding.places.is_empty() {
                Place::ALL.to_vec()
            } else {
                binding.places.clone()
            },
            http: binding.http,
        }
    }

    /// Whether `host` (lower-case, without brackets) may receive the value.
    pub fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| super::hosts::matches(p, host))
    }

    pub fn allows_place(&self, place: Place) -> bool {
        self.places.contains(&place)
    }

    /// The places it may go, for messages.
    pub fn places_text(&self) -> String {
        let names: Vec<&str> = self.places.iter().map(|p| p.name()).collect();
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(yaml: &str) -> Binding {
        serde_yaml_ng::from_str(yaml).expect("binding")
    }

    #[test]
    fn entries_are_checked_with_what_to_change() {
        assert_eq!(
            binding("hosts: [api.tomtom.com]").check("TOMTOM_KEY"),
            Ok(())
        );
        assert_eq!(binding("plain: true").check("SIGNING_KEY"), Ok(()));
        for (name, yaml, why) in [
            ("K", "{}", "give the hosts"),
            ("K", "hosts: [\"evil.net/x\"]", "is not a host pattern"),
            (
                "K",
                "{plain: true, hosts: [a.example]}",
                "would bind nothing",
            ),
            (
                "1K",
                "hosts: [a.example]",
                "not an environment variable name",
            ),
            (
                "K-EY",
                "hosts: [a.example]",
                "not an environment variable name",
            ),
        ] {
            let e = binding(yaml).check(name).expect_err(yaml);
            assert!(e.contains(why), "{yaml}: {e}");
        }
        assert!(serde_yaml_ng::from_str::<Binding>("in: [cookie]").is_err());
    }

    #[test]
    fn a_grant_without_places_may_go_anywhere_but_a_host_name() {
        let g = SecretGrant::new("K", &binding("hosts: [\"*.example.com\"]"));
        assert!(Place::ALL.iter().all(|p| g.allows_place(*p)));
        assert!(g.allows_host("api.example.com"));
        assert!(!g.allows_host("example.com.evil.net"));
        let g = SecretGrant::new("K", &binding("{hosts: [a.example], in: [query]}"));
        assert!(g.allows_place(Place::Query) && !g.allows_place(Place::Header));
        assert_eq!(g.places_text(), "query");
    }
}

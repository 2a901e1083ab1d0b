//! The policy's `secrets:`: which host variables are secrets, the hosts
//! each may be sent to and where in a request. A bound secret never enters
//! the sandbox: its runs see a placeholder, which the door replaces with the
//! value only in requests to those hosts ([`crate::sandbox::secrets`]).
//! `plain: true` hands the guest the value itself, for code that must hold
//! it (to sign with it); `validate` names every batch given one so.

use serde::Deserialize;

/// A part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Where in a request a secret may be sent: a part, and for a header or a
/// query parameter its name (`header:Authorization`, `query:key`); a part
/// alone allows any of its headers or parameters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Spot {
    pub place: Place,
    pub name: Option<String>,
}

impl TryFrom<String> for Spot {
    type Error = String;

    fn try_from(text: String) -> Result<Spot, String> {
        let (part, name) = match text.split_once(':') {
            Some((p, n)) => (p.trim(), Some(n.trim().to_string())),
            None => (text.trim(), None),
        };
        let place = Place::ALL
            .into_iter()
            .find(|p| p.name() == part)
            .ok_or_else(|| {
                format!(
                    "`{}` is not a part of a request: use header, query, path or body, or header:NAME or query:NAME",
                    text.escape_default()
                )
            })?;
        match &name {
            Some(n) if n.is_empty() => Err(format!("`{text}` names no {part}: write {part}:NAME")),
            Some(_) if matches!(place, Place::Path | Place::Body) => Err(format!(
                "`{text}`: only a header or a query parameter can be named (write `{part}`)"
            )),
            Some(n) if n.chars().any(|c| c.is_control() || c == ' ') => Err(format!(
                "`{}` is not a header or parameter name",
                n.escape_default()
            )),
            _ => Ok(Spot { place, name }),
        }
    }
}

impl Spot {
    /// A whole part of a request: any of its headers or parameters.
    pub fn part(place: Place) -> Spot {
        Spot { place, name: None }
    }

    /// Whether a placeholder found in `place` (under the header or
    /// parameter `name`) is where this spot allows.
    pub fn allows(&self, place: Place, name: Option<&str>) -> bool {
        if self.place != place {
            return false;
        }
        match (&self.name, name) {
            (None, _) => true,
            // Header names are case-insensitive; parameter names are not.
            (Some(want), Some(got)) if place == Place::Header => want.eq_ignore_ascii_case(got),
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        }
    }

    pub fn text(&self) -> String {
        match &self.name {
            Some(n) => format!("{} {n}", self.place.name()),
            None => self.place.name().to_string(),
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
    pub places: Vec<Spot>,
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
    /// Never empty: every part when the policy names none.
    pub places: Vec<Spot>,
    /// May go over plain HTTP.
    pub http: bool,
}

impl SecretGrant {
    pub(super) fn new(name: &str, binding: &Binding) -> SecretGrant {
        SecretGrant {
            name: name.to_string(),
            hosts: binding.hosts.clone(),
            places: if binding.places.is_empty() {
                Place::ALL.into_iter().map(Spot::part).collect()
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

    /// Whether it may go in `place` (under the header or parameter `name`).
    pub fn allows_place(&self, place: Place, name: Option<&str>) -> bool {
        self.places.iter().any(|s| s.allows(place, name))
    }

    /// The places it may go, for messages.
    pub fn places_text(&self) -> String {
        let names: Vec<String> = self.places.iter().map(Spot::text).collect();
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
    }

    #[test]
    fn a_grant_without_places_may_go_anywhere_but_a_host_name() {
        let g = SecretGrant::new("K", &binding("hosts: [\"*.example.com\"]"));
        assert!(Place::ALL.iter().all(|p| g.allows_place(*p, Some("x"))));
        assert!(g.allows_host("api.example.com"));
        assert!(!g.allows_host("example.com.evil.net"));
        let g = SecretGrant::new("K", &binding("{hosts: [a.example], in: [query]}"));
        assert!(g.allows_place(Place::Query, Some("k")) && !g.allows_place(Place::Header, None));
        assert_eq!(g.places_text(), "query");
        let g = SecretGrant::new(
            "K",
            &binding("{hosts: [a.example], in: [\"header:Authorization\", \"query:key\"]}"),
        );
        assert!(g.allows_place(Place::Header, Some("authorization")));
        assert!(!g.allows_place(Place::Header, Some("User-Agent")));
        assert!(
            g.allows_place(Place::Query, Some("key")) && !g.allows_place(Place::Query, Some("Key"))
        );
        assert!(!g.allows_place(Place::Body, None));
        assert_eq!(g.places_text(), "header Authorization, query key");
        for (bad, why) in [
            ("in: [cookie]", "is not a part of a request"),
            (
                "in: [\"body:key\"]",
                "only a header or a query parameter can be named",
            ),
            ("in: [\"header:\"]", "names no header"),
        ] {
            let e = serde_yaml_ng::from_str::<Binding>(&format!("{{hosts: [a.example], {bad}}}"))
                .expect_err(bad)
                .to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}

//! Secrets the guest never holds. For each secret the policy binds to hosts
//! ([`crate::config::secrets`]), a run's `os.environ` holds a placeholder
//! instead of the value: `SANDSTACK-SECRET-<NAME>-<32 hex>`, derived from
//! the run's seed (so unique per run, the same in a replay of it, and
//! nothing of the value). The door puts the value in place of the
//! placeholder only in a request to a host the secret is bound to, over
//! HTTPS unless the binding allows HTTP, and only where the binding allows
//! (header, query, path, body); a placeholder anywhere else stops the run
//! before the request goes out. Whatever comes back has the value put back
//! to the placeholder before the guest (or a cassette) sees it. Cassettes
//! hold the secret's name, `SANDSTACK-SECRET-<NAME>-RECORDED`, in its
//! place.
//!
//! Hand-written: the substitution rules are sandstack's own policy; only
//! the encodings come from crates.

mod echoes;

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::error::ExecError;
use crate::cassette::replace_bytes;
use crate::config::secrets::{Place, SecretGrant};
use echoes::Echoes;

/// What every placeholder and marker starts with (the guest's hashing
/// guard looks for it too: runtime/python/_sandstack_secrets.py).
pub const PREFIX: &str = "SANDSTACK-SECRET-";
/// A shorter value could not be told apart from ordinary text in what
/// comes back, so it could not be kept from the guest.
pub const MIN_VALUE_LEN: usize = 6;

/// A secret a run may use: its binding, and its value from the operator's
/// environment (None when unset there).
#[derive(Debug, Clone)]
pub struct HostSecret {
    pub grant: SecretGrant,
    pub value: Option<String>,
}

/// A secret's name in a cassette, where a run had its placeholder.
pub fn marker(name: &str) -> String {
    format!("{PREFIX}{name}-RECORDED")
}

#[derive(Debug, Clone)]
struct Entry {
    grant: SecretGrant,
    placeholder: String,
    value: Option<String>,
    /// The value as it may come back.
    echoes: Option<Echoes>,
}

type Headers = Vec<(String, String)>;

/// One run's secrets and their placeholders.
#[derive(Debug, Clone, Default)]
pub struct Vault {
    entries: Vec<Entry>,
}

/// A request with the secrets' values in place of their placeholders.
#[derive(Debug)]
pub struct Filled {
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The secrets it carries.
    pub carried: Vec<String>,
}

/// Characters a URL carries as they are; the rest of a value is
/// percent-encoded wherever in a URL it goes.
const URL_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Vault {
    /// The run's placeholders: one for each secret set on the host, or for
    /// each secret at all when `replaying` (a replay needs no value).
    pub fn new(secrets: &[HostSecret], seed: &[u8; 32], replaying: bool) -> Result<Vault, String> {
        let mut entries = Vec::new();
        for s in secrets {
            let value = s.value.clone().filter(|v| !v.is_empty());
            if value.is_none() && !replaying {
                continue;
            }
            if let Some(v) = &value {
                if v.chars().count() < MIN_VALUE_LEN {
                    // Its length is not said: the error reaches the run history.
                    return Err(format!(
                        "secret {} is shorter than {MIN_VALUE_LEN} characters, and so short a value cannot be told \
                         from ordinary text in the replies it must be kept out of: use a longer one, or bind it \
                         with `plain: true` in the policy's `secrets:`",
                        s.grant.name
                    ));
                }
            }
            let digest = Sha256::new()
                .chain_update(b"sandstack secret placeholder\0")
                .chain_update(seed)
                .chain_update(s.grant.name.as_bytes())
                .finalize();
            let echoes = match value.as_deref().map(Echoes::of) {
                Some(Err(why)) => {
                    return Err(format!(
                        "secret {} {why}: bind it with `plain: true` in the policy's `secrets:`, or use a shorter one",
                        s.grant.name
                    ))
                }
                Some(Ok(echoes)) => Some(echoes),
                None => None,
            };
            entries.push(Entry {
                placeholder: format!("{PREFIX}{}-{}", s.grant.name, hex::encode(&digest[..16])),
                grant: s.grant.clone(),
                value,
                echoes,
            });
        }
        // A value inside another is found after it.
        entries.sort_by_key(|e: &Entry| std::cmp::Reverse(e.value.as_ref().map_or(0, String::len)));
        Ok(Vault { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The guest's variables: each secret's name and placeholder.
    pub fn placeholders(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .map(|e| (e.grant.name.clone(), e.placeholder.clone()))
            .collect()
    }

    /// (placeholder, marker) pairs, for what a cassette records.
    pub fn markers(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|e| (e.placeholder.clone(), marker(&e.grant.name)))
            .collect()
    }

    /// A recorded text with this run's placeholders where the recording
    /// has markers, so a replay sees what the recorded run saw.
    pub fn unmark(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for e in &self.entries {
            out = replace_bytes(
                &out,
                marker(&e.grant.name).as_bytes(),
                e.placeholder.as_bytes(),
            );
        }
        out
    }

    pub fn unmark_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.unmark(text.as_bytes())).into_owned()
    }

    /// `bytes` from `hosts` (the code's and the wire's) with every form of
    /// the values those hosts were given put back to their placeholders.
    /// Only a bound host ever had a value: scrubbing what another sends
    /// would tell the code which of its guesses was the value.
    pub fn scrub<'a>(&self, hosts: &[&str], bytes: &'a [u8]) -> Cow<'a, [u8]> {
        self.scrub_values(bytes, |e| hosts.iter().any(|h| e.grant.allows_host(h)))
    }

    /// `bytes` with the values of the entries `which` picks put back to
    /// their placeholders; borrowed when nothing changed.
    fn scrub_values<'a>(&self, bytes: &'a [u8], which: impl Fn(&Entry) -> bool) -> Cow<'a, [u8]> {
        let mut out = Cow::Borrowed(bytes);
        for e in self.entries.iter().filter(|e| which(e)) {
            let Some(echoes) = &e.echoes else { continue };
            if let Cow::Owned(changed) = echoes.replace(&out, e.placeholder.as_bytes()) {
                out = Cow::Owned(changed);
            }
        }
        out
    }

    pub fn scrub_text(&self, hosts: &[&str], text: &str) -> String {
        String::from_utf8_lossy(&self.scrub(hosts, text.as_bytes())).into_owned()
    }

    /// A request's headers in a run with secrets: no compression and no
    /// byte ranges asked for, since a reply compressed or cut into pieces
    /// could not be checked for a value.
    pub fn guard_request(&self, headers: &mut Vec<(String, String)>) {
        if self.entries.is_empty() {
            return;
        }
        headers.retain(|(k, _)| {
            let k = k.trim();
            !(k.eq_ignore_ascii_case("accept-encoding")
                || k.eq_ignore_ascii_case("range")
                || k.eq_ignore_ascii_case("if-range")
                || k.eq_ignore_ascii_case("te"))
        });
        headers.push(("Accept-Encoding".into(), "identity".into()));
    }

    /// A reply from `hosts` as the code may see it: the values put back to
    /// their placeholders, and the headers that would tell what was changed
    /// (a hash of the body, its length) made to fit. Refused (the reason)
    /// when it came encoded, or as a part, in a run with secrets.
    pub fn scrub_reply(
        &self,
        hosts: &[&str],
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(Headers, Vec<u8>), String> {
        if self.entries.is_empty() {
            return Ok((headers, body));
        }
        let names: Vec<&str> = self.entries.iter().map(|e| e.grant.name.as_str()).collect();
        let encoded = headers.iter().find(|(k, v)| {
            (k.eq_ignore_ascii_case("content-encoding")
                || k.eq_ignore_ascii_case("transfer-encoding"))
                && !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "identity" | "chunked"
                )
        });
        if let Some((k, v)) = encoded {
            return Err(format!(
                "the reply came encoded ({k}: {}) though none was asked for; in a run with secrets ({}) every \
                 reply is checked for their values, which an encoding would hide, so it was not handed over",
                crate::escape::terminal_line(&self.scrub_text(hosts, v)),
                names.join(", ")
            ));
        }
        if status == 206 {
            return Err(format!(
                "the reply is a part (206) though no range was asked for; in a run with secrets ({}) a reply \
                 cut into parts could not be checked for their values, so it was not handed over",
                names.join(", ")
            ));
        }
        let scrubbed = self.scrub(hosts, &body);
        let changed = matches!(scrubbed, Cow::Owned(_));
        let body = scrubbed.into_owned();
        let headers = headers
            .into_iter()
            .filter(|(k, _)| {
                !changed
                    || ![
                        "etag",
                        "digest",
                        "content-md5",
                        "content-digest",
                        "repr-digest",
                    ]
                    .iter()
                    .any(|h| k.eq_ignore_ascii_case(h))
            })
            .map(|(k, v)| {
                if changed && k.eq_ignore_ascii_case("content-length") {
                    (k, body.len().to_string())
                } else {
                    (self.scrub_text(hosts, &k), self.scrub_text(hosts, &v))
                }
            })
            .collect();
        Ok((headers, body))
    }

    /// Stop a run whose output, log, error or rows hold a secret's value.
    /// The code never had one, so this is the last line: a reply that
    /// brought a value back in a form the scrub did not know. Nothing of
    /// the run is stored, and what it printed and logged is shown scrubbed.
    pub fn stop_if_held(&self, report: &mut super::ExecReport) {
        if self.entries.is_empty() {
            return;
        }
        let error_text = report.outcome.as_ref().err().map(ToString::to_string);
        let held = |at: &'static str, name: Option<&str>| name.map(|n| (at, n.to_string()));
        let found = held("output", self.held_in(report.output.as_bytes()))
            .or_else(|| {
                let name = report.interactions.iter().find_map(|i| {
                    let text = serde_json::to_vec(i).unwrap_or_default();
                    self.held_in(&text)
                });
                held("HTTP exchanges", name)
            })
            .or_else(|| {
                let name = report
                    .logs
                    .iter()
                    .find_map(|l| self.held_in(l.message.as_bytes()));
                held("log", name)
            })
            .or_else(|| {
                let name = error_text
                    .as_deref()
                    .and_then(|t| self.held_in(t.as_bytes()));
                held("error", name)
            })
            .or_else(|| {
                let name = report
                    .outcome
                    .as_ref()
                    .ok()
                    .and_then(|r| self.held_in_rows(r));
                held("rows", name)
            });
        let Some((at, name)) = found else { return };
        // Nothing of the run is kept for a cassette either.
        report.interactions.clear();
        report.output = self.scrub_everywhere(&report.output);
        for l in &mut report.logs {
            l.message = self.scrub_everywhere(&l.message);
        }
        report.outcome = Err(ExecError::Secret(format!(
            "the run's {at} held the value of secret {name}, which never enters the sandbox: a reply from a \
             host it is bound to must have brought it back in a form sandstack does not recognise. The run \
             was stopped and nothing of it stored; check what that host returns"
        )));
    }

    /// Every value in `text` put back to its placeholder, whoever sent it.
    pub fn scrub_everywhere(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.scrub_values(text.as_bytes(), |_| true)).into_owned()
    }

    /// The first secret whose value a text column of `rows` holds.
    fn held_in_rows(&self, rows: &arrow::record_batch::RecordBatch) -> Option<&str> {
        use arrow::array::AsArray;
        let named = rows
            .schema()
            .fields()
            .iter()
            .find_map(|f| self.held_in(f.name().as_bytes()));
        named.or_else(|| {
            rows.columns().iter().find_map(|col| {
                let texts: Vec<&str> = if let Some(a) = col.as_string_opt::<i32>() {
                    a.iter().flatten().collect()
                } else if let Some(a) = col.as_string_opt::<i64>() {
                    a.iter().flatten().collect()
                } else if let Some(a) = col.as_string_view_opt() {
                    a.iter().flatten().collect()
                } else {
                    return None;
                };
                texts.iter().find_map(|t| self.held_in(t.as_bytes()))
            })
        })
    }

    /// Stop a request in which the code sends a value itself (it can only
    /// have one from a reply the scrub missed).
    fn refuse_values(
        &self,
        url: &reqwest::Url,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), ExecError> {
        let held = self.held_in(url.as_str().as_bytes()).or_else(|| {
            headers
                .iter()
                .find_map(|(k, v)| {
                    self.held_in(k.as_bytes())
                        .or_else(|| self.held_in(v.as_bytes()))
                })
                .or_else(|| self.held_in(body))
        });
        match held {
            Some(name) => Err(ExecError::Secret(format!(
                "the code sent the value of secret {name} itself, which never enters the sandbox: a reply from a \
                 host it is bound to must have brought it back in a form sandstack does not recognise. The run \
                 was stopped before the request went out and nothing of it stored; check what that host returns"
            ))),
            None => Ok(()),
        }
    }

    /// The first secret whose value `bytes` hold in any form.
    pub fn held_in(&self, bytes: &[u8]) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.echoes.as_ref().is_some_and(|x| x.found_in(bytes)))
            .map(|e| e.grant.name.as_str())
    }

    /// Refuse the request if it carries a placeholder where its secret may
    /// not go. `guest_url` is the URL the code asked for: its host and
    /// scheme are what a binding names.
    pub fn judge(
        &self,
        guest_url: &reqwest::Url,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), ExecError> {
        self.refuse_values(guest_url, headers, body)?;
        for e in &self.entries {
            e.judge(guest_url, None, headers, body)?;
        }
        Ok(())
    }

    /// The request to send to `wire_url` (the guest's URL, or an
    /// `http_rewrite` of it), with the values in place; refused as
    /// [`Self::judge`] refuses, and when the value would go to a rewrite
    /// target the secret is not bound to (a rewrite may not carry a secret
    /// anywhere its binding does not name).
    pub fn fill(
        &self,
        guest_url: &reqwest::Url,
        wire_url: &reqwest::Url,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Filled, ExecError> {
        self.refuse_values(guest_url, headers, body)?;
        let mut filled = Filled {
            url: wire_url.clone(),
            headers: headers.to_vec(),
            body: body.to_vec(),
            carried: Vec::new(),
        };
        let media = content_type(headers);
        let json = media.as_deref().is_some_and(|t| t.contains("json"));
        let form = media.as_deref() == Some("application/x-www-form-urlencoded");
        for e in &self.entries {
            if !e.judge(guest_url, Some(wire_url), headers, body)? {
                continue;
            }
            filled.carried.push(e.grant.name.clone());
            let Some(value) = &e.value else {
                return Err(e.refuse(
                    guest_url,
                    format!(
                        "it carries secret {}, which is not set in sandstack's environment",
                        e.grant.name
                    ),
                    " (set it, or replay from a cassette)",
                ));
            };
            let p = e.placeholder.as_str();
            let in_url = percent_encoding::utf8_percent_encode(value, URL_KEEP).to_string();
            let mut url = filled.url.as_str().replace(p, &in_url);
            if let Some(at) = url.find('#') {
                url.truncate(at); // never sent; nothing of the value stays in it
            }
            filled.url = reqwest::Url::parse(&url).map_err(|err| {
                e.refuse(
                    guest_url,
                    format!("its URL is not valid with secret {}: {err}", e.grant.name),
                    "",
                )
            })?;
            for (_, v) in filled.headers.iter_mut() {
                *v = fill_header(v, p, value);
            }
            let in_body = if json {
                let quoted = serde_json::Value::String(value.clone()).to_string();
                quoted[1..quoted.len() - 1].to_string()
            } else if form {
                in_url.clone()
            } else {
                value.clone()
            };
            filled.body = replace_bytes(&filled.body, p.as_bytes(), in_body.as_bytes());
        }
        Ok(filled)
    }
}

impl Entry {
    /// Whether the request carries this secret's placeholder, or why it
    /// may not.
    fn judge(
        &self,
        guest_url: &reqwest::Url,
        wire_url: Option<&reqwest::Url>,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<bool, ExecError> {
        let p = self.placeholder.as_str();
        let name = &self.grant.name;
        let host = crate::config::hosts::of_url(guest_url);
        let nowhere = |part: &str| {
            self.refuse(
                guest_url,
                format!(
                    "it carries secret {name} in {part}; a secret goes only in a header's value, the query, \
                     the path or the body"
                ),
                " (the request did not go out)",
            )
        };
        // Host names are lower-cased when parsed.
        if host.contains(&p.to_ascii_lowercase()) {
            return Err(nowhere("its host name"));
        }
        if headers.iter().any(|(k, _)| k.contains(p)) {
            return Err(nowhere("a header's name"));
        }
        // (part, the header or parameter it is in)
        let mut places: Vec<(Place, Option<String>)> = Vec::new();
        if guest_url.username().contains(p) || guest_url.password().is_some_and(|w| w.contains(p)) {
            // Sent as basic credentials.
            places.push((Place::Header, Some("Authorization".into())));
        }
        if guest_url.path().contains(p) {
            places.push((Place::Path, None));
        }
        // Some servers split on `;` too: a pair is judged as either would see it.
        for pair in guest_url.query().unwrap_or("").split(['&', ';']) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key.contains(p) {
                return Err(nowhere("a query parameter's name"));
            }
            if value.contains(p) {
                let key = url::form_urlencoded::parse(key.as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_default();
                places.push((Place::Query, Some(key)));
            }
        }
        for (k, v) in headers {
            if v.contains(p) || basic_credentials(v).is_some_and(|c| c.contains(p)) {
                places.push((Place::Header, Some(k.clone())));
            }
        }
        if memchr::memmem::find(body, p.as_bytes()).is_some() {
            places.push((Place::Body, None));
        }
        if places.is_empty() {
            return Ok(false);
        }
        // Where the code sends it, and where a rewrite would take it.
        let rewritten = wire_url.filter(|w| w.as_str() != guest_url.as_str());
        for (url, via) in std::iter::once((guest_url, String::new()))
            .chain(rewritten.map(|w| (w, format!(" (where http_rewrite sends {host})"))))
        {
            let to = crate::config::hosts::of_url(url);
            if !self.grant.allows_host(&to) {
                return Err(self.refuse(
                    guest_url,
                    format!(
                        "it carries secret {name}, which the policy's `secrets:` lets go only to {}, not to {to}{via}",
                        self.grant.hosts.join(", ")
                    ),
                    " (the request did not go out)",
                ));
            }
            if url.scheme() != "https" && !self.grant.http {
                return Err(self.refuse(
                    guest_url,
                    format!(
                        "it carries secret {name} over {}{via}, and the policy's `secrets:` lets {name} go only over https",
                        url.scheme()
                    ),
                    " (the request did not go out; the operator may allow plain http with `http: true`)",
                ));
            }
        }
        if let Some((place, part)) = places
            .iter()
            .find(|(place, part)| !self.grant.allows_place(*place, part.as_deref()))
        {
            let shown = match (place, part) {
                (Place::Header, Some(h)) => format!("header {}", crate::escape::terminal_line(h)),
                (Place::Query, Some(q)) => {
                    format!("query parameter {}", crate::escape::terminal_line(q))
                }
                (place, _) => place.name().to_string(),
            };
            return Err(self.refuse(
                guest_url,
                format!(
                    "it carries secret {name} in its {shown}, and the policy's `secrets:` lets {name} go only in its {}",
                    self.grant.places_text()
                ),
                " (the request did not go out)",
            ));
        }
        Ok(true)
    }

    fn refuse(&self, guest_url: &reqwest::Url, reason: String, hint: &str) -> ExecError {
        ExecError::Policy {
            target: crate::cassette::Scrubber::default().url(guest_url.as_str()),
            reason,
            hint: hint.to_string(),
        }
    }
}

/// The body's media type, lower-case, without parameters; none when the
/// code sent no `Content-Type`, or several.
fn content_type(headers: &[(String, String)]) -> Option<String> {
    let mut types = headers
        .iter()
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"));
    let (_, v) = types.next()?;
    if types.next().is_some() {
        return None;
    }
    let media = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(media)
}

/// The `user:password` of a `Basic` authorization value.
fn basic_credentials(value: &str) -> Option<String> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// A header's value with `value` for `placeholder`, inside basic
/// credentials too.
fn fill_header(header: &str, placeholder: &str, value: &str) -> String {
    match basic_credentials(header) {
        Some(c) if c.contains(placeholder) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(c.replace(placeholder, value))
        ),
        _ => header.replace(placeholder, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secrets::{Place, Spot};

    const VALUE: &str = "s3cr3t value/+&\"x";

    fn grant(hosts: &[&str], places: &[Place], http: bool) -> SecretGrant {
        let places = if places.is_empty() {
            &Place::ALL[..]
        } else {
            places
        };
        SecretGrant {
            name: "API_KEY".into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            places: places.iter().copied().map(Spot::part).collect(),
            http,
        }
    }

    fn vault(g: SecretGrant) -> (Vault, String) {
        let v = Vault::new(
            &[HostSecret {
                grant: g,
                value: Some(VALUE.into()),
            }],
            &[7; 32],
            false,
        )
        .expect("vault");
        let p = v.placeholders()["API_KEY"].clone();
        (v, p)
    }

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn placeholders_are_per_seed_and_say_nothing_of_the_value() {
        let secret = |value: &str| HostSecret {
            grant: grant(&["a.example"], &[], false),
            value: Some(value.into()),
        };
        let p = |value: &str, seed: u8| {
            Vault::new(&[secret(value)], &[seed; 32], false)
                .expect("vault")
                .placeholders()["API_KEY"]
                .clone()
        };
        assert_eq!(p("first-value", 1), p("other-value", 1));
        assert_ne!(p("first-value", 1), p("first-value", 2));
        assert!(p("first-value", 1).starts_with("SANDSTACK-SECRET-API_KEY-"));
        let unset = HostSecret {
            grant: grant(&["a.example"], &[], false),
            value: None,
        };
        let live = Vault::new(std::slice::from_ref(&unset), &[1; 32], false).expect("vault");
        assert!(live.is_empty(), "an unset secret has no placeholder live");
        let replay = Vault::new(&[unset], &[1; 32], true).expect("vault");
        assert_eq!(replay.placeholders()["API_KEY"], p("x-value", 1));
        let e = Vault::new(&[secret("abc")], &[1; 32], false).expect_err("short");
        assert!(
            e.contains("API_KEY is shorter than 6 characters") && e.contains("plain: true"),
            "{e}"
        );
        assert!(!e.contains('3'), "the length is not said: {e}");
    }

    #[test]
    fn values_go_in_encoded_for_where_they_stand_to_bound_hosts_only() {
        let (v, p) = vault(grant(&["api.example.com", "127.0.0.1"], &[], true));
        let guest = url(&format!("https://api.example.com/v1/{p}?key={p}#{p}"));
        let wire = url(&format!("http://127.0.0.1:9/v1/{p}?key={p}#{p}"));
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("user:{p}"));
        let headers = vec![
            ("Authorization".to_string(), format!("Bearer {p}")),
            ("X-Basic".to_string(), format!("Basic {auth}")),
            ("Content-Type".to_string(), "application/json".to_string()),
        ];
        let body = format!("{{\"key\": \"{p}\"}}");
        let f = v
            .fill(&guest, &wire, &headers, body.as_bytes())
            .expect("bound host");
        let encoded = "s3cr3t%20value%2F%2B%26%22x";
        assert_eq!(
            f.url.as_str(),
            format!("http://127.0.0.1:9/v1/{encoded}?key={encoded}")
        );
        assert_eq!(f.headers[0].1, format!("Bearer {VALUE}"));
        let basic = basic_credentials(&f.headers[1].1).expect("basic");
        assert_eq!(basic, format!("user:{VALUE}"));
        let sent: serde_json::Value = serde_json::from_slice(&f.body).expect("json body");
        assert_eq!(sent["key"], VALUE);
    }

    #[test]
    fn a_placeholder_anywhere_else_stops_the_request_naming_the_secret() {
        let (v, p) = vault(grant(&["api.example.com"], &[Place::Header], false));
        let none: Vec<(String, String)> = Vec::new();
        let bearer = vec![("Authorization".to_string(), format!("Bearer {p}"))];
        let cases: Vec<(String, Headers, String, &str)> = vec![
            (
                format!("https://evil.example.net/?k={p}"),
                none.clone(),
                String::new(),
                "only to api.example.com, not to evil.example.net",
            ),
            (
                "https://evil.example.net/".into(),
                bearer.clone(),
                String::new(),
                "not to evil.example.net",
            ),
            (
                "https://evil.example.net/".into(),
                none.clone(),
                format!("k={p}"),
                "not to evil.example.net",
            ),
            (
                "http://api.example.com/".into(),
                bearer.clone(),
                String::new(),
                "only over https",
            ),
            (
                format!("https://api.example.com/?k={p}"),
                none.clone(),
                String::new(),
                "in its query parameter k, and the policy's `secrets:` lets API_KEY go only in its header",
            ),
            (
                format!("https://{p}.api.example.com/"),
                none.clone(),
                String::new(),
                "in its host name",
            ),
            (
                "https://api.example.com/".into(),
                vec![(p.clone(), "x".into())],
                String::new(),
                "a header's name",
            ),
        ];
        for (u, headers, body, why) in cases {
            let e = v
                .judge(&url(&u), &headers, body.as_bytes())
                .expect_err(&u)
                .to_string();
            assert!(e.contains(why) && e.contains("API_KEY"), "{u}: {e}");
            assert!(!e.contains(VALUE), "{e}");
        }
        assert!(v
            .judge(&url("https://api.example.com/"), &bearer, b"")
            .is_ok());
        // A named parameter is judged as a server splitting on `;` sees it.
        let named = SecretGrant {
            places: vec![Spot {
                place: Place::Query,
                name: Some("key".into()),
            }],
            ..grant(&["api.example.com"], &[], false)
        };
        let (nv, np) = vault(named);
        assert!(nv
            .judge(
                &url(&format!("https://api.example.com/?key={np}")),
                &[],
                b""
            )
            .is_ok());
        let e = nv
            .judge(
                &url(&format!("https://api.example.com/?key={np};note={np}")),
                &[],
                b"",
            )
            .expect_err("a second parameter after ;")
            .to_string();
        assert!(e.contains("in its query parameter note"), "{e}");
        // A rewrite takes the value nowhere its binding does not name.
        let guest = url("https://api.example.com/");
        for (wire, why) in [
            (
                "https://collector.example.net/",
                "not to collector.example.net (where http_rewrite sends api.example.com)",
            ),
            (
                "http://api.example.com/",
                "over http (where http_rewrite sends api.example.com)",
            ),
        ] {
            let e = v
                .fill(&guest, &url(wire), &bearer, b"")
                .expect_err(wire)
                .to_string();
            assert!(e.contains(why), "{wire}: {e}");
        }
        assert!(v
            .fill(&guest, &url("https://api.example.com/v2/"), &bearer, b"")
            .is_ok());
    }

    #[test]
    fn replies_of_bound_hosts_come_back_with_the_placeholder_and_fitting_headers() {
        let (v, p) = vault(grant(&["a.example"], &[], false));
        let bound = ["a.example", "a.example"];
        let headers = |body: &str| {
            vec![
                ("ETag".to_string(), "\"abc\"".to_string()),
                ("Content-Length".to_string(), body.len().to_string()),
                ("X-Echo".to_string(), VALUE.to_string()),
            ]
        };
        let body = format!("{{\"key\": \"{}\"}}", VALUE.replace('"', "\\\""));
        let (h, b) = v
            .scrub_reply(&bound, 200, headers(&body), body.clone().into_bytes())
            .expect("reply");
        assert_eq!(
            String::from_utf8(b.clone()).expect("text"),
            format!("{{\"key\": \"{p}\"}}")
        );
        assert!(
            !h.iter().any(|(k, _)| k == "ETag"),
            "a hash of the body would tell: {h:?}"
        );
        assert!(h.contains(&("Content-Length".to_string(), b.len().to_string())));
        assert!(h.contains(&("X-Echo".to_string(), p.clone())));
        // Another host never had the value: what it sends is left as it is,
        // so it cannot tell the code which of its guesses was right.
        let (h, b) = v
            .scrub_reply(
                &["echo.example", "echo.example"],
                200,
                headers(&body),
                body.clone().into_bytes(),
            )
            .expect("reply");
        assert_eq!(b, body.clone().into_bytes());
        assert!(h.iter().any(|(k, _)| k == "ETag"));
        // Encoded or partial replies are not handed over.
        let gz = vec![("Content-Encoding".to_string(), "gzip".to_string())];
        let e = v
            .scrub_reply(&bound, 200, gz, Vec::new())
            .expect_err("gzip");
        assert!(
            e.contains("came encoded (Content-Encoding: gzip)") && e.contains("API_KEY"),
            "{e}"
        );
        let e = v
            .scrub_reply(&bound, 206, Vec::new(), Vec::new())
            .expect_err("range");
        assert!(e.contains("a part (206)"), "{e}");
        let mut asked = vec![
            ("Range".to_string(), "bytes=0-4".to_string()),
            ("accept-encoding".to_string(), "gzip".to_string()),
        ];
        v.guard_request(&mut asked);
        assert_eq!(
            asked,
            vec![("Accept-Encoding".to_string(), "identity".to_string())]
        );
        let recorded = crate::sandbox::secrets::marker("API_KEY");
        assert_eq!(v.unmark_text(&format!("k={recorded}")), format!("k={p}"));
        assert_eq!(
            v.unmark(format!("k={recorded}").as_bytes()),
            format!("k={p}").into_bytes()
        );
    }
}

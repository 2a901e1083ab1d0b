//! Secrets out of a cassette before anything is written: values of
//! secret-looking headers, query parameters and environment variables, and
//! every occurrence of those values anywhere else (an API that echoes a
//! token back in its body).

use super::{Body, EnvVar, Request};

pub const SCRUBBED: &str = "<scrubbed>";
/// A scrubbed cookie value: only characters a cookie value may hold.
const COOKIE_SCRUBBED: &str = "scrubbed";

/// Header names always scrubbed (case-insensitive).
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Name fragments that make a header, query parameter or variable secret.
const SECRET_PARTS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "auth",
    "credential",
    "signature",
];

/// Whether a header, parameter or variable name looks secret.
pub fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&lower.as_str()) || SECRET_PARTS.iter().any(|p| lower.contains(p))
}

/// Replaces secret values wherever they appear.
#[derive(Debug, Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
    extra_names: Vec<String>,
    /// (placeholder, marker): a run's secret placeholders, written as the
    /// secrets' names (`crate::sandbox::secrets`).
    markers: Vec<(String, String)>,
}

impl Scrubber {
    /// Secrets are the values of secret-looking variables in `env`, plus any
    /// names listed in `extra_names` (headers or variables to scrub too).
    pub fn new(
        env: &std::collections::BTreeMap<String, String>,
        extra_names: &[String],
    ) -> Scrubber {
        let mut s = Scrubber {
            secrets: Vec::new(),
            extra_names: extra_names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            markers: Vec::new(),
        };
        for (k, v) in env {
            if s.is_secret_name(k) {
                s.add_secret(v);
            }
        }
        s
    }

    /// Write each placeholder as its marker (a secret's name, not a value,
    /// so kept where a secret-looking name would have its value scrubbed).
    pub fn with_markers(mut self, markers: Vec<(String, String)>) -> Scrubber {
        self.markers = markers;
        self
    }

    /// A secret-looking name's value kept: nothing but markers, or an
    /// authorization scheme and one.
    fn only_markers(&self, value: &str) -> bool {
        if self.markers.is_empty() {
            return false;
        }
        let mut rest = value.to_string();
        let mut any = false;
        for (_, m) in &self.markers {
            any |= rest.contains(m.as_str());
            rest = rest.replace(m.as_str(), "");
        }
        let rest = rest.trim();
        any && (rest.is_empty() || rest.chars().all(|c| c.is_ascii_alphabetic()))
    }

    fn marked(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (p, m) in &self.markers {
            out = out.replace(p.as_str(), m);
        }
        out
    }

    fn is_secret_name(&self, name: &str) -> bool {
        secret_name(name) || self.extra_names.contains(&name.to_ascii_lowercase())
    }

    fn add_secret(&mut self, value: &str) {
        // Very short values would scrub ordinary text; they are still
        // removed where they stand (a secret header's value).
        let v = value.trim();
        if v.len() >= 4 && !self.secrets.iter().any(|s| s == v) {
            self.secrets.push(v.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        if let Some(token) = v.split_whitespace().nth(1) {
            // "Bearer abc": the token on its own too.
            self.add_secret(token);
        }
    }

    /// Learn secrets from a request's headers before scrubbing anything.
    pub fn learn_headers(&mut self, headers: &[(String, String)]) {
        for (k, v) in headers {
            // A placeholder is no value: it is written as its marker.
            if self.is_secret_name(k) && !self.only_markers(&self.marked(v)) {
                self.add_secret(v);
            }
        }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = self.marked(text);
        for s in &self.secrets {
            out = out.replace(s.as_str(), SCRUBBED);
        }
        out
    }

    pub fn headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(k, v)| {
                let v = match k.to_ascii_lowercase().as_str() {
                    "set-cookie" => self.cookies(v, true),
                    "cookie" => self.cookies(v, false),
                    _ if self.only_markers(&self.marked(v)) => self.marked(v),
                    _ if self.is_secret_name(k) => SCRUBBED.to_string(),
                    _ => self.text(v),
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// A cookie header with every value scrubbed and the rest kept, so a
    /// replayed `Set-Cookie` still sets its cookie (for the host and path it
    /// names) and code that reads a cookie's presence behaves as recorded.
    /// `set` is a `Set-Cookie` (one cookie, then its attributes); otherwise a
    /// `Cookie` (pairs).
    fn cookies(&self, value: &str, set: bool) -> String {
        let scrub_pair = |pair: &str| match pair.split_once('=') {
            Some((name, _)) => format!("{}={COOKIE_SCRUBBED}", name.trim()),
            None => COOKIE_SCRUBBED.to_string(),
        };
        if set {
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let attributes = if attributes.is_empty() {
                String::new()
            } else {
                format!(";{}", self.text(attributes))
            };
            format!("{}{attributes}", scrub_pair(pair))
        } else {
            value
                .split(';')
                .map(|p| scrub_pair(p.trim()))
                .collect::<Vec<_>>()
                .join("; ")
        }
    }

    /// Scrub secret-looking query parameters, then known secret values.
    pub fn url(&self, url: &str) -> String {
        let url = &self.marked(url);
        let scrubbed = match url::Url::parse(url) {
            Ok(mut u) if u.query().is_some() => {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if self.is_secret_name(&k) && !self.only_markers(&v) {
                            SCRUBBED.to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
                u.to_string()
            }
            _ => url.to_string(),
        };
        self.text(&scrubbed)
    }

    pub fn body(&self, bytes: &[u8]) -> Body {
        match std::str::from_utf8(bytes) {
            Ok(t) => Body::from_bytes(self.text(t).as_bytes()),
            Err(_) => {
                let mut out = bytes.to_vec();
                for (p, m) in &self.markers {
                    out = replace_bytes(&out, p.as_bytes(), m.as_bytes());
                }
                for s in &self.secrets {
                    out = replace_bytes(&out, s.as_bytes(), SCRUBBED.as_bytes());
                }
                Body::from_bytes(&out)
            }
        }
    }

    pub fn env(&self, env: &std::collections::BTreeMap<String, String>) -> Vec<EnvVar> {
        env.iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: if self.is_secret_name(k) {
                    SCRUBBED.into()
                } else {
                    self.text(v)
                },
            })
            .collect()
    }

    /// A request as it is written to (and matched against) a cassette.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: self.url(url),
            headers: self.headers(headers),
            body: self.body(body),
        }
    }
}

/// `haystack` with every `needle` replaced by `with`.
pub fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    let finder = memchr::memmem::Finder::new(needle);
    while let Some(at) = finder.find(rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

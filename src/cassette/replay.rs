//! A replayed run's answers: the recorded interactions, each used once, in
//! order, matched on what the cassette says.

use super::{Interaction, MatchOn, Request};

/// Recorded interactions being replayed: each is used once, in order, and
/// the last match repeats when a request is made more often than recorded.
#[derive(Debug, Clone)]
pub struct ReplayBook {
    pub interactions: Vec<Interaction>,
    used: Vec<bool>,
    pub match_on: Vec<MatchOn>,
    /// `new_episodes`: unmatched requests go out for real.
    pub allow_new: bool,
}

/// Whether two URLs name the same request once each is normalised: the
/// host re-encodes a query before sending it (`,` becomes `%2C`) while a
/// cassette written by hand, by VCR.py or from an API's docs holds it as
/// written, so query pairs are compared decoded, in order.
pub(super) fn same_url(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (Ok(x), Ok(y)) = (url::Url::parse(a), url::Url::parse(b)) else {
        return false;
    };
    let decoded_path = |u: &url::Url| {
        percent_encoding::percent_decode_str(u.path())
            .decode_utf8_lossy()
            .into_owned()
    };
    let pairs = |u: &url::Url| -> Vec<(String, String)> {
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    x.scheme() == y.scheme()
        && x.host_str() == y.host_str()
        && x.port_or_known_default() == y.port_or_known_default()
        && decoded_path(&x) == decoded_path(&y)
        && pairs(&x) == pairs(&y)
}

/// Whether two bodies are the same: byte for byte, or as JSON when both
/// are JSON (a cassette written by hand or by another client spaces and
/// orders its keys as it likes; sandstack's own JSON has sorted keys).
pub(super) fn same_body(a: &super::Body, b: &super::Body) -> bool {
    let (Ok(x), Ok(y)) = (a.bytes(), b.bytes()) else {
        return false;
    };
    if x == y {
        return true;
    }
    match (
        serde_json::from_slice::<serde_json::Value>(&x),
        serde_json::from_slice::<serde_json::Value>(&y),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl ReplayBook {
    pub fn new(interactions: Vec<Interaction>, match_on: Vec<MatchOn>, allow_new: bool) -> Self {
        let used = vec![false; interactions.len()];
        ReplayBook {
            interactions,
            used,
            match_on,
            allow_new,
        }
    }

    fn matches(&self, a: &Request, b: &Request) -> bool {
        self.match_on.iter().all(|m| match m {
            MatchOn::Method => a.method.eq_ignore_ascii_case(&b.method),
            MatchOn::Url => same_url(&a.url, &b.url),
            MatchOn::Body => same_body(&a.body, &b.body),
            MatchOn::Headers => {
                let norm = |h: &[(String, String)]| {
                    let mut v: Vec<(String, String)> = h
                        .iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                        .collect();
                    v.sort();
                    v
                };
                norm(&a.headers) == norm(&b.headers)
            }
        })
    }

    /// The recorded interaction for `req` (already scrubbed), if any.
    pub fn find(&mut self, req: &Request) -> Option<Interaction> {
        let mut last = None;
        for i in 0..self.interactions.len() {
            if self.matches(&self.interactions[i].request, req) {
                if !self.used[i] {
                    self.used[i] = true;
                    return Some(self.interactions[i].clone());
                }
                last = Some(i);
            }
        }
        last.map(|i| self.interactions[i].clone())
    }

    /// The recorded request most like `req`, for an error message.
    pub fn closest(&self, req: &Request) -> Option<String> {
        let key = |r: &Request| format!("{} {}", r.method, r.url);
        let target = key(req);
        self.interactions
            .iter()
            .map(|i| {
                (
                    strsim::levenshtein(&key(&i.request), &target),
                    key(&i.request),
                )
            })
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }

    pub fn match_on_text(&self) -> String {
        self.match_on
            .iter()
            .map(|m| format!("{m:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

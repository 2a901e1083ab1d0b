//! Cassettes: everything a run's guest saw from the outside (its HTTP
//! exchanges, its clock start and its random seed), written as YAML in the
//! spirit of VCR.py, so the run can be replayed byte for byte with no
//! network. Secrets are scrubbed before anything is written: values of
//! secret-looking headers, query parameters and environment variables, and
//! every occurrence of those values anywhere else (an API that echoes a
//! token back in its body).

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT_VERSION: u32 = 1;

/// Interactions a cassette may hold (a run makes at most
/// `http_max_requests`; `new_episodes` adds up across runs).
pub const MAX_INTERACTIONS: usize = 10_000;

/// The operator's cap on a cassette's size, in MiB (default 16).
pub const MAX_MB_ENV: &str = "SANDSTACK_CASSETTE_MAX_MB";

fn max_bytes() -> u64 {
    std::env::var(MAX_MB_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(16)
        .saturating_mul(1 << 20)
}
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

/// How `--record-mode` treats a cassette, as VCR.py does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordMode {
    /// Record if the cassette does not exist, else replay it.
    Once,
    /// Replay only; a request not in the cassette is an error.
    None,
    /// Replay what is recorded; make and record new requests.
    #[value(name = "new_episodes")]
    NewEpisodes,
    /// Always run for real and (re)write the cassette.
    All,
}

/// Which parts of a request must equal a recorded one to replay it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOn {
    Method,
    Url,
    Body,
    Headers,
}

pub const DEFAULT_MATCH_ON: [MatchOn; 3] = [MatchOn::Method, MatchOn::Url, MatchOn::Body];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cassette {
    pub version: u32,
    /// Free text, e.g. how a hand-written cassette was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The job recorded: absent for ingest (the guest's run), `llmalert`
    /// for the chat model's exchanges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub batch: String,
    /// SHA-256 of the rendered ingest code when recorded.
    pub function_sha256: String,
    /// The guest's wall-clock start, µs since the Unix epoch (and as text).
    pub clock_start_us: i64,
    #[serde(default)]
    pub recorded_at: String,
    /// The guest's random seed, hex.
    pub seed: String,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub interactions: Vec<Interaction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub request: Request,
    /// The response, or the error the guest saw instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordedError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The URL after redirects.
    #[serde(default)]
    pub url: String,
    #[serde(default, flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedError {
    pub kind: String,
    pub message: String,
}

/// A body: UTF-8 text as is, anything else as base64.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl Body {
    pub fn from_bytes(bytes: &[u8]) -> Body {
        if bytes.is_empty() {
            return Body::default();
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Body {
                body: Some(text.to_string()),
                body_base64: None,
            },
            Err(_) => Body {
                body: None,
                body_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.body, &self.body_base64) {
            (Some(t), _) => Ok(t.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("invalid body_base64: {e}")),
            (None, None) => Ok(Vec::new()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error("cannot read cassette {path}: {message}")]
    Read { path: String, message: String },
    #[error("cannot write cassette {path}: {message}")]
    Write { path: String, message: String },
    #[error("cassette {path} is version {found}; this sandstack reads version {FORMAT_VERSION}")]
    Version { path: String, found: u32 },
}

impl Cassette {
    /// Read a cassette, refusing one too large to load quickly
    /// ([`max_bytes`]), with more than [`MAX_INTERACTIONS`], or with a body
    /// that does not decode: a replay must not fail halfway on bad input.
    pub fn load(path: &Path) -> Result<Cassette, CassetteError> {
        let err = |message: String| CassetteError::Read {
            path: path.display().to_string(),
            message,
        };
        let limit = max_bytes();
        let size = std::fs::metadata(path)
            .map_err(|e| err(e.to_string()))?
            .len();
        if size > limit {
            return Err(err(format!(
                "it is {} MiB, over the {} MiB a cassette may have (the operator sets {MAX_MB_ENV})",
                size >> 20,
                limit >> 20
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Cassette::parse(&text, &path.display().to_string())
    }

    /// Read a cassette's text; `path` names it in errors. The checks of
    /// [`Cassette::load`] but the size.
    pub fn parse(text: &str, path: &str) -> Result<Cassette, CassetteError> {
        let err = |message: String| CassetteError::Read {
            path: path.to_string(),
            message,
        };
        let c: Cassette = serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
        if c.version != FORMAT_VERSION {
            return Err(CassetteError::Version {
                path: path.to_string(),
                found: c.version,
            });
        }
        if c.interactions.len() > MAX_INTERACTIONS {
            return Err(err(format!(
                "it has {} interactions, over the {MAX_INTERACTIONS} a cassette may have",
                c.interactions.len()
            )));
        }
        for (i, x) in c.interactions.iter().enumerate() {
            let bodies = [Some(&x.request.body), x.response.as_ref().map(|r| &r.body)];
            for (part, body) in ["request", "response"].iter().zip(bodies) {
                if let Some(Err(e)) = body.map(Body::bytes) {
                    return Err(err(format!(
                        "interaction {} ({} {}): the {part} body: {e}",
                        i + 1,
                        x.request.method,
                        x.request.url
                    )));
                }
            }
        }
        Ok(c)
    }

    pub fn save(&self, path: &Path) -> Result<(), CassetteError> {
        let err = |message: String| CassetteError::Write {
            path: path.display().to_string(),
            message,
        };
        let job = self.job.as_deref().unwrap_or("ingest");
        let mut text = format!(
            "# sandstack cassette: one {job} run of batch `{}`.\n# Replay with: sandstack {job} {} --replay {}\n",
            self.batch,
            self.batch,
            path.display()
        );
        text.push_str(&serde_yaml_ng::to_string(self).map_err(|e| err(e.to_string()))?);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    pub fn seed_bytes(&self) -> Option<[u8; 32]> {
        hex::decode(&self.seed).ok()?.try_into().ok()
    }
}

pub fn function_sha256(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

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
        };
        for (k, v) in env {
            if s.is_secret_name(k) {
                s.add_secret(v);
            }
        }
        s
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
            if self.is_secret_name(k) {
                self.add_secret(v);
            }
        }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
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
        let scrubbed = match url::Url::parse(url) {
            Ok(mut u) if u.query().is_some() => {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if self.is_secret_name(&k) {
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

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

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
fn same_url(a: &str, b: &str) -> bool {
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
            MatchOn::Body => a.body.bytes().ok() == b.body.bytes().ok(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn secrets_are_scrubbed_everywhere() {
        let env = BTreeMap::from([
            ("API_TOKEN".to_string(), "s3cr3t-value".to_string()),
            ("REGION".to_string(), "eu".to_string()),
        ]);
        let mut s = Scrubber::new(&env, &[]);
        s.learn_headers(&[("Authorization".into(), "Bearer other-secret".into())]);
        let r = s.request(
            "get",
            "https://api.test/x?api_key=s3cr3t-value&q=1",
            &[
                ("Authorization".into(), "Bearer other-secret".into()),
                ("X-Trace".into(), "s3cr3t-value".into()),
            ],
            b"token other-secret in body",
        );
        let text = serde_yaml_ng::to_string(&r).expect("yaml");
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("other-secret"),
            "{text}"
        );
        assert!(r.url.contains("q=1"));
        assert_eq!(s.env(&env)[0].value, SCRUBBED);
        assert_eq!(s.env(&env)[1].value, "eu");
        let cookies = s.headers(&[
            (
                "Set-Cookie".into(),
                "B=abc123; Path=/; Domain=.api.test; Max-Age=3600".into(),
            ),
            ("Cookie".into(), "B=abc123; sid=zz9".into()),
        ]);
        assert_eq!(
            cookies[0].1,
            "B=scrubbed; Path=/; Domain=.api.test; Max-Age=3600"
        );
        assert_eq!(cookies[1].1, "B=scrubbed; sid=scrubbed");
    }

    #[test]
    fn urls_match_once_normalised() {
        assert!(same_url(
            "https://api.test/q?symbols=A,B&f=(x)",
            "https://api.test/q?symbols=A%2CB&f=%28x%29"
        ));
        assert!(same_url(
            "https://api.test/a%20b?x=1+2",
            "https://api.test:443/a b?x=1%202"
        ));
        assert!(!same_url(
            "https://api.test/q?a=1&b=2",
            "https://api.test/q?b=2&a=1"
        ));
        assert!(!same_url(
            "https://api.test/q?a=1",
            "https://api.test/q?a=2"
        ));
        assert!(!same_url("https://api.test/q", "http://api.test/q"));
        assert!(!same_url("https://other.test/q", "https://api.test/q"));
    }

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        assert_eq!(Body::from_bytes(b"hi").bytes().expect("text"), b"hi");
        let bin = [0u8, 159, 146, 150];
        let b = Body::from_bytes(&bin);
        assert!(b.body.is_none());
        assert_eq!(b.bytes().expect("b64"), bin);
    }

    #[test]
    fn replay_uses_each_interaction_once_then_repeats_the_last() {
        let req = |url: &str| Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![],
            body: Body::default(),
        };
        let resp = |s: u16| {
            Some(Response {
                status: s,
                reason: String::new(),
                headers: vec![],
                url: String::new(),
                body: Body::default(),
            })
        };
        let mut book = ReplayBook::new(
            vec![
                Interaction {
                    request: req("http://a/1"),
                    response: resp(200),
                    error: None,
                },
                Interaction {
                    request: req("http://a/1"),
                    response: resp(201),
                    error: None,
                },
            ],
            DEFAULT_MATCH_ON.to_vec(),
            false,
        );
        let status = |i: Option<Interaction>| i.and_then(|i| i.response).map(|r| r.status);
        assert_eq!(status(book.find(&req("http://a/1"))), Some(200));
        assert_eq!(status(book.find(&req("http://a/1"))), Some(201));
        assert_eq!(status(book.find(&req("http://a/1"))), Some(201));
        assert!(book.find(&req("http://a/2")).is_none());
        assert_eq!(
            book.closest(&req("http://a/2")).as_deref(),
            Some("GET http://a/1")
        );
    }
}

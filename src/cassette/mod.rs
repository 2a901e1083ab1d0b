//! Cassettes: everything a run's guest saw from the outside (its HTTP
//! exchanges, its clock start and its random seed), written as YAML in the
//! spirit of VCR.py, so the run can be replayed byte for byte with no
//! network. This file is the format (reading, writing, size caps);
//! [`scrub`] takes secrets out before anything is written and [`replay`]
//! answers a replayed run's requests.

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod replay;
mod scrub;
pub mod tape;

pub use replay::ReplayBook;
pub use scrub::{replace_bytes, secret_name, Scrubber, SCRUBBED};

pub const FORMAT_VERSION: u32 = 1;

/// Interactions a cassette may hold (a run makes at most
/// `http_max_requests`; `new_episodes` adds up across runs).
pub const MAX_INTERACTIONS: usize = 10_000;

/// The operator's cap on a cassette's size, in MiB (default 16).
pub const MAX_MB_ENV: &str = "SANDSTACK_CASSETTE_MAX_MB";

/// The largest cassette read: [`MAX_MB_ENV`] MiB, 16 by default.
pub fn max_bytes() -> u64 {
    std::env::var(MAX_MB_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(16)
        .saturating_mul(1 << 20)
}
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
        let c = serde_yaml_ng::from_str(text).map_err(|e| CassetteError::Read {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Cassette::checked(c, path)
    }

    /// [`Cassette::parse`] of a YAML value already parsed (by a helper
    /// process, for a cassette from the metrics folder).
    pub fn from_yaml_value(
        value: serde_yaml_ng::Value,
        path: &str,
    ) -> Result<Cassette, CassetteError> {
        let c = serde_yaml_ng::from_value(value).map_err(|e| CassetteError::Read {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Cassette::checked(c, path)
    }

    /// `c` if it is of this version, within [`MAX_INTERACTIONS`], with
    /// bodies that decode.
    fn checked(c: Cassette, path: &str) -> Result<Cassette, CassetteError> {
        let err = |message: String| CassetteError::Read {
            path: path.to_string(),
            message,
        };
        // Shown in messages and sliced: hex only (empty in a cassette
        // written by hand).
        let hex = |t: &str| t.len() <= 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&c.function_sha256) {
            return Err(err(format!(
                "function_sha256 `{}` is not a SHA-256 in hex: record the run again",
                crate::escape::truncate(&c.function_sha256, 70)
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::replay::{same_body, same_url};
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
    fn json_bodies_match_whatever_their_spacing_and_key_order() {
        let body = |t: &str| Body::from_bytes(t.as_bytes());
        assert!(same_body(
            &body("{\"b\":1,\"a\":[1,2]}"),
            &body("{ \"a\": [1, 2],\n \"b\": 1 }")
        ));
        assert!(!same_body(&body("{\"a\":[1,2]}"), &body("{\"a\":[2,1]}")));
        assert!(!same_body(
            &body("{\"q\":\"select 1\"}"),
            &body("{\"q\":\"select 1 \"}")
        ));
        assert!(same_body(&body("not json"), &body("not json")));
        assert!(!same_body(&body("a=1&b=2"), &body("b=2&a=1")));
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

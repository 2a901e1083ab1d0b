//! HTTP for the guest, made by the host under the batch's policy: only
//! public addresses unless `http_allow_private` ([`super::addresses`]), an
//! optional host allowlist, every redirect hop re-checked, and caps on
//! requests, response size and time. Addresses are checked after DNS
//! resolution, in the resolver the connection itself uses, so a name cannot
//! be rebound to a private address between the check and the connect.
//! Whatever the guest sees (errors, final URLs) names the URL the code asked
//! for, never an `http_rewrite` target: that is the operator's business.
//!
//! [`policy`] says what may be reached (allowlist, addresses, rewrites),
//! [`resolver`] checks names after DNS, [`redirects`] follows hops under the
//! policy, [`client`] makes one hop, and [`replay`] answers from a cassette.

mod client;
mod policy;
mod redirects;
mod replay;
mod resolver;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::door::HttpRequestHeader;
use super::error::ExecError;
use super::secrets::Vault;
use crate::cassette::{self, Interaction, RecordedError, ReplayBook, Scrubber};
use crate::config::{HttpPolicy, SandboxLimits};

use replay::replayed_reply;
use resolver::Refusal;

/// The response the guest gets.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub status: u16,
    pub reason: String,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub final_url: String,
}

/// What the guest gets back: a response, or an error it can catch.
#[derive(Debug)]
pub enum Reply {
    Response(Exchange),
    Failed { kind: &'static str, message: String },
}

/// Per-run HTTP state.
pub struct HttpGate {
    policy: HttpPolicy,
    limits: SandboxLimits,
    client: Option<reqwest::Client>,
    /// For rewritten hops only: may reach private addresses.
    trusted_client: Option<reqwest::Client>,
    refused: Arc<Mutex<Option<Refusal>>>,
    pub requests_made: u64,
    /// Every request the guest made and what it got, scrubbed, in order
    /// (kept only when `record` is set).
    pub interactions: Vec<Interaction>,
    /// Keep `interactions`, for writing a cassette.
    record: bool,
    /// In replay, the recorded interactions that answer requests.
    replay: Option<ReplayBook>,
    pub scrubber: Scrubber,
    /// The run's secrets: filled into requests, kept out of replies.
    vault: Vault,
}

impl HttpGate {
    pub fn new(policy: HttpPolicy, limits: SandboxLimits) -> Self {
        HttpGate {
            policy,
            limits,
            client: None,
            trusted_client: None,
            refused: Arc::new(Mutex::new(None)),
            requests_made: 0,
            interactions: Vec::new(),
            record: false,
            replay: None,
            scrubber: Scrubber::default(),
            vault: Vault::default(),
        }
    }

    pub fn set_vault(&mut self, vault: Vault) {
        self.vault = vault;
    }

    /// A guest log line with any secret's value put back to its placeholder.
    pub fn scrub_log(&self, line: &str) -> String {
        self.vault.scrub_everywhere(line)
    }

    /// The run's secrets, once its requests are done.
    pub fn take_vault(&mut self) -> Vault {
        std::mem::take(&mut self.vault)
    }

    /// Answer requests from `book` (and, with `allow_new`, go out for the
    /// rest); with `record`, keep every interaction, scrubbed with
    /// `scrubber`. Without either, requests are neither copied nor scrubbed.
    pub fn set_cassette(&mut self, book: Option<ReplayBook>, record: bool, scrubber: Scrubber) {
        self.replay = book;
        self.record = record;
        self.scrubber = scrubber;
    }

    fn count_request(&mut self, url: &str) -> Result<(), ExecError> {
        if self.requests_made >= self.limits.http_max_requests {
            return Err(ExecError::Limit {
                limit: "http_max_requests",
                value: self.limits.http_max_requests.to_string(),
                detail: format!("request to {url}"),
            });
        }
        self.requests_made += 1;
        Ok(())
    }

    /// Make one guest request: from the cassette when replaying, else for
    /// real; either way it is recorded (scrubbed) as an interaction.
    pub fn execute(
        &mut self,
        req: &HttpRequestHeader,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Reply, ExecError> {
        if self.replay.is_none() && !self.record {
            return self.execute_live(req, body, deadline);
        }
        if let Ok(url) = reqwest::Url::parse(&req.url) {
            // A replay refuses what the live run would have.
            self.vault.judge(&url, &req.headers, body)?;
        }
        self.scrubber.learn_headers(&req.headers);
        let recorded = self
            .scrubber
            .request(&req.method, &req.url, &req.headers, body);
        if let Some(book) = self.replay.as_mut() {
            if let Some(hit) = book.find(&recorded) {
                self.count_request(&req.url)?;
                if self.record {
                    self.interactions.push(hit.clone());
                }
                return replayed_reply(req, hit, &self.limits, &self.vault);
            }
            if !book.allow_new {
                let closest = book.closest(&recorded).map_or_else(
                    || "the cassette has no requests".to_string(),
                    |c| format!("the closest recorded request is {c}"),
                );
                return Err(ExecError::Replay(format!(
                    "no recorded response for {} {} (matching on {}); {closest}. Record it with --record-mode new_episodes or all",
                    recorded.method,
                    recorded.url,
                    book.match_on_text()
                )));
            }
        }
        let reply = self.execute_live(req, body, deadline)?;
        let interaction = match &reply {
            Reply::Response(x) => Interaction {
                request: recorded,
                response: Some(cassette::Response {
                    status: x.status,
                    reason: x.reason.clone(),
                    headers: self.scrubber.headers(&x.response_headers),
                    url: self.scrubber.url(&x.final_url),
                    body: self.scrubber.body(&x.response_body),
                }),
                error: None,
            },
            Reply::Failed { kind, message } => Interaction {
                request: recorded,
                response: None,
                error: Some(RecordedError {
                    kind: kind.to_string(),
                    message: self.scrubber.text(message),
                }),
            },
        };
        if self.record {
            self.interactions.push(interaction);
        }
        Ok(reply)
    }
}

pub fn fmt_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

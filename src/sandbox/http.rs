//! HTTP for the guest, made by the host under the batch's policy: only
//! public addresses unless `http_allow_private` ([`super::addresses`]), an
//! optional host allowlist, every redirect hop re-checked, and caps on
//! requests, response size and time. Addresses are checked after DNS
//! resolution, in the resolver the connection itself uses, so a name cannot
//! be rebound to a private address between the check and the connect.
//! Whatever the guest sees (errors, final URLs) names the URL the code asked
//! for, never an `http_rewrite` target: that is the operator's business.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::addresses::refusal;
use super::cassette::{self, Interaction, RecordedError, ReplayBook, Scrubber};
use super::door::HttpRequestHeader;
use super::error::RunError;
use crate::config::{HttpPolicy, SandboxLimits};

const MAX_REDIRECTS: usize = 10;

/// Headers the guest may not set: framing and routing belong to the host.
const HOST_ONLY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// A refusal by policy; stops the run.
#[derive(Debug, Clone)]
struct Refusal {
    target: String,
    reason: String,
}

/// Resolves names for reqwest and drops non-public addresses, recording why.
struct PolicyResolver {
    allow_private: bool,
    refused: Arc<Mutex<Option<Refusal>>>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let refused = self.refused.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allow_private {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let mut public = Vec::new();
            let mut first_refusal = None;
            for a in addrs {
                match refusal(a.ip()) {
                    None => public.push(a),
                    Some(reason) if first_refusal.is_none() => {
                        first_refusal = Some(Refusal {
                            target: format!("{host} ({})", a.ip()),
                            reason: format!("it resolves to {reason}"),
                        })
                    }
                    Some(_) => {}
                }
            }
            if public.is_empty() {
                if let Some(r) = first_refusal {
                    let message = format!("{}: {}", r.target, r.reason);
                    *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    return Err(message.into());
                }
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The runtime HTTP work runs on; guest threads block on it.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sandstack-http")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the HTTP runtime: {e}"))
    })
}

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

/// A recorded interaction as the guest sees it, under the same limits as
/// a live response.
fn replayed_reply(
    req: &HttpRequestHeader,
    hit: Interaction,
    limits: &SandboxLimits,
) -> Result<Reply, RunError> {
    Ok(match (hit.response, hit.error) {
        (Some(r), _) => {
            let body = r.body.bytes().map_err(|e| {
                RunError::Replay(format!(
                    "the cassette's response to {} {} has an unreadable body: {e}",
                    req.method, req.url
                ))
            })?;
            let max_bytes = limits.http_max_response_kb.saturating_mul(1024);
            if body.len() as u64 > max_bytes {
                return Err(RunError::Limit {
                    limit: "http_max_response_kb",
                    value: limits.http_max_response_kb.to_string(),
                    detail: format!(
                        "the cassette's response from {} is {} KiB",
                        req.url,
                        body.len() / 1024
                    ),
                });
            }
            Reply::Response(Exchange {
                status: r.status,
                reason: r.reason,
                response_headers: r.headers,
                response_body: body,
                final_url: if r.url.is_empty() {
                    req.url.clone()
                } else {
                    r.url
                },
            })
        }
        (None, Some(e)) => Reply::Failed {
            kind: match e.kind.as_str() {
                "timeout" => "timeout",
                "connect_timeout" => "connect_timeout",
                "invalid_url" => "invalid_url",
                "too_many_redirects" => "too_many_redirects",
                _ => "connection",
            },
            message: e.message,
        },
        (None, None) => Reply::Failed {
            kind: "connection",
            message: "the cassette records neither a response nor an error for this request".into(),
        },
    })
}

/// The outcome of one hop.
enum Hop {
    Response {
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        location: Option<String>,
    },
    /// An error the guest sees as an exception.
    Failed(Reply),
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
        }
    }

    /// Answer requests from `book` (and, with `allow_new`, go out for the
    /// rest); with `record`, keep every interaction, scrubbed with
    /// `scrubber`. Without either, requests are neither copied nor scrubbed.
    pub fn set_cassette(&mut self, book: Option<ReplayBook>, record: bool, scrubber: Scrubber) {
        self.replay = book;
        self.record = record;
        self.scrubber = scrubber;
    }

    fn count_request(&mut self, url: &str) -> Result<(), RunError> {
        if self.requests_made >= self.limits.http_max_requests {
            return Err(RunError::Limit {
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
    ) -> Result<Reply, RunError> {
        if self.replay.is_none() && !self.record {
            return self.execute_live(req, body, deadline);
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
                return replayed_reply(req, hit, &self.limits);
            }
            if !book.allow_new {
                let closest = book.closest(&recorded).map_or_else(
                    || "the cassette has no requests".to_string(),
                    |c| format!("the closest recorded request is {c}"),
                );
                return Err(RunError::Replay(format!(
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

    fn client(&mut self, trusted: bool) -> Result<reqwest::Client, RunError> {
        let slot = if trusted {
            &self.trusted_client
        } else {
            &self.client
        };
        if let Some(c) = slot {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver {
                allow_private: trusted || self.policy.allow_private,
                refused: self.refused.clone(),
            }))
            .no_proxy()
            .build()
            .map_err(|e| RunError::Internal(format!("cannot build the HTTP client: {e}")))?;
        if trusted {
            self.trusted_client = Some(c.clone());
        } else {
            self.client = Some(c.clone());
        }
        Ok(c)
    }

    /// Apply the longest matching `http_rewrite` prefix; None if none
    /// matches.
    fn rewritten(&self, url: &str) -> Option<String> {
        self.policy
            .rewrite
            .iter()
            .filter(|(from, _)| url.starts_with(from.as_str()))
            .max_by_key(|(from, _)| from.len())
            .map(|(from, to)| format!("{to}{}", &url[from.len()..]))
    }

    /// The URL as the guest would have it: a rewrite target's prefix turned
    /// back into the prefix the code asked for.
    fn guest_view(&self, url: &str) -> String {
        self.policy
            .rewrite
            .iter()
            .filter(|(_, to)| !to.is_empty() && url.starts_with(to.as_str()))
            .max_by_key(|(_, to)| to.len())
            .map_or_else(
                || url.to_string(),
                |(from, to)| format!("{from}{}", &url[to.len()..]),
            )
    }

    fn check_allowlist(&self, url: &reqwest::Url) -> Result<(), RunError> {
        let refuse = |reason: String| RunError::Policy {
            target: url.to_string(),
            reason,
            hint: String::new(),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse(format!(
                "scheme `{}` is not allowed (use http or https)",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if !self.policy.allow_hosts.is_empty()
            && !self
                .policy
                .allow_hosts
                .iter()
                .any(|h| host_matches(h, &host))
        {
            return Err(RunError::Policy {
                target: url.to_string(),
                reason: format!("host `{host}` is not in http_allow_hosts"),
                hint: format!(" (allowed: {})", self.policy.allow_hosts.join(", ")),
            });
        }
        Ok(())
    }

    /// IP literals skip DNS, so they are checked here; names are checked
    /// by the resolver.
    fn check_address(&self, url: &reqwest::Url) -> Result<(), RunError> {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.policy.allow_private {
                if let Some(reason) = refusal(ip) {
                    return Err(RunError::Policy {
                        target: url.to_string(),
                        reason: format!("{ip} is {reason}"),
                        hint: " (set http_allow_private: true to allow it)".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Make one guest request over the network (following redirects if
    /// asked), within the run's wall-clock `deadline`.
    fn execute_live(
        &mut self,
        req: &HttpRequestHeader,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Reply, RunError> {
        // Each hop has the URL the code asked for (or was redirected to, in
        // its own terms), which the allowlist and every message use, and the
        // URL actually fetched: a rewritten one goes where the operator
        // pointed it (a mirror, a test server: private addresses allowed);
        // any other is checked in full.
        let mut guest_url = match reqwest::Url::parse(&req.url) {
            Ok(u) => u,
            Err(e) => {
                return Ok(Reply::Failed {
                    kind: "invalid_url",
                    message: format!("invalid URL {:?}: {e}", req.url),
                })
            }
        };
        let mut method = match reqwest::Method::from_bytes(req.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return Ok(Reply::Failed {
                    kind: "invalid_url",
                    message: format!("invalid HTTP method {:?}", req.method),
                })
            }
        };
        let mut body = body.to_vec();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .filter(|(k, _)| !HOST_ONLY_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
            .cloned()
            .collect();
        let per_request = Duration::from_secs_f64(
            req.timeout
                .filter(|t| t.is_finite() && *t > 0.0)
                .map_or(self.limits.http_timeout_s, |t| {
                    t.min(self.limits.http_timeout_s)
                }),
        );
        for hop in 0..=MAX_REDIRECTS {
            self.check_allowlist(&guest_url)?;
            let rewritten = self.rewritten(guest_url.as_str());
            let trusted = rewritten.is_some();
            let target = match rewritten.as_deref().map(reqwest::Url::parse) {
                None => guest_url.clone(),
                Some(Ok(u)) => u,
                Some(Err(e)) => {
                    return Err(RunError::Internal(format!(
                        "http_rewrite makes an invalid URL of {guest_url}: {e}"
                    )))
                }
            };
            if !trusted {
                self.check_address(&target)?;
            }
            self.count_request(guest_url.as_str())?;
            let hop_reply = self.send_once(
                &method,
                &target,
                &guest_url,
                &headers,
                &body,
                per_request,
                deadline,
                trusted,
            )?;
            let (status, reason, resp_headers, resp_body, location) = match hop_reply {
                Hop::Failed(reply) => return Ok(reply),
                Hop::Response {
                    status,
                    reason,
                    headers,
                    body,
                    location,
                } => (status, reason, headers, body, location),
            };
            let redirect_to = match location {
                Some(loc)
                    if req.follow_redirects && matches!(status, 301 | 302 | 303 | 307 | 308) =>
                {
                    Some(loc)
                }
                _ => None,
            };
            let Some(loc) = redirect_to else {
                let exchange = Exchange {
                    status,
                    reason,
                    response_headers: resp_headers,
                    response_body: resp_body,
                    final_url: if hop == 0 {
                        req.url.clone()
                    } else {
                        guest_url.to_string()
                    },
                };
                return Ok(Reply::Response(exchange));
            };
            // Resolved against the fetched URL, then seen in the guest's
            // terms: a mirror's relative redirect stays on the mirror.
            guest_url = match target
                .join(&loc)
                .map(|u| self.guest_view(u.as_str()))
                .and_then(|u| reqwest::Url::parse(&u))
            {
                Ok(u) => u,
                Err(e) => {
                    return Ok(Reply::Failed {
                        kind: "connection",
                        message: format!("redirect from {guest_url} to an invalid location: {e}"),
                    })
                }
            };
            if status == 303
                || ((status == 301 || status == 302) && method == reqwest::Method::POST)
            {
                method = reqwest::Method::GET;
                body.clear();
            }
            if hop == MAX_REDIRECTS {
                break;
            }
        }
        Ok(Reply::Failed {
            kind: "too_many_redirects",
            message: format!("exceeded {MAX_REDIRECTS} redirects"),
        })
    }

    /// One request and its response, without following redirects.
    #[allow(clippy::too_many_arguments)] // one hop's full description; a struct would only rename them
    fn send_once(
        &mut self,
        method: &reqwest::Method,
        url: &reqwest::Url,
        shown: &reqwest::Url,
        headers: &[(String, String)],
        body: &[u8],
        per_request: Duration,
        deadline: Instant,
        trusted: bool,
    ) -> Result<Hop, RunError> {
        let client = self.client(trusted)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let wall_bound = remaining < per_request;
        let budget = remaining.min(per_request);
        let max_bytes = self.limits.http_max_response_kb.saturating_mul(1024);
        let mut builder = client.request(method.clone(), url.clone());
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        if !body.is_empty() {
            builder = builder.body(body.to_vec());
        }
        let fetch = async move {
            let resp = builder.send().await?;
            let status = resp.status();
            let hdrs: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            if resp.content_length().is_some_and(|n| n > max_bytes) {
                return Ok(Err(resp.content_length().unwrap_or(0)));
            }
            let mut resp = resp;
            let mut data = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if (data.len() + chunk.len()) as u64 > max_bytes {
                    return Ok(Err((data.len() + chunk.len()) as u64));
                }
                data.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Ok((status, hdrs, data, location)))
        };
        let outcome = runtime().block_on(async { tokio::time::timeout(budget, fetch).await });
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = refused {
            return Err(RunError::Policy {
                target: format!("{shown} -> {}", r.target),
                reason: r.reason,
                hint: " (set http_allow_private: true to allow it)".into(),
            });
        }
        match outcome {
            Err(_elapsed) if wall_bound => Err(RunError::Limit {
                limit: "ingest_timeout_s",
                value: fmt_secs(self.limits.timeout_s),
                detail: format!("waiting for {shown}"),
            }),
            Err(_elapsed) => Ok(Hop::Failed(Reply::Failed {
                kind: "timeout",
                message: format!(
                    "{method} {shown} timed out after {:.1}s (http_timeout_s={})",
                    budget.as_secs_f64(),
                    fmt_secs(self.limits.http_timeout_s)
                ),
            })),
            Ok(Ok(Err(size))) => Err(RunError::Limit {
                limit: "http_max_response_kb",
                value: self.limits.http_max_response_kb.to_string(),
                detail: format!("response from {shown} is over {} KiB", size / 1024),
            }),
            Ok(Ok(Ok((status, headers, body, location)))) => Ok(Hop::Response {
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("").to_string(),
                headers,
                body,
                location,
            }),
            Ok(Err(e)) => Ok(Hop::Failed(Reply::Failed {
                kind: if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                },
                // Without its URL: reqwest would name the rewrite target.
                message: format!("{method} {shown} failed: {}", error_chain(&e.without_url())),
            })),
        }
    }
}

pub fn fmt_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s}")
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let s = inner.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = inner.source();
    }
    text
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_patterns() {
        assert!(host_matches("api.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com.evil.net"));
        assert!(!host_matches("example.com", "badexample.com"));
    }
}

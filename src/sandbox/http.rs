//! HTTP for the guest, made by the host under the batch's policy: only
//! public addresses unless `http_allow_private`, an optional host allowlist,
//! every redirect hop re-checked, and caps on requests, response size and
//! time. Addresses are checked after DNS resolution, in the resolver the
//! connection itself uses, so a name cannot be rebound to a private address
//! between the check and the connect.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

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

/// Why an address is not public, if it is not.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let s = v6.segments();
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("a cloud metadata address")
            } else if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                Some("a NAT64 address (it can reach private IPv4)")
            } else if s[0] == 0x2002 {
                Some("a 6to4 address (it can reach private IPv4)")
            } else {
                None
            }
        }
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT) address")
    } else if o[0] == 0 {
        Some("the unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() || o[0] >= 240 {
        Some("a reserved address")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("a benchmarking address")
    } else {
        None
    }
}

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
                match non_public_reason(a.ip()) {
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

/// A recorded interaction as the guest sees it.
fn replayed_reply(req: &HttpRequestHeader, hit: Interaction) -> Reply {
    match (hit.response, hit.error) {
        (Some(r), _) => Reply::Response(Exchange {
            status: r.status,
            reason: r.reason,
            response_headers: r.headers,
            response_body: r.body.bytes().unwrap_or_default(),
            final_url: if r.url.is_empty() {
                req.url.clone()
            } else {
                r.url
            },
        }),
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
    }
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
                return Ok(replayed_reply(req, hit));
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

    /// Check a URL against the policy before connecting: scheme, allowlist
    /// and (for IP literals, which skip DNS) the address.
    fn check_url(&self, url: &reqwest::Url) -> Result<(), RunError> {
        self.check_allowlist(url)?;
        self.check_address(url)
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

    fn check_address(&self, url: &reqwest::Url) -> Result<(), RunError> {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !self.policy.allow_private {
                if let Some(reason) = non_public_reason(ip) {
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
        // A rewritten first hop goes where the operator pointed it (a mirror,
        // a test server: private addresses allowed); the allowlist still
        // applies to the URL the guest asked for, and every redirect from
        // there is checked in full.
        let original = reqwest::Url::parse(&req.url);
        let rewritten = self.rewritten(&req.url);
        let mut trusted_hop = rewritten.is_some();
        let target = rewritten.unwrap_or_else(|| req.url.clone());
        let mut url = match reqwest::Url::parse(&target) {
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
            if trusted_hop {
                if let Ok(o) = &original {
                    self.check_allowlist(o)?;
                }
                let scheme_ok = matches!(url.scheme(), "http" | "https");
                if !scheme_ok {
                    self.check_url(&url)?;
                }
            } else {
                self.check_url(&url)?;
            }
            self.count_request(url.as_str())?;
            let (status, reason, resp_headers, resp_body, location) = match self.send_once(
                &method,
                &url,
                &headers,
                &body,
                per_request,
                deadline,
                trusted_hop,
            )? {
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
                        url.to_string()
                    },
                };
                return Ok(Reply::Response(exchange));
            };
            url = match url.join(&loc) {
                Ok(u) => u,
                Err(e) => {
                    return Ok(Reply::Failed {
                        kind: "connection",
                        message: format!("redirect from {url} to invalid location {loc:?}: {e}"),
                    })
                }
            };
            trusted_hop = false;
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
                target: format!("{url} -> {}", r.target),
                reason: r.reason,
                hint: " (set http_allow_private: true to allow it)".into(),
            });
        }
        match outcome {
            Err(_elapsed) if wall_bound => Err(RunError::Limit {
                limit: "ingest_timeout_s",
                value: fmt_secs(self.limits.timeout_s),
                detail: format!("waiting for {url}"),
            }),
            Err(_elapsed) => Ok(Hop::Failed(Reply::Failed {
                kind: "timeout",
                message: format!(
                    "{method} {url} timed out after {:.1}s (http_timeout_s={})",
                    budget.as_secs_f64(),
                    fmt_secs(self.limits.http_timeout_s)
                ),
            })),
            Ok(Ok(Err(size))) => Err(RunError::Limit {
                limit: "http_max_response_kb",
                value: self.limits.http_max_response_kb.to_string(),
                detail: format!("response from {url} is over {} KiB", size / 1024),
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
                message: format!("{method} {url} failed: {}", error_chain(&e)),
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
    fn classifies_addresses() {
        let refused = [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.100.100.200",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "fd00:ec2::254",
            "64:ff9b::a00:1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().expect("ip");
            assert!(non_public_reason(ip).is_some(), "{a} should be refused");
        }
        for a in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            let ip: IpAddr = a.parse().expect("ip");
            assert_eq!(non_public_reason(ip), None, "{a} is public");
        }
        assert_eq!(
            non_public_reason("169.254.169.254".parse().expect("ip")),
            Some("a cloud metadata address")
        );
    }

    #[test]
    fn allowlist_patterns() {
        assert!(host_matches("api.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com.evil.net"));
        assert!(!host_matches("example.com", "badexample.com"));
    }
}

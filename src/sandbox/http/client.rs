//! One hop: the request made with reqwest (no redirects followed, no
//! proxy), within its timeout and the run's deadline, its body capped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::resolver::{runtime, PolicyResolver};
use super::{fmt_secs, HttpGate, Reply};
use crate::config::hosts::of_url;
use crate::sandbox::error::ExecError;

/// A guest request in the guest's own terms, checked once, carried through
/// every hop (a redirect may change its method, body and URL).
pub(super) struct GuestRequest {
    pub method: reqwest::Method,
    /// The URL the code asked for, or was redirected to: what the
    /// allowlist judges and every message names.
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `timeout=` capped by `http_timeout_s`.
    pub per_request: Duration,
    /// The run's wall-clock deadline.
    pub deadline: Instant,
}

/// Where one hop goes: the guest's URL as fetched, after any rewrite.
pub(super) struct HopTarget {
    pub url: reqwest::Url,
    /// Rewritten by the operator's `http_rewrite`: private addresses
    /// allowed.
    pub trusted: bool,
}

/// The outcome of one hop.
pub(super) enum Hop {
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

impl HttpGate {
    fn client(&mut self, trusted: bool) -> Result<reqwest::Client, ExecError> {
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
            .map_err(|e| ExecError::Internal(format!("cannot build the HTTP client: {e}")))?;
        if trusted {
            self.trusted_client = Some(c.clone());
        } else {
            self.client = Some(c.clone());
        }
        Ok(c)
    }

    /// One request and its response, without following redirects.
    pub(super) fn send_once(
        &mut self,
        request: &GuestRequest,
        target: &HopTarget,
    ) -> Result<Hop, ExecError> {
        // Messages reach logs and the run history: secret-looking query
        // parameters (`key=`, `token=`...) are scrubbed from the URL shown.
        let shown = &crate::cassette::Scrubber::default().url(request.url.as_str());
        let method = &request.method;
        let client = self.client(target.trusted)?;
        let remaining = request.deadline.saturating_duration_since(Instant::now());
        let wall_bound = remaining < request.per_request;
        let budget = remaining.min(request.per_request);
        let max_bytes = self.limits.http_max_response_kb.saturating_mul(1024);
        // Secrets' values go in here, for this hop's host only, and
        // nothing that comes back carries them.
        let mut filled =
            self.vault
                .fill(&request.url, &target.url, &request.headers, &request.body)?;
        self.vault.guard_request(&mut filled.headers);
        let (guest_host, wire_host) = (of_url(&request.url), of_url(&target.url));
        let hosts = [guest_host.as_str(), wire_host.as_str()];
        let mut builder = client.request(method.clone(), filled.url);
        for (k, v) in &filled.headers {
            builder = builder.header(k, v);
        }
        if !filled.body.is_empty() {
            builder = builder.body(filled.body);
        }
        let outcome = runtime()
            .block_on(async { tokio::time::timeout(budget, fetch(builder, max_bytes)).await });
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = refused {
            return Err(ExecError::Policy {
                target: format!("{shown} -> {}", r.target),
                reason: r.reason,
                hint: " (set http_allow_private: true to allow it)".into(),
            });
        }
        match outcome {
            Err(_elapsed) if wall_bound => Err(ExecError::Limit {
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
            Ok(Ok(Err(size))) => Err(ExecError::Limit {
                limit: "http_max_response_kb",
                value: self.limits.http_max_response_kb.to_string(),
                detail: format!("response from {shown} is over {} KiB", size / 1024),
            }),
            Ok(Ok(Ok((status, headers, body, location)))) => {
                // What comes back has no secret's value in it.
                match self
                    .vault
                    .scrub_reply(&hosts, status.as_u16(), headers, body)
                {
                    Ok((headers, body)) => Ok(Hop::Response {
                        status: status.as_u16(),
                        reason: status.canonical_reason().unwrap_or("").to_string(),
                        headers,
                        body,
                        location: location.map(|l| self.vault.scrub_text(&hosts, &l)),
                    }),
                    Err(why) => Ok(Hop::Failed(Reply::Failed {
                        kind: "connection",
                        message: format!("{method} {shown}: {why}"),
                    })),
                }
            }
            Ok(Err(e)) => Ok(Hop::Failed(Reply::Failed {
                kind: if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                },
                // Without its URL: reqwest would name the rewrite target.
                message: self.vault.scrub_text(
                    &hosts,
                    &format!("{method} {shown} failed: {}", error_chain(&e.without_url())),
                ),
            })),
        }
    }
}

/// A response with its status, headers, body and `Location`.
type Fetched = (
    reqwest::StatusCode,
    Vec<(String, String)>,
    Vec<u8>,
    Option<String>,
);

/// Send and read the response, or `Err(size)` as soon as its body is
/// known to pass `max_bytes`.
async fn fetch(
    builder: reqwest::RequestBuilder,
    max_bytes: u64,
) -> Result<Result<Fetched, u64>, reqwest::Error> {
    let mut resp = builder.send().await?;
    let status = resp.status();
    let text =
        |v: &reqwest::header::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), text(v)))
        .collect();
    let location = resp.headers().get(reqwest::header::LOCATION).map(text);
    if let Some(n) = resp.content_length().filter(|n| *n > max_bytes) {
        return Ok(Err(n));
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if (data.len() + chunk.len()) as u64 > max_bytes {
            return Ok(Err((data.len() + chunk.len()) as u64));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Ok((status, headers, data, location)))
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

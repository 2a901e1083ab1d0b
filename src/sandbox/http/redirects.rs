//! One guest request over the network: each hop checked against the policy
//! in the code's own terms, redirects followed up to a limit.

use std::time::{Duration, Instant};

use super::client::Hop;
use super::{Exchange, HttpGate, Reply};
use crate::sandbox::door::HttpRequestHeader;
use crate::sandbox::error::ExecError;

const MAX_REDIRECTS: usize = 10;

/// Headers the guest may not set: framing and routing belong to the host.
const HOST_ONLY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

impl HttpGate {
    /// Make one guest request over the network (following redirects if
    /// asked), within the run's wall-clock `deadline`.
    pub(super) fn execute_live(
        &mut self,
        req: &HttpRequestHeader,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Reply, ExecError> {
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
                    return Err(ExecError::Internal(format!(
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
}

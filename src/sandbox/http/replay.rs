//! Answers from a cassette, as the guest would have had them live and under
//! the same limits.

use super::{Exchange, Reply};
use crate::cassette::Interaction;
use crate::config::SandboxLimits;
use crate::sandbox::door::HttpRequestHeader;
use crate::sandbox::error::ExecError;
use crate::sandbox::secrets::Vault;

/// A recorded interaction as the guest sees it, under the same limits as
/// a live response.
pub(super) fn replayed_reply(
    req: &HttpRequestHeader,
    hit: Interaction,
    limits: &SandboxLimits,
    vault: &Vault,
) -> Result<Reply, ExecError> {
    Ok(match (hit.response, hit.error) {
        (Some(r), _) => {
            let body = r.body.bytes().map_err(|e| {
                ExecError::Replay(format!(
                    "the cassette's response to {} {} has an unreadable body: {e}",
                    req.method, req.url
                ))
            })?;
            let max_bytes = limits.http_max_response_kb.saturating_mul(1024);
            if body.len() as u64 > max_bytes {
                return Err(ExecError::Limit {
                    limit: "http_max_response_kb",
                    value: limits.http_max_response_kb.to_string(),
                    detail: format!(
                        "the cassette's response from {} is {} KiB",
                        req.url,
                        body.len() / 1024
                    ),
                });
            }
            // The recording names secrets where the run had placeholders.
            Reply::Response(Exchange {
                status: r.status,
                reason: r.reason,
                response_headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (vault.unmark_text(&k), vault.unmark_text(&v)))
                    .collect(),
                response_body: vault.unmark(&body),
                final_url: if r.url.is_empty() {
                    req.url.clone()
                } else {
                    vault.unmark_text(&r.url)
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

//! One guest request over the network: each hop checked against the policy
//! in the code's own terms, redirects followed up to a limit.

use std::time::{Duration, Instant};

use super::client::{GuestRequest, Hop, HopTarget};
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

/// Whether a response is a redirect to follow.
fn redirect_location(follow: bool, status: u16, location: Option<String>) -> Option<String> {
    location.filter(|_| follow && matches!(status, 301 | 302 | 303 | 307 | 308))
}

impl HttpGate {
    /// Check the request's URL, method and headers, and settle its timeout.
    fn guest_request(
        &self,
        req: &HttpRequestHeader,
        body: &[u8],
        deadline: Instant,
    ) -> Result<GuestRequest, Reply> {
        let url = reqwest::Url::parse(&req.url).map_err(|e| Reply::Failed {
            kind: "invalid_url",
            message: format!("invalid URL {:?}: {e}", req.url),
        })?;
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|_| Reply::Failed {
                kind: "invalid_url",
                message: format!("invalid HTTP method {:?}", req.method),
            })?;
        let headers = req
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
        Ok(GuestRequest {
            method,
            url,
            headers,
            body: body.to_vec(),
            per_request,
            deadline,
        })
    }

    /// Judge one hop: the allowlist on the guest's URL, then either the
    /// operator's rewrite (trusted) or the address policy on the URL itself.
    fn hop_target(&mut self, guest_url: &reqwest::Url) -> Result<HopTarget, ExecError> {
        self.check_allowlist(guest_url)?;
        let target = match self.rewritten(guest_url) {
            None => HopTarget {
                url: guest_url.clone(),
                trusted: false,
            },
            Some(url) => HopTarget { url, trusted: true },
        };
        if !target.trusted {
            self.check_address(&target.url)?;
        }
        self.count_request(guest_url.as_str())?;
        Ok(target)
    }

    /// Make one guest request over the network (following redirects if
    /// asked), within the run's wall-clock `deadline`.
    pub(super) fn execute_live(
        &mut self,
        req: &HttpRequestHeader,
        body: &[u8],
        deadline: Instant,
    ) -> Result<Reply, ExecError> {
        let mut request = match self.guest_request(req, body, deadline) {
            Ok(r) => r,
            Err(reply) => return Ok(reply),
        };
        for hop in 0..=MAX_REDIRECTS {
            let target = self.hop_target(&request.url)?;
            let (status, reason, headers, body, location) =
                match self.send_once(&request, &target)? {
                    Hop::Failed(reply) => return Ok(reply),
                    Hop::Response {
                        status,
                        reason,
                        headers,
                        body,
                        location,
                    } => (status, reason, headers, body, location),
                };
            let Some(loc) = redirect_location(req.follow_redirects, status, location) else {
                return Ok(Reply::Response(Exchange {
                    status,
                    reason,
                    response_headers: headers,
                    response_body: body,
                    final_url: if hop == 0 {
                        req.url.clone()
                    } else {
                        request.url.to_string()
                    },
                }));
            };
            if let Err(reply) = self.follow(&mut request, &target, &loc, status) {
                return Ok(reply);
            }
        }
        Ok(Reply::Failed {
            kind: "too_many_redirects",
            message: format!("exceeded {MAX_REDIRECTS} redirects"),
        })
    }

    /// Turn `request` into the redirect's next hop. The location is
    /// resolved against the fetched URL, then seen in the guest's terms: a
    /// mirror's relative redirect stays on the mirror.
    fn follow(
        &self,
        request: &mut GuestRequest,
        fetched: &HopTarget,
        location: &str,
        status: u16,
    ) -> Result<(), Reply> {
        let next = fetched
            .url
            .join(location)
            .map(|u| self.guest_view(&u))
            .map_err(|e| Reply::Failed {
                kind: "connection",
                message: format!("redirect from {} to an invalid location: {e}", request.url),
            })?;
        if strips_auth(&request.url, &next) {
            // As `requests` does: credentials are for the origin they
            // were written for (a secret in them would be refused anyway).
            request
                .headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        }
        request.url = next;
        if status == 303
            || ((status == 301 || status == 302) && request.method == reqwest::Method::POST)
        {
            request.method = reqwest::Method::GET;
            request.body.clear();
        }
        Ok(())
    }
}

/// Whether a redirect from `old` to `new` leaves the origin the request's
/// credentials were for: another host, port or scheme, except the upgrade
/// from http to https on the default ports.
fn strips_auth(old: &reqwest::Url, new: &reqwest::Url) -> bool {
    if old.host_str() != new.host_str() {
        return true;
    }
    let upgrade = old.scheme() == "http"
        && new.scheme() == "https"
        && old.port().is_none()
        && new.port().is_none();
    !upgrade
        && (old.scheme() != new.scheme()
            || old.port_or_known_default() != new.port_or_known_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_with_their_origin_across_redirects() {
        let u = |s: &str| reqwest::Url::parse(s).expect("url");
        assert!(strips_auth(
            &u("https://a.example/x"),
            &u("https://b.example/x")
        ));
        assert!(strips_auth(
            &u("https://a.example/"),
            &u("http://a.example/")
        ));
        assert!(strips_auth(
            &u("https://a.example/"),
            &u("https://a.example:8443/")
        ));
        assert!(!strips_auth(
            &u("https://a.example/x"),
            &u("https://a.example/y")
        ));
        assert!(!strips_auth(
            &u("http://a.example/"),
            &u("https://a.example/")
        ));
    }

    #[test]
    fn only_redirect_statuses_with_a_location_are_followed_and_only_when_asked() {
        let loc = || Some("/next".to_string());
        for status in [301, 302, 303, 307, 308] {
            assert_eq!(
                redirect_location(true, status, loc()).as_deref(),
                Some("/next")
            );
            assert_eq!(redirect_location(false, status, loc()), None);
        }
        assert_eq!(redirect_location(true, 200, loc()), None);
        assert_eq!(redirect_location(true, 304, loc()), None);
        assert_eq!(redirect_location(true, 302, None), None);
    }
}

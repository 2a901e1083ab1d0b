//! What every request passes before a handler: a `Host` the dashboard
//! answers to, and for writes, no sign of coming from another site.
//!
//! DNS rebinding lets a web page the operator visits point its own name at
//! the dashboard's address and read it; the browser then sends that name as
//! `Host`. So the dashboard answers only to IP literals (a page cannot
//! rebind those), `localhost`, and names the operator allows with
//! `--allowed-host`. Writes (votes) are refused when the browser says the
//! request comes from another site (`Sec-Fetch-Site`) or from an `Origin`
//! other than the dashboard's own, so a page cannot vote in the operator's
//! name when no token is set.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;

/// The host part of a `Host` header value (`name`, `name:port`, `[v6]:port`).
fn host_part(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => value,
    }
}

/// Whether the dashboard answers to `host` (a `Host` header value).
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_part(host.trim()).to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            a == host.trim().to_ascii_lowercase() || (host_part(&a) == name && !a.contains(':'))
        })
}

/// Whether a write carries signs of coming from another site.
fn cross_site(req: &Request, host: &str) -> Option<String> {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site is {site}"));
        }
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let own = [format!("http://{host}"), format!("https://{host}")];
        if !own.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Some(format!("Origin is {origin}"));
        }
    }
    None
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

pub async fn check(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !host_allowed(&host, &s.allowed_hosts) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this dashboard does not answer to the host {:?}: open it by IP address or localhost, or start sandstack with --allowed-host NAME",
                host.chars().take(100).collect::<String>()
            ),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if let Some(why) = cross_site(&req, &host) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("refused a write from another site ({why})"),
            );
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_ip_literals_localhost_and_allowed_names() {
        let allowed = vec![
            "dash.example.com".to_string(),
            "ops.example.com:8443".into(),
        ];
        for ok in [
            "127.0.0.1:8080",
            "10.0.0.5",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "dash.example.com",
            "dash.example.com:80",
            "ops.example.com:8443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "",
            "evil.example:8080",
            "ops.example.com:9999",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }
}

//! What the HTTP channels (`slack`, `webhook`) share: checking the
//! configured URL, the client, and a JSON POST whose errors never repeat the
//! URL (it holds the token).

use std::time::Duration;

use super::SendError;

/// Check a channel URL; the error never repeats it (it holds the token).
pub(crate) fn channel_url(url: &str, var: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{var} is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{var} must be an http(s) URL"));
    }
    Ok(u)
}

pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// POST `body` as JSON; the error names the status or the failure, never
/// the URL.
pub(crate) fn post_json(
    client: &reqwest::Client,
    url: &url::Url,
    bearer: Option<&str>,
    body: &serde_json::Value,
) -> Result<(), SendError> {
    super::block_on(async {
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::transient(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(status, "server", None))
        }
    })?
}

/// Why an answer that is not a success failed, and whether a retry could
/// help: 408, 429 and 5xx could (after `wait`, the server's `Retry-After`,
/// for a 429), any other 4xx could not.
pub(crate) fn status_error(
    status: reqwest::StatusCode,
    who: &str,
    wait: Option<Duration>,
) -> SendError {
    let message = format!("{who} answered HTTP {status}");
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        SendError::throttled(message, wait)
    } else if status.is_client_error() && status != reqwest::StatusCode::REQUEST_TIMEOUT {
        SendError::permanent(message)
    } else {
        SendError::transient(message)
    }
}

/// A `Retry-After` given in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

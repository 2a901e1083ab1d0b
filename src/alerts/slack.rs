//! The `slack` channel: a message to a Slack incoming webhook
//! (`SANDSTACK_SLACK_WEBHOOK_URL`). Incoming webhooks cannot carry files, so
//! the plot is not attached here (e-mail and webhook carry it).

use std::time::Duration;

use serde_json::json;

use super::{Channel, Message};

pub struct SlackChannel {
    url: url::Url,
    client: reqwest::Client,
}

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
) -> Result<(), String> {
    super::block_on(async {
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("server answered HTTP {status}"))
        }
    })?
}

impl SlackChannel {
    pub fn new(url: &str) -> Result<Self, String> {
        Ok(SlackChannel {
            url: channel_url(url, "SANDSTACK_SLACK_WEBHOOK_URL")?,
            client: client()?,
        })
    }
}

impl Channel for SlackChannel {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn send(&self, m: &Message) -> Result<(), String> {
        let body = json!({
            "text": m.subject,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", m.subject)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("```{}```", m.text.trim_end())}},
            ],
        });
        post_json(&self.client, &self.url, None, &body)
    }
}

//! The `slack` channel through Slack's Web API, as Anomstack sends it: a bot
//! token (`ANOMSTACK_SLACK_BOT_TOKEN`) and a channel (`ANOMSTACK_SLACK_CHANNEL`,
//! a name such as `#alerts` or an ID). A message with a plot uploads it as an
//! image (files.getUploadURLExternal, the upload, files.completeUploadExternal),
//! one without is a chat.postMessage. A channel name is looked up once with
//! conversations.list.
//!
//! Slack answers HTTP 200 with `{"ok": false, "error": ...}` for most refusals:
//! those are permanent except `ratelimited`; HTTP 429 carries `Retry-After`.
//!
//! Every text Slack reads (the message, the plot's title) goes through
//! `escape::slack`, so nothing from a batch becomes a mention or a link.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::http::{channel_url, client, retry_after, status_error};
use super::{Channel, Message, SendError};
use crate::escape;

/// Slack's Web API; `SANDSTACK_SLACK_API_URL` points elsewhere (a test server, a proxy).
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

pub struct SlackApiChannel {
    api: url::Url,
    token: String,
    channel: String,
    /// The channel's ID once looked up.
    channel_id: Mutex<Option<String>>,
    client: reqwest::Client,
}

impl SlackApiChannel {
    pub fn new(token: &str, channel: &str, api_url: Option<&str>) -> Result<Self, String> {
        let mut api = channel_url(
            api_url.unwrap_or(DEFAULT_API_URL),
            "SANDSTACK_SLACK_API_URL",
        )?;
        if !api.path().ends_with('/') {
            api.set_path(&format!("{}/", api.path()));
        }
        let channel = channel.trim().trim_start_matches('#').to_string();
        if channel.is_empty() {
            return Err("ANOMSTACK_SLACK_CHANNEL is empty: set a channel name or ID".into());
        }
        Ok(SlackApiChannel {
            api,
            token: token.to_string(),
            channel_id: Mutex::new(looks_like_id(&channel).then(|| channel.clone())),
            channel,
            client: client()?,
        })
    }

    fn method_url(&self, method: &str) -> Result<url::Url, SendError> {
        self.api
            .join(method)
            .map_err(|e| SendError::permanent(format!("Slack API URL: {e}")))
    }

    /// POST to a Web API method and read its JSON answer, `ok` checked.
    fn call(&self, method: &str, body: Body<'_>) -> Result<Value, SendError> {
        let url = self.method_url(method)?;
        let answer = self.post(url, body, true)?;
        let value: Value = serde_json::from_slice(&answer)
            .map_err(|_| SendError::transient(format!("Slack {method}: the answer is not JSON")))?;
        if value["ok"].as_bool() == Some(true) {
            return Ok(value);
        }
        let error = value["error"].as_str().unwrap_or("unknown_error");
        let message = format!("Slack {method} refused: {error}{}", advice(error));
        Err(if error == "ratelimited" {
            SendError::throttled(message, None)
        } else {
            SendError::permanent(message)
        })
    }

    /// One POST; errors name the status, never the URL or the token. The
    /// token goes only to the API itself, never to a URL an answer named.
    fn post(&self, url: url::Url, body: Body<'_>, with_token: bool) -> Result<Vec<u8>, SendError> {
        let mut request = self.client.post(url);
        if with_token {
            request = request.bearer_auth(&self.token);
        }
        let request = match body {
            Body::Json(v) => request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(v.to_string()),
            Body::Form(pairs) => request.form(pairs),
            Body::Bytes(b) => request
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(b.to_vec()),
        };
        super::block_on(async {
            let resp = request
                .send()
                .await
                .map_err(|e| SendError::transient(e.without_url().to_string()))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(status_error(status, "Slack", retry_after(resp.headers())));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| SendError::transient(e.without_url().to_string()))?;
            Ok(bytes.to_vec())
        })?
    }

    /// The channel's ID: as configured, or looked up by name (once).
    fn channel_id(&self) -> Result<String, SendError> {
        if let Some(id) = self.channel_id.lock().ok().and_then(|g| g.clone()) {
            return Ok(id);
        }
        let mut cursor = String::new();
        loop {
            let mut form = vec![
                ("types", "public_channel,private_channel"),
                ("exclude_archived", "true"),
                ("limit", "1000"),
            ];
            if !cursor.is_empty() {
                form.push(("cursor", cursor.as_str()));
            }
            let page = self.call("conversations.list", Body::Form(&form))?;
            let found = page["channels"].as_array().and_then(|list| {
                list.iter()
                    .find(|c| c["name"].as_str() == Some(self.channel.as_str()))
                    .and_then(|c| c["id"].as_str())
                    .map(str::to_string)
            });
            if let Some(id) = found {
                if let Ok(mut g) = self.channel_id.lock() {
                    *g = Some(id.clone());
                }
                return Ok(id);
            }
            cursor = page["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cursor.is_empty() {
                return Err(SendError::permanent(format!(
                    "Slack channel #{} not found: check ANOMSTACK_SLACK_CHANNEL, and invite the bot to a private channel",
                    self.channel
                )));
            }
        }
    }
}

enum Body<'a> {
    Json(Value),
    Form(&'a [(&'a str, &'a str)]),
    Bytes(&'a [u8]),
}

/// Slack's channel IDs: C (public), G (private), D (direct), upper case.
fn looks_like_id(channel: &str) -> bool {
    channel.len() >= 9
        && matches!(channel.as_bytes()[0], b'C' | b'G' | b'D')
        && channel
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// What to do about the refusals an operator can fix.
fn advice(error: &str) -> &'static str {
    match error {
        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
            " (check ANOMSTACK_SLACK_BOT_TOKEN: a bot token, xoxb-...)"
        }
        "missing_scope" => {
            " (the Slack app needs the scopes chat:write, files:write and channels:read)"
        }
        "not_in_channel" | "channel_not_found" => {
            " (invite the bot to the channel, or check ANOMSTACK_SLACK_CHANNEL)"
        }
        _ => "",
    }
}

impl Channel for SlackApiChannel {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn send(&self, m: &Message) -> Result<(), SendError> {
        let channel = self.channel_id()?;
        let subject = escape::slack(&m.subject);
        let text = format!("*{subject}*\n```{}```", escape::slack(m.text.trim_end()));
        if m.plots.is_empty() {
            self.call(
                "chat.postMessage",
                Body::Json(json!({"channel": channel, "text": text})),
            )?;
            return Ok(());
        }
        // Each plot uploaded, then shared together with the text.
        let mut files = Vec::new();
        for plot in &m.plots {
            let length = plot.png.len().to_string();
            let slot = self.call(
                "files.getUploadURLExternal",
                Body::Form(&[
                    ("filename", plot.filename.as_str()),
                    ("length", length.as_str()),
                ]),
            )?;
            let (Some(upload_url), Some(file_id)) =
                (slot["upload_url"].as_str(), slot["file_id"].as_str())
            else {
                return Err(SendError::transient(
                    "Slack files.getUploadURLExternal: no upload_url or file_id in the answer",
                ));
            };
            let upload_url = url::Url::parse(upload_url).map_err(|_| {
                SendError::transient("Slack gave an upload URL that does not parse")
            })?;
            self.post(upload_url, Body::Bytes(&plot.png), false)?;
            files.push(json!({"id": file_id, "title": escape::slack(&plot.filename)}));
        }
        if let Some(first) = files.first_mut() {
            first["title"] = json!(subject);
        }
        self.call(
            "files.completeUploadExternal",
            Body::Json(json!({
                "files": files,
                "channel_id": channel,
                "initial_comment": text,
            })),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_and_names_are_told_apart() {
        assert!(looks_like_id("C0123ABCD"));
        assert!(looks_like_id("G01234567"));
        assert!(!looks_like_id("alerts"));
        assert!(!looks_like_id("Cats-and-dogs"));
        let c = SlackApiChannel::new("xoxb-1", "#alerts", Some("http://127.0.0.1:9/api"))
            .expect("channel");
        assert_eq!(c.channel, "alerts");
        assert_eq!(
            c.method_url("chat.postMessage").expect("url").as_str(),
            "http://127.0.0.1:9/api/chat.postMessage"
        );
        assert!(SlackApiChannel::new("xoxb-1", "  ", None).is_err());
    }
}

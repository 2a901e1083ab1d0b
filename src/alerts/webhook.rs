//! The `webhook` channel: the alert as JSON, POSTed to
//! `SANDSTACK_ALERT_WEBHOOK_URL` (PagerDuty, Teams, Opsgenie and friends,
//! usually through a small adapter), with `Authorization: Bearer` from
//! `SANDSTACK_ALERT_WEBHOOK_TOKEN` when set and the plot as base64 PNG.

use base64::Engine;

use super::http::{channel_url, client, post_json};
use super::{Channel, Message, SendError};

pub struct WebhookChannel {
    url: url::Url,
    token: Option<String>,
    client: reqwest::Client,
}

impl WebhookChannel {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        Ok(WebhookChannel {
            url: channel_url(url, "SANDSTACK_ALERT_WEBHOOK_URL")?,
            token,
            client: client()?,
        })
    }
}

/// The JSON a webhook receives. Its text (subject, body, the batch's
/// names, tags, errors and reasons) is left as the batch made it: serde_json
/// escapes quotes, backslashes and every control character when it writes
/// the body, which is all JSON needs, and the receiver decides how to show
/// it (`escape.rs` says so for every destination).
pub fn payload(m: &Message) -> serde_json::Value {
    let mut body = m.fields.clone();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("subject".into(), m.subject.clone().into());
        obj.insert("text".into(), m.text.clone().into());
        // The first plot as before; every plot in `plots`.
        if let Some(p) = m.plots.first() {
            obj.insert("plot_filename".into(), p.filename.clone().into());
            obj.insert(
                "plot_png_base64".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&p.png)
                    .into(),
            );
        }
        if m.plots.len() > 1 {
            let all: Vec<serde_json::Value> = m
                .plots
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "filename": p.filename,
                        "png_base64": base64::engine::general_purpose::STANDARD.encode(&p.png),
                    })
                })
                .collect();
            obj.insert("plots".into(), all.into());
        }
    }
    body
}

impl Channel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send(&self, m: &Message) -> Result<(), SendError> {
        post_json(&self.client, &self.url, self.token.as_deref(), &payload(m))
    }
}

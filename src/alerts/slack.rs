//! The `slack` channel: a message to a Slack incoming webhook
//! (`SANDSTACK_SLACK_WEBHOOK_URL`). Incoming webhooks cannot carry files, so
//! the plot is not attached here (e-mail and webhook carry it). Every text
//! Slack reads goes through `escape::slack`: a metric name, a tag or an
//! error can hold `<!channel>` or `<url|label>`.

use serde_json::json;

use super::http::{channel_url, client, post_json};
use super::{Channel, Message, SendError};
use crate::escape;

pub struct SlackChannel {
    url: url::Url,
    client: reqwest::Client,
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

    fn send(&self, m: &Message) -> Result<(), SendError> {
        let subject = escape::slack(&m.subject);
        let text = escape::slack(m.text.trim_end());
        let body = json!({
            "text": subject,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{subject}*")}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("```{text}```")}},
            ],
        });
        post_json(&self.client, &self.url, None, &body)
    }
}

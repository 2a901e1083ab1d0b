//! Channel settings from the environment, named as Anomstack names them
//! where it has a name (`ANOMSTACK_ALERT_EMAIL_*`), `SANDSTACK_*` otherwise.

use std::collections::BTreeMap;
use std::time::Duration;

use super::email::{EmailChannel, Security};
use super::slack::SlackChannel;
use super::slack_api::SlackApiChannel;
use super::webhook::WebhookChannel;
use super::{Channel, RetryPolicy};
use crate::config::AlertMethod;

/// The channels this process can send to.
#[derive(Default)]
pub struct Channels {
    pub email: Option<EmailChannel>,
    pub slack: Option<SlackChannel>,
    /// Slack through the Web API (Anomstack's way), preferred over the
    /// webhook: it carries the plot.
    pub slack_api: Option<SlackApiChannel>,
    pub webhook: Option<WebhookChannel>,
    pub retry: RetryPolicy,
    /// Settings that were present but wrong, reported when the channel is
    /// used.
    pub problems: BTreeMap<&'static str, String>,
}

impl std::fmt::Debug for Channels {
    // Never print settings: they hold passwords and webhook URLs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("email", &self.email.is_some())
            .field("slack", &self.slack.is_some())
            .field("slack_api", &self.slack_api.is_some())
            .field("webhook", &self.webhook.is_some())
            .field("retry", &self.retry)
            .finish()
    }
}

fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

impl Channels {
    pub fn from_env(env: &BTreeMap<String, String>) -> Channels {
        let mut c = Channels::default();
        match email(env) {
            Ok(e) => c.email = e,
            Err(why) => {
                c.problems.insert("email", why);
            }
        }
        match (
            get(env, "ANOMSTACK_SLACK_BOT_TOKEN"),
            get(env, "ANOMSTACK_SLACK_CHANNEL"),
        ) {
            (Some(token), Some(channel)) => {
                match SlackApiChannel::new(token, channel, get(env, "SANDSTACK_SLACK_API_URL")) {
                    Ok(s) => c.slack_api = Some(s),
                    Err(why) => {
                        c.problems.insert("slack", why);
                    }
                }
            }
            (Some(_), None) => {
                c.problems.insert(
                    "slack",
                    "ANOMSTACK_SLACK_BOT_TOKEN is set but ANOMSTACK_SLACK_CHANNEL is not: set the channel (#name or ID)".into(),
                );
            }
            _ => {}
        }
        if let Some(url) = get(env, "SANDSTACK_SLACK_WEBHOOK_URL") {
            match SlackChannel::new(url) {
                Ok(s) => c.slack = Some(s),
                Err(why) => {
                    c.problems.insert("slack", why);
                }
            }
        }
        if let Some(url) = get(env, "SANDSTACK_ALERT_WEBHOOK_URL") {
            let token = get(env, "SANDSTACK_ALERT_WEBHOOK_TOKEN").map(str::to_string);
            match WebhookChannel::new(url, token) {
                Ok(w) => c.webhook = Some(w),
                Err(why) => {
                    c.problems.insert("webhook", why);
                }
            }
        }
        if let Some(n) = get(env, "SANDSTACK_ALERT_RETRIES").and_then(|v| v.parse().ok()) {
            c.retry.attempts = n;
        }
        if let Some(ms) = get(env, "SANDSTACK_ALERT_RETRY_BASE_MS").and_then(|v| v.parse().ok()) {
            c.retry.base = Duration::from_millis(ms);
        }
        c
    }

    /// The channel for a method: Ok(None) for `log`, Err with what to set
    /// when it is not configured.
    pub fn get(&self, method: AlertMethod) -> Result<Option<&dyn Channel>, String> {
        if let Some(p) = self.problems.get(method.to_string().as_str()) {
            return Err(p.clone());
        }
        let missing = |what: &str| Err(format!("{method} is not configured: set {what}"));
        match method {
            AlertMethod::Log => Ok(None),
            AlertMethod::Email => match &self.email {
                Some(e) => Ok(Some(e)),
                None => missing("ANOMSTACK_ALERT_EMAIL_FROM, ANOMSTACK_ALERT_EMAIL_TO and ANOMSTACK_ALERT_EMAIL_SMTP_HOST"),
            },
            AlertMethod::Slack => match (&self.slack_api, &self.slack) {
                (Some(s), _) => Ok(Some(s)),
                (None, Some(s)) => Ok(Some(s)),
                (None, None) => missing("ANOMSTACK_SLACK_BOT_TOKEN and ANOMSTACK_SLACK_CHANNEL (Slack's Web API, as Anomstack), or SANDSTACK_SLACK_WEBHOOK_URL (an incoming webhook, without the plot)"),
            },
            AlertMethod::Webhook => match &self.webhook {
                Some(w) => Ok(Some(w)),
                None => missing("SANDSTACK_ALERT_WEBHOOK_URL"),
            },
        }
    }
}

fn email(env: &BTreeMap<String, String>) -> Result<Option<EmailChannel>, String> {
    let (Some(from), Some(to), Some(host)) = (
        get(env, "ANOMSTACK_ALERT_EMAIL_FROM"),
        get(env, "ANOMSTACK_ALERT_EMAIL_TO"),
        get(env, "ANOMSTACK_ALERT_EMAIL_SMTP_HOST"),
    ) else {
        return Ok(None);
    };
    let port = match get(env, "ANOMSTACK_ALERT_EMAIL_SMTP_PORT") {
        Some(p) => p.parse::<u16>().map_err(|_| {
            format!("ANOMSTACK_ALERT_EMAIL_SMTP_PORT must be a port number, found `{p}`")
        })?,
        None => 587,
    };
    let security = match get(env, "SANDSTACK_ALERT_EMAIL_SECURITY") {
        Some(s) => Security::parse(s)?,
        None if port == 465 => Security::Tls,
        None => Security::StartTls,
    };
    let password = get(env, "ANOMSTACK_ALERT_EMAIL_PASSWORD").map(str::to_string);
    EmailChannel::new(from, to, host, port, security, password).map(Some)
}

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
    /// Anomstack's failure e-mail (`ANOMSTACK_FAILURE_EMAIL_*`, each
    /// falling back to its `ANOMSTACK_ALERT_EMAIL_*`): every failed run,
    /// when the operator sets one of its variables.
    pub failure_email: Option<EmailChannel>,
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
            .field("failure_email", &self.failure_email.is_some())
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
        match email(env, "ALERT") {
            Ok(e) => c.email = e,
            Err(why) => {
                c.problems.insert("email", why);
            }
        }
        // Set means set to something: Anomstack's example environment file
        // carries these variables empty.
        if env
            .iter()
            .any(|(k, v)| k.starts_with(FAILURE_EMAIL) && !v.trim().is_empty())
        {
            match email(env, "FAILURE") {
                Ok(Some(e)) => c.failure_email = Some(e),
                Ok(None) => {
                    c.problems.insert(
                        FAILURE_PROBLEM,
                        "ANOMSTACK_FAILURE_EMAIL_* is set, but not a sender, a recipient and an SMTP host: set \
                         ANOMSTACK_FAILURE_EMAIL_FROM, _TO and _SMTP_HOST (or their ANOMSTACK_ALERT_EMAIL_* \
                         fallbacks)"
                            .into(),
                    );
                }
                Err(why) => {
                    c.problems.insert(FAILURE_PROBLEM, why);
                }
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

const FAILURE_EMAIL: &str = "ANOMSTACK_FAILURE_EMAIL_";

/// The key of a bad failure e-mail setting in [`Channels::problems`].
pub const FAILURE_PROBLEM: &str = "failure email";

/// The e-mail channel of `ANOMSTACK_{kind}_EMAIL_*` (kind ALERT or
/// FAILURE; a FAILURE variable that is unset falls back to its ALERT one,
/// as Anomstack's failure sensor reads them).
fn email(env: &BTreeMap<String, String>, kind: &str) -> Result<Option<EmailChannel>, String> {
    let var = |what: &str| {
        let own = format!("ANOMSTACK_{kind}_EMAIL_{what}");
        get(env, &own).map(|v| (own, v)).or_else(|| {
            let alert = format!("ANOMSTACK_ALERT_EMAIL_{what}");
            get(env, &alert).map(|v| (alert, v))
        })
    };
    let (Some(from), Some(to), Some((host_var, host))) = (var("FROM"), var("TO"), var("SMTP_HOST"))
    else {
        return Ok(None);
    };
    let port = match var("SMTP_PORT") {
        Some((name, p)) => p
            .parse::<u16>()
            .map_err(|_| format!("{name} must be a port number, found `{p}`"))?,
        None => 587,
    };
    let security = match get(env, "SANDSTACK_ALERT_EMAIL_SECURITY") {
        Some(s) => Security::parse(s)?,
        None if port == 465 => Security::Tls,
        None => Security::StartTls,
    };
    // The alert e-mail's password goes only to the alert e-mail's server.
    let own_host = host_var != "ANOMSTACK_ALERT_EMAIL_SMTP_HOST";
    let password = match var("PASSWORD") {
        Some((name, _)) if own_host && name == "ANOMSTACK_ALERT_EMAIL_PASSWORD" => None,
        p => p.map(|(_, p)| p.to_string()),
    };
    EmailChannel::new(
        (&from.0, from.1),
        (&to.0, to.1),
        host,
        port,
        security,
        password,
    )
    .map(Some)
}

//! Alert delivery: an alert (or a change, a threshold breach, the daily
//! summary) becomes a [`message::Message`] with the metric's plot, sent to
//! each channel the batch's `alert_methods` (or `tholdalert_methods`) names
//! ([`email`], [`slack`] or [`slack_api`], [`webhook`]; `log` is always on). Channels are
//! tried in parallel, each retried with backoff a bounded number of times;
//! one failing never blocks another or the job. [`notify`] ties it to the
//! jobs' results; [`plot`] renders the PNGs.

pub mod email;
mod http;
pub mod message;
pub mod settings;
pub mod slack;
pub mod slack_api;
pub mod webhook;

use std::time::{Duration, Instant};

pub use message::Message;

use crate::config::AlertMethod;
pub use settings::Channels;

/// How one channel's delivery of one message went.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub channel: String,
    pub outcome: Outcome,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent,
    /// The method is listed but not configured in the environment.
    NotConfigured(String),
    Failed(String),
}

/// Whether sending again could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The server was unreachable, busy or failing (a timeout, SMTP 4xx,
    /// HTTP 5xx, 408 or 429): try again after a pause.
    Transient,
    /// The request itself was refused (SMTP 5xx, another HTTP 4xx, a
    /// message that cannot be built): the same send would fail again.
    Permanent,
}

/// Why one send failed. The message never holds secrets (passwords,
/// webhook URLs, tokens): it is logged and stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub retry: Retry,
    pub message: String,
    /// How long the server asked to be left alone (`Retry-After`).
    pub wait: Option<Duration>,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        SendError {
            retry: Retry::Transient,
            message: message.into(),
            wait: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            retry: Retry::Permanent,
            message: message.into(),
            wait: None,
        }
    }

    /// A transient failure after which the server asked for `wait`.
    pub fn throttled(message: impl Into<String>, wait: Option<Duration>) -> Self {
        SendError {
            wait,
            ..SendError::transient(message)
        }
    }
}

/// The longest `Retry-After` honoured before the next attempt: a server
/// asking for more is tried again sooner, and reported if still refusing.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(30);

/// A channel that sends messages (blocking).
pub trait Channel: Sync {
    fn name(&self) -> &'static str;
    /// Send once.
    fn send(&self, message: &Message) -> Result<(), SendError>;
}

/// Retries after a failure: `attempts` in all, waiting `base`, 2x`base`,
/// 4x`base`... between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_secs(1),
        }
    }
}

fn send_with_retries(channel: &dyn Channel, message: &Message, retry: RetryPolicy) -> Delivery {
    let attempts = retry.attempts.max(1);
    let mut last = String::new();
    let mut made = 0;
    for attempt in 1..=attempts {
        made = attempt;
        let started = Instant::now();
        match channel.send(message) {
            Ok(()) => {
                return Delivery {
                    channel: channel.name().into(),
                    outcome: Outcome::Sent,
                    attempts: attempt,
                }
            }
            Err(e) => {
                tracing::warn!(
                    channel = channel.name(),
                    attempt,
                    attempts,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    error = %e,
                    "alert channel: an attempt failed"
                );
                last = e.message;
                if e.retry == Retry::Permanent {
                    break;
                }
                if attempt < attempts {
                    let backoff = retry.base * 2u32.saturating_pow(attempt - 1);
                    let asked = e.wait.unwrap_or_default().min(MAX_SERVER_WAIT);
                    std::thread::sleep(backoff.max(asked));
                }
            }
        }
    }
    tracing::error!(
        channel = channel.name(),
        attempts = made,
        error = %last,
        subject = %message.subject,
        "alert channel: giving up"
    );
    Delivery {
        channel: channel.name().into(),
        outcome: Outcome::Failed(last),
        attempts: made,
    }
}

/// Send `message` to every channel in `methods`, in parallel.
pub fn deliver(channels: &Channels, methods: &[AlertMethod], message: &Message) -> Vec<Delivery> {
    let mut out = Vec::new();
    let mut to_send: Vec<&dyn Channel> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for &m in methods {
        if !seen.insert(m) {
            continue;
        }
        match channels.get(m) {
            Ok(Some(c)) => to_send.push(c),
            // `log`: every alert is logged anyway.
            Ok(None) => {}
            Err(why) => out.push(Delivery {
                channel: m.to_string(),
                outcome: Outcome::NotConfigured(why),
                attempts: 0,
            }),
        }
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = to_send
            .iter()
            .map(|c| scope.spawn(|| send_with_retries(*c, message, channels.retry)))
            .collect();
        for (h, c) in handles.into_iter().zip(&to_send) {
            out.push(h.join().unwrap_or_else(|_| Delivery {
                channel: c.name().into(),
                outcome: Outcome::Failed("the channel panicked".into()),
                attempts: 1,
            }));
        }
    });
    for d in &out {
        crate::telemetry::global().delivered(&d.channel, d.outcome == Outcome::Sent);
    }
    out
}

/// Send `message` (a failed run) by Anomstack's failure e-mail, when the
/// operator set it up; None when not.
pub fn deliver_failure_email(channels: &Channels, message: &Message) -> Option<Delivery> {
    let d = match (
        &channels.failure_email,
        channels.problems.get(settings::FAILURE_PROBLEM),
    ) {
        (_, Some(why)) => Delivery {
            channel: settings::FAILURE_PROBLEM.into(),
            outcome: Outcome::NotConfigured(why.clone()),
            attempts: 0,
        },
        (Some(email), None) => send_with_retries(email, message, channels.retry),
        (None, None) => return None,
    };
    crate::telemetry::global().delivered(&d.channel, d.outcome == Outcome::Sent);
    Some(d)
}

/// One HTTP send from a plain thread (delivery threads are not inside the
/// scheduler's runtime), on the process's outbound runtime.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, SendError> {
    crate::outbound::block_on(f).map_err(|e| SendError::transient(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failure_email_half_set_up_says_what_is_missing() {
        let env: std::collections::BTreeMap<String, String> = [(
            "ANOMSTACK_FAILURE_EMAIL_TO".to_string(),
            "ops@example.test".to_string(),
        )]
        .into();
        let c = Channels::from_env(&env);
        let d = deliver_failure_email(
            &c,
            &Message::failed_run(&message::RunFailure {
                batch: "b",
                job: "ingest",
                run_id: 1,
                error: "boom",
                cassette: None,
            }),
        )
        .expect("a delivery");
        match d.outcome {
            Outcome::NotConfigured(why) => {
                assert!(
                    why.contains("ANOMSTACK_FAILURE_EMAIL_FROM, _TO and _SMTP_HOST"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(deliver_failure_email(
            &Channels::default(),
            &Message::recovered("b", "ingest", 1, 1)
        )
        .is_none());
    }

    #[test]
    fn failure_email_variables_left_empty_are_unset_and_errors_name_the_one_used() {
        let env = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let alert = [
            ("ANOMSTACK_ALERT_EMAIL_FROM", "sandstack@example.test"),
            ("ANOMSTACK_ALERT_EMAIL_TO", "oncall@example.test"),
            ("ANOMSTACK_ALERT_EMAIL_SMTP_HOST", "127.0.0.1"),
        ];
        // As in Anomstack's example environment file: present, empty.
        let c = Channels::from_env(&env(
            &[&alert[..], &[("ANOMSTACK_FAILURE_EMAIL_TO", " ")]].concat()
        ));
        assert!(
            c.failure_email.is_none() && c.problems.is_empty(),
            "{:?}",
            c.problems
        );
        let c = Channels::from_env(&env(&[
            &alert[..],
            &[("ANOMSTACK_FAILURE_EMAIL_TO", "not an address")],
        ]
        .concat()));
        let why = &c.problems[settings::FAILURE_PROBLEM];
        assert!(
            why.starts_with("ANOMSTACK_FAILURE_EMAIL_TO: `not an address`"),
            "{why}"
        );
        assert!(c.email.is_some(), "the alert e-mail is not affected");
    }

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A channel that fails its first `failures` sends with `retry`.
    struct Flaky {
        failures: u32,
        retry: Retry,
        calls: AtomicU32,
    }

    impl Channel for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        fn send(&self, _: &Message) -> Result<(), SendError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.failures {
                Err(SendError {
                    retry: self.retry,
                    message: format!("failure {n}"),
                    wait: None,
                })
            } else {
                Ok(())
            }
        }
    }

    fn message() -> Message {
        Message {
            kind: message::Kind::Summary,
            subject: "s".into(),
            text: "t".into(),
            fields: serde_json::json!({}),
            plots: Vec::new(),
        }
    }

    const FAST: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(1),
    };

    fn flaky(failures: u32, retry: Retry) -> Flaky {
        Flaky {
            failures,
            retry,
            calls: AtomicU32::new(0),
        }
    }

    #[test]
    fn transient_failures_are_retried_until_one_succeeds() {
        let c = flaky(2, Retry::Transient);
        let d = send_with_retries(&c, &message(), FAST);
        assert_eq!((d.outcome, d.attempts), (Outcome::Sent, 3));
    }

    #[test]
    fn transient_failures_give_up_after_the_last_attempt() {
        let c = flaky(9, Retry::Transient);
        let d = send_with_retries(&c, &message(), FAST);
        assert_eq!(
            (d.outcome, d.attempts),
            (Outcome::Failed("failure 3".into()), 3)
        );
    }

    #[test]
    fn a_permanent_failure_is_not_retried() {
        let c = flaky(9, Retry::Permanent);
        let d = send_with_retries(&c, &message(), FAST);
        assert_eq!(
            (d.outcome, d.attempts),
            (Outcome::Failed("failure 1".into()), 1)
        );
        assert_eq!(c.calls.load(Ordering::SeqCst), 1);
    }
}

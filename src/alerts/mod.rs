//! Alert delivery: an alert (or a change, a threshold breach, the daily
//! summary) becomes a [`message::Message`] with the metric's plot, sent to
//! each channel the batch's `alert_methods` (or `tholdalert_methods`) names
//! ([`email`], [`slack`], [`webhook`]; `log` is always on). Channels are
//! tried in parallel, each retried with backoff a bounded number of times;
//! one failing never blocks another or the job. [`notify`] ties it to the
//! jobs' results; [`plot`] renders the PNGs.

pub mod dispatch;
pub mod email;
mod http;
pub mod message;
pub mod notify;
pub mod plot;
pub mod settings;
pub mod slack;
pub mod webhook;

use std::time::{Duration, Instant};

pub use message::Message;
pub use settings::Channels;

/// Names accepted in `alert_methods` / `tholdalert_methods`.
pub const METHODS: [&str; 4] = ["email", "slack", "webhook", "log"];

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

/// A channel that sends messages (blocking).
pub trait Channel: Sync {
    fn name(&self) -> &'static str;
    /// Send once. The error must not contain secrets (passwords, webhook
    /// URLs, tokens): it is logged and stored.
    fn send(&self, message: &Message) -> Result<(), String>;
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
    for attempt in 1..=attempts {
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
                    "alert channel {}: attempt {attempt}/{attempts} failed after {} ms: {e}",
                    channel.name(),
                    started.elapsed().as_millis()
                );
                last = e;
            }
        }
        if attempt < attempts {
            std::thread::sleep(retry.base * 2u32.saturating_pow(attempt - 1));
        }
    }
    tracing::error!(
        "alert channel {}: giving up after {attempts} attempts: {last} ({})",
        channel.name(),
        message.subject
    );
    Delivery {
        channel: channel.name().into(),
        outcome: Outcome::Failed(last),
        attempts,
    }
}

/// Send `message` to every channel in `methods`, in parallel.
pub fn deliver(channels: &Channels, methods: &[String], message: &Message) -> Vec<Delivery> {
    let mut out = Vec::new();
    let mut to_send: Vec<&dyn Channel> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for m in methods {
        let m = m.trim().to_ascii_lowercase();
        if m.is_empty() || !seen.insert(m.clone()) {
            continue;
        }
        match channels.get(&m) {
            Ok(Some(c)) => to_send.push(c),
            // `log`: every alert is logged anyway.
            Ok(None) => {}
            Err(why) => out.push(Delivery {
                channel: m,
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
    out
}

/// A fresh single-threaded runtime for one HTTP send from a plain thread
/// (delivery threads are not inside the scheduler's runtime).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| format!("cannot start an async runtime: {e}"))
}

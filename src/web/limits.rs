//! How much the control API may be asked to spend. A run asked for now
//! costs what a scheduled one does (CPU, the batch's HTTP quota at its
//! sources, a chat model's tokens), and a reload renders the whole folder:
//! so run-now requests are limited per batch (a burst of
//! [`RUN_NOW_BURST`], then one per [`RUN_NOW_EVERY`]), reloads to one per
//! [`RELOAD_EVERY`], and an llmalert run asked for now counts as its
//! schedule period's run (see `api::llmalert_period_spent`), so asking
//! cannot spend `llmalert_max_calls` more often than the schedule does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Runs of one batch that may be asked for at once.
pub const RUN_NOW_BURST: f64 = 5.0;
/// Then one more each this often.
pub const RUN_NOW_EVERY: Duration = Duration::from_secs(60);
/// Reloads, at most one each this often.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// A token bucket: `tokens` left as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct ControlLimits {
    run_now: Mutex<HashMap<String, Bucket>>,
    last_reload: Mutex<Option<Instant>>,
}

impl ControlLimits {
    /// Take one run-now of `batch` at `now`, or how long until one is free.
    pub fn take_run_now(&self, batch: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.run_now.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(batch.to_string()).or_insert(Bucket {
            tokens: RUN_NOW_BURST,
            at: now,
        });
        let refill =
            now.saturating_duration_since(b.at).as_secs_f64() / RUN_NOW_EVERY.as_secs_f64();
        b.tokens = (b.tokens + refill).min(RUN_NOW_BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        Err(RUN_NOW_EVERY.mul_f64(1.0 - b.tokens))
    }

    /// Take the reload slot at `now`, or how long until it is free.
    pub fn take_reload(&self, now: Instant) -> Result<(), Duration> {
        let mut last = self.last_reload.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wait) = last
            .map(|t| RELOAD_EVERY.saturating_sub(now.saturating_duration_since(t)))
            .filter(|w| !w.is_zero())
        {
            return Err(wait);
        }
        *last = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gets_a_burst_then_one_a_minute_and_others_are_unaffected() {
        let limits = ControlLimits::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limits.take_run_now("b", t0), Ok(()));
        }
        let wait = limits.take_run_now("b", t0).expect_err("spent");
        assert!(
            wait > Duration::from_secs(59) && wait <= RUN_NOW_EVERY,
            "{wait:?}"
        );
        assert_eq!(limits.take_run_now("other", t0), Ok(()));
        assert_eq!(limits.take_run_now("b", t0 + RUN_NOW_EVERY), Ok(()));
        assert!(limits.take_run_now("b", t0 + RUN_NOW_EVERY).is_err());
    }

    #[test]
    fn reloads_are_spaced() {
        let limits = ControlLimits::default();
        let t0 = Instant::now();
        assert_eq!(limits.take_reload(t0), Ok(()));
        assert!(limits.take_reload(t0 + Duration::from_secs(3)).is_err());
        assert_eq!(limits.take_reload(t0 + RELOAD_EVERY), Ok(()));
    }
}

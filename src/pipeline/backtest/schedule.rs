//! When the backtest's jobs run: each job's cron, as the scheduler reads
//! it, and when a stored row would have arrived (the first ingest tick at
//! or after its timestamp).

use chrono::{DateTime, Utc};

use crate::config::{BatchSpec, CronExpr, Job};

/// The jobs a backtest replays, in the order they run at one instant.
pub const REPLAYED: [Job; 5] = [Job::Ingest, Job::Train, Job::Score, Job::Alert, Job::Change];

/// The crons of the replayed jobs; None for a job the batch disables.
#[derive(Debug, Clone)]
pub struct Schedule {
    crons: [Option<CronExpr>; 5],
}

impl Schedule {
    pub fn of(spec: &BatchSpec) -> Schedule {
        Schedule {
            crons: REPLAYED.map(|job| {
                spec.schedules
                    .get(&job)
                    .filter(|s| !s.disabled)
                    .map(|s| s.cron.clone())
            }),
        }
    }

    /// The first tick of `job` at or after `t_us`; None if it never runs
    /// again (or is disabled).
    pub fn next(&self, job: Job, t_us: i64) -> Option<i64> {
        let i = REPLAYED.iter().position(|j| *j == job)?;
        let cron = self.crons[i].as_ref()?;
        let from = DateTime::<Utc>::from_timestamp_micros(t_us.saturating_sub(1))?;
        cron.schedule
            .after(&from)
            .next()
            .map(|t| t.timestamp_micros())
    }

    /// When each row (timestamps oldest first) arrives: the first ingest
    /// tick at or after it; its own time when ingest does not run on a
    /// schedule.
    pub fn arrivals(&self, timestamps_us: &[i64]) -> Vec<i64> {
        let mut out = Vec::with_capacity(timestamps_us.len());
        let mut tick: Option<i64> = None;
        for &ts in timestamps_us {
            if self.crons[0].is_none() {
                out.push(ts);
                continue;
            }
            if tick.is_none_or(|t| t < ts) {
                tick = self.next(Job::Ingest, ts);
            }
            // No tick ever again (a cron for a date past): it never arrives.
            out.push(tick.unwrap_or(i64::MAX));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .timestamp_micros()
    }

    fn every(text: &str) -> Schedule {
        let cron = CronExpr::parse(text).expect("cron");
        Schedule {
            crons: [
                Some(cron.clone()),
                Some(cron.clone()),
                Some(cron.clone()),
                None,
                Some(cron),
            ],
        }
    }

    #[test]
    fn a_tick_at_the_instant_counts_and_rows_wait_for_the_next_ingest() {
        let s = every("*/5 * * * *");
        let t = at("2024-01-01T10:05:00Z");
        assert_eq!(s.next(Job::Score, t), Some(t));
        assert_eq!(s.next(Job::Score, t + 1), Some(at("2024-01-01T10:10:00Z")));
        assert_eq!(s.next(Job::Alert, t), None, "disabled");
        let rows = [at("2024-01-01T10:01:00Z"), t, at("2024-01-01T10:05:30Z")];
        assert_eq!(s.arrivals(&rows), vec![t, t, at("2024-01-01T10:10:00Z")]);
    }
}

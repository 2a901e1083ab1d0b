//! Failure streaks: when a batch's job fails `alert_on_failure_n` runs in
//! a row, one alert; when it succeeds again after that, one more. Streaks
//! live in memory; the first time a job is seen, its streak so far is read
//! from the run history, so a restart neither forgets a streak nor alerts
//! twice for it.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::RunStatus;

/// What a finished run calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The streak has just reached the threshold.
    Failing { failures: u32 },
    /// A success ended a streak that was alerted.
    Recovered { failures: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Streak {
    failures: u32,
    alerted: bool,
}

/// Whether a run's status counts as a failure; skipped and interrupted
/// runs neither count nor end a streak.
pub fn counts(status: RunStatus) -> Option<bool> {
    match status {
        RunStatus::Failed | RunStatus::TimedOut => Some(true),
        RunStatus::Succeeded => Some(false),
        RunStatus::Skipped | RunStatus::Interrupted => None,
    }
}

#[derive(Debug, Default)]
pub struct FailureStreaks {
    streaks: Mutex<HashMap<(String, String), Streak>>,
}

impl FailureStreaks {
    /// Take in a finished run of `(batch, job)`. `threshold` is the
    /// batch's `alert_on_failure_n` (0: never alert); `history` gives, the
    /// first time, the failures in a row the history holds, this run
    /// included.
    pub fn observe(
        &self,
        key: (String, String),
        status: RunStatus,
        threshold: u32,
        history: impl FnOnce() -> u32,
    ) -> Option<Notice> {
        let failed = counts(status)?;
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        let s = streaks.entry(key).or_insert_with(|| {
            let before = history().saturating_sub(u32::from(failed));
            Streak {
                failures: before,
                alerted: threshold > 0 && before >= threshold,
            }
        });
        if failed {
            s.failures += 1;
            if threshold > 0 && s.failures >= threshold && !s.alerted {
                s.alerted = true;
                return Some(Notice::Failing {
                    failures: s.failures,
                });
            }
            return None;
        }
        let notice = s.alerted.then_some(Notice::Recovered {
            failures: s.failures,
        });
        *s = Streak {
            failures: 0,
            alerted: false,
        };
        notice
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    fn key() -> (String, String) {
        ("b".into(), "ingest".into())
    }

    #[test]
    fn one_alert_per_streak_and_one_recovery() {
        let f = FailureStreaks::default();
        let seen: Vec<Option<Notice>> = [
            Failed, Failed, Skipped, TimedOut, Failed, Succeeded, Succeeded, Failed,
        ]
        .into_iter()
        .map(|s| f.observe(key(), s, 3, || u32::from(s == Failed)))
        .collect();
        assert_eq!(
            seen,
            vec![
                None,
                None,
                None,
                Some(Notice::Failing { failures: 3 }),
                None,
                Some(Notice::Recovered { failures: 4 }),
                None,
                None
            ]
        );
    }

    #[test]
    fn a_restart_continues_the_streak_the_history_holds() {
        let f = FailureStreaks::default();
        // Five failures in the history, this one included: alerted before.
        assert_eq!(f.observe(key(), Failed, 3, || 5), None);
        assert_eq!(
            f.observe(key(), Succeeded, 3, || 0),
            Some(Notice::Recovered { failures: 5 })
        );
        let g = FailureStreaks::default();
        // Two before the restart, this is the third.
        assert_eq!(
            g.observe(key(), Failed, 3, || 3),
            Some(Notice::Failing { failures: 3 })
        );
        let h = FailureStreaks::default();
        assert_eq!(h.observe(key(), Failed, 0, || 9), None, "0 turns it off");
    }
}

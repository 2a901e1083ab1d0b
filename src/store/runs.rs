//! Run history: one row per scheduled run (what ran, when it was due, when
//! it started and ended, how it went, what it cost), read by `sandstack
//! runs` and the dashboard, pruned so it never grows without bound.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::StoreError;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// Its tick came while the previous run of the same job was still going.
    Skipped,
    /// Still running when shutdown's grace period ended.
    Interrupted,
    /// Stopped by its time limit (`job_timeout_s`, `ingest_timeout_s`).
    #[serde(rename = "timeout")]
    TimedOut,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Interrupted => "interrupted",
            RunStatus::TimedOut => "timeout",
        }
    }

    pub fn parse(text: &str) -> RunStatus {
        match text {
            "succeeded" => RunStatus::Succeeded,
            "skipped" => RunStatus::Skipped,
            "interrupted" => RunStatus::Interrupted,
            "timeout" => RunStatus::TimedOut,
            _ => RunStatus::Failed,
        }
    }
}

/// One row of the history. Instants are µs since the epoch, UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Assigned by the database; 0 before insertion.
    pub run_id: i64,
    pub batch: String,
    pub job: String,
    pub scheduled_us: i64,
    pub started_us: i64,
    pub ended_us: i64,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Rows stored (ingest) or judgements written (score, alert, change...).
    pub rows: u64,
    pub fuel: u64,
    pub wall_ms: f64,
    /// The run's cassette file, when `record_runs` is on.
    pub cassette: Option<String>,
    /// What the run printed and logged (ingest: the guest's output and log
    /// records, as capped by `ingest_max_output_kb`), or what the job did.
    pub log: Option<String>,
    /// 1, or which retry of the tick this was (`ingest_retries`).
    pub attempt: u32,
    /// The worker that ran it, when several share the store.
    #[serde(default)]
    pub worker: Option<String>,
}

/// Longest log kept with a run, in bytes (the guest's own cap,
/// `ingest_max_output_kb`, is the operator's to raise).
pub(crate) const MAX_LOG_BYTES: usize = 1 << 20;

/// `log` cut to [`MAX_LOG_BYTES`] at a character boundary, saying so.
pub(crate) fn capped(log: &str) -> &str {
    cut(log, MAX_LOG_BYTES)
}

/// Longest error kept with a run: errors echo what a batch wrote (its SQL,
/// DuckDB's `error()` of any text), which must not fill the history.
pub const MAX_ERROR_BYTES: usize = 16 << 10;

/// `error` cut to [`MAX_ERROR_BYTES`], saying how much was cut.
pub fn capped_error(error: &str) -> std::borrow::Cow<'_, str> {
    if error.len() <= MAX_ERROR_BYTES {
        return error.into();
    }
    let kept = cut(error, MAX_ERROR_BYTES);
    format!("{kept} … ({} more bytes cut)", error.len() - kept.len()).into()
}

/// `text`'s first `max` bytes at most, ending at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Which runs to read.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// One run by id.
    pub run_id: Option<i64>,
    pub batch: Option<String>,
    pub job: Option<String>,
    pub failed_only: bool,
    /// Newest first; at most this many.
    pub limit: usize,
    pub offset: usize,
}

/// How much history to keep.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age_days: u64,
    pub max_rows: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_days: 14,
            max_rows: 100_000,
        }
    }
}

pub trait RunHistory {
    fn ensure_runs_table(&self) -> Result<(), StoreError>;

    /// Store a run; returns its id.
    fn record_run(&self, r: &RunRecord) -> Result<i64, StoreError>;

    /// Runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// One run by id.
    fn run_by_id(&self, run_id: i64) -> Result<Option<RunRecord>, StoreError> {
        let found = self.list_runs(&RunFilter {
            run_id: Some(run_id),
            limit: 1,
            ..Default::default()
        })?;
        Ok(found.into_iter().next())
    }

    /// The newest scheduled instant recorded for a batch's job, for
    /// `catch_up`.
    fn last_scheduled(&self, batch: &str, job: &str) -> Result<Option<i64>, StoreError>;

    /// Delete runs older than the retention age, then the oldest beyond
    /// the row cap; returns how many went.
    fn prune_runs(&self, keep: Retention, now_us: i64) -> Result<u64, StoreError>;

    /// The newest ingest run of each batch that was not skipped:
    /// (status, ended µs).
    fn last_ingests(&self) -> Result<BTreeMap<String, (String, i64)>, StoreError>;

    /// Pause or resume a batch's schedules; kept across restarts.
    fn set_paused(&self, batch: &str, paused: bool) -> Result<(), StoreError>;

    /// The batches whose schedules are paused.
    fn paused_batches(&self) -> Result<BTreeSet<String>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_names() {
        for s in [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Skipped,
            RunStatus::Interrupted,
            RunStatus::TimedOut,
        ] {
            assert_eq!(RunStatus::parse(s.as_str()), s);
        }
        assert_eq!(RunStatus::TimedOut.as_str(), "timeout");
    }
}

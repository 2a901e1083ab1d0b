//! One tick's attempts: run it, record it, and say whether to try again
//! (`ingest_retries`); and the record of a tick that did no work.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::clock::Clock;
use super::plan::JobKey;
use super::runner::{JobRunner, RunLog, RunTicket};
use super::us;
use crate::store::{RunRecord, RunStatus};

/// Wait before retry `attempt + 1` of a tick: 1, 2, 4 ... s, at most a
/// minute.
pub(super) fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << (attempt - 1).min(6)).min(Duration::from_secs(60))
}

/// Run one attempt of a tick and record it; says whether to try again
/// (its failure can pass and `retries` are left).
pub(super) fn attempt_once(
    ticket: &RunTicket,
    runner: &dyn JobRunner,
    log: &dyn RunLog,
    clock: &dyn Clock,
    retries: u32,
    worker: Option<String>,
) -> (RunRecord, bool) {
    let attempt = ticket.attempt;
    let started = clock.now();
    let t0 = Instant::now();
    let result = runner.run(ticket);
    let again = result.status == RunStatus::Failed && result.can_pass && attempt <= retries;
    let mut error = result.error;
    if again {
        let wait = retry_delay(attempt).as_secs();
        let note = format!("retrying in {wait} s (ingest_retries={retries}, attempt {attempt})");
        error = Some(match error {
            Some(e) => format!("{e}\n{note}"),
            None => note,
        });
    }
    let mut record = RunRecord {
        run_id: 0,
        batch: ticket.spec.metric_batch.clone(),
        job: ticket.job.name().into(),
        scheduled_us: us(ticket.scheduled),
        started_us: us(started),
        ended_us: us(clock.now()),
        status: result.status,
        error,
        rows: result.rows,
        fuel: result.fuel,
        wall_ms: t0.elapsed().as_secs_f64() * 1e3,
        cassette: result.cassette,
        log: result.log,
        attempt,
        worker,
    };
    // A tick's last attempt ends its claim in the same transaction.
    record.run_id = if again {
        log.record(&record)
    } else {
        log.record_claimed(&record)
    };
    (record, again)
}

/// The record of a run that did no work (skipped, interrupted, panicked):
/// `times` are scheduled, started and ended; `worker`, this one in a fleet.
pub(super) fn unfinished(
    key: &JobKey,
    times: [DateTime<Utc>; 3],
    status: RunStatus,
    error: String,
    worker: Option<String>,
) -> RunRecord {
    RunRecord {
        run_id: 0,
        batch: key.0.clone(),
        job: key.1.name().into(),
        scheduled_us: us(times[0]),
        started_us: us(times[1]),
        ended_us: us(times[2]),
        status,
        error: Some(error),
        rows: 0,
        fuel: 0,
        wall_ms: 0.0,
        cassette: None,
        log: None,
        attempt: 1,
        worker,
    }
}

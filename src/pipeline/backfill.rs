//! Backfill: ingest a batch over past periods with a simulated clock, then
//! judge what came in, so a new batch has history, models and scores at
//! once (`sandstack backfill`, and the demo profile of `sandstack run`).

use std::time::{Duration, Instant};

use super::context::JobContext;
use super::dispatch;
use super::error::DispatchError;
use super::outcome::JobOutcome;
use crate::config::{self, BatchSpec, ConfigError, Job};
use crate::store::Store;

#[derive(Debug, Default)]
pub struct BackfillReport {
    pub periods_run: usize,
    pub stored: usize,
    pub failed: usize,
    /// The first failure, for the user.
    pub first_error: Option<String>,
    /// Stopped early because every one of the first periods failed.
    pub gave_up: bool,
}

/// Which past periods to ingest: `count` of them, `step` apart, the last
/// at `end_us`.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    pub count: usize,
    pub step: Duration,
    pub end_us: i64,
    /// When the first this many periods all fail (a source that cannot be
    /// reached), stop rather than fail the same way hundreds of times.
    pub give_up_after: Option<usize>,
}

/// Ingest each of `periods` with the clock at its instant, through the
/// pipeline with `ctx`; `progress` hears every tenth.
pub fn ingest_periods(
    spec: &BatchSpec,
    store: &mut Store,
    ctx: &JobContext<'_>,
    plan: Periods,
    progress: &dyn Fn(usize, usize, Duration),
) -> BackfillReport {
    let Periods {
        count: periods,
        step,
        end_us: now_us,
        give_up_after,
    } = plan;
    let step_us = step.as_micros() as i64;
    let started = Instant::now();
    let mut report = BackfillReport::default();
    for i in 0..periods {
        let at = now_us - (periods - 1 - i) as i64 * step_us;
        report.periods_run += 1;
        match dispatch::run(spec, store, Job::Ingest, &ctx.at(at)) {
            Ok(out) => report.stored += out.rows() as usize,
            Err(f) => {
                report.failed += 1;
                if report.first_error.is_none() {
                    report.first_error = Some(f.to_string());
                }
            }
        }
        if give_up_after.is_some_and(|n| report.failed == n && report.periods_run == n) {
            report.gave_up = true;
            break;
        }
        if periods >= 10 && (i + 1) % (periods / 10) == 0 {
            progress(i + 1, periods, started.elapsed());
        }
    }
    report
}

/// The batch's spec for judging a backfill: score the whole backfill, not
/// just the newest `score_max_n` rows, and alert on any of it, not just the
/// newest `alert_recent_n` observations. The templates are rendered again
/// with the wider values, as if the batch file set them.
pub fn scoring_spec(spec: &BatchSpec, periods: usize) -> Result<BatchSpec, Vec<ConfigError>> {
    let wider = |current: u64| serde_yaml_ng::Value::from(current.max(periods as u64));
    config::with_values(
        spec,
        &[
            ("score_max_n", wider(spec.score.max_n)),
            ("alert_recent_n", wider(spec.alert.recent_n)),
        ],
    )
}

/// Hears each judging job's end: the widened spec, the job, how it went;
/// returns whether to go on.
pub type JudgedBy<'a> = dyn FnMut(&BatchSpec, Job, Result<JobOutcome, DispatchError>) -> bool + 'a;

/// The jobs that judge a backfill, in order.
pub const JUDGING: [Job; 4] = [Job::Train, Job::Score, Job::Alert, Job::Change];

/// Judge `periods` just backfilled: train, score, alert and change with
/// the spec widened to cover them all ([`scoring_spec`]), each job's
/// outcome handed to `each` as it ends; a failed job does not stop the next
/// unless `each` says so by returning false.
pub fn judge(
    spec: &BatchSpec,
    store: &mut Store,
    ctx: &JobContext<'_>,
    periods: usize,
    each: &mut JudgedBy<'_>,
) -> Result<(), Vec<ConfigError>> {
    let scoring = scoring_spec(spec, periods)?;
    for job in JUDGING {
        if !each(&scoring, job, dispatch::run(&scoring, store, job, ctx)) {
            break;
        }
    }
    Ok(())
}

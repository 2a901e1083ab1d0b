//! `sandstack backtest`: how a batch's configuration would have done on its
//! stored history. Each metric's rows are replayed in time order through
//! the batch's train, score, alert and change steps on their crons
//! ([`replay`]), in memory, so the batch's real scores, alerts and models
//! are never touched; metrics are replayed on every core. [`labels`]
//! reads known anomaly windows and [`evaluate`] scores the alerts against
//! them.

pub mod evaluate;
pub mod labels;
pub mod replay;
pub mod schedule;

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use rayon::prelude::*;

use crate::config::{self, BatchSpec, Job};
use crate::domain::MetricType;
use crate::jobs::rows::JobFailure;
use crate::store::{Store, StoreError};
pub use replay::{MetricHistory, Replayed};
use schedule::Schedule;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(
        "batch {batch} replaces the shipped {keys}: the backtest replays what the shipped \
         templates select, so it would not be replaying this batch. Backtest a copy of the batch \
         without them, or compare with `sandstack backfill`"
    )]
    OwnTemplates { batch: String, keys: String },
    #[error(
        "batch {batch} resamples its metrics (preprocess_params.freq: {freq}): the backtest \
         replays observation by observation and does not yet put them in bins as the alert SQL \
         does, so its alerts would not be the scheduler's. Backtest a copy of the batch without \
         freq, or compare with `sandstack backfill`"
    )]
    Resampled { batch: String, freq: String },
    #[error("batch {batch} has more than {max} stored observations{range}: replay part of it with --from/--to, or raise --max-observations")]
    TooMany {
        batch: String,
        max: usize,
        range: String,
    },
    #[error("batch {batch} has no stored observations{range}: import history first (`sandstack import {batch} FILE`)")]
    NoHistory { batch: String, range: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("batch {batch}, metric {metric}: {source}")]
    Job {
        batch: String,
        metric: String,
        #[source]
        source: Box<JobFailure>,
    },
}

/// Refuse a batch whose templates the replay would not follow.
pub fn check_replayable(spec: &BatchSpec) -> Result<(), BacktestError> {
    if let Some(freq) = spec.preprocess_params.resampling() {
        return Err(BacktestError::Resampled {
            batch: spec.metric_batch.clone(),
            freq: freq.to_string(),
        });
    }
    let own: Vec<String> = config::overridden_templates(spec)
        .into_iter()
        .filter(|k| {
            [Job::Train, Job::Score, Job::Alert, Job::Change]
                .iter()
                .any(|j| j.sql_key() == Some(k.as_str()))
        })
        .collect();
    if own.is_empty() {
        Ok(())
    } else {
        Err(BacktestError::OwnTemplates {
            batch: spec.metric_batch.clone(),
            keys: own.join(", "),
        })
    }
}

/// The batch's stored observations within `[from, to]` (µs, inclusive),
/// by metric, oldest first; observations stored twice for one time are
/// averaged, as the shipped templates do.
pub fn load_history(
    spec: &BatchSpec,
    store: &Store,
    from: Option<i64>,
    to: Option<i64>,
    max: usize,
) -> Result<BTreeMap<String, MetricHistory>, BacktestError> {
    let mut points: BTreeMap<String, BTreeMap<i64, (f64, u32)>> = BTreeMap::new();
    let within = |t: i64| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t <= e);
    let range = match (from, to) {
        (None, None) => String::new(),
        _ => " in the range asked for".to_string(),
    };
    let mut kept = 0usize;
    let read = store.stream_rows(&spec.table_key, Some(&spec.metric_batch), &mut |b| {
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let names = b.column(2).as_string::<i32>();
        let types = b.column(3).as_string::<i32>();
        let values = b.column(4).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            if types.value(r) != MetricType::Metric.as_str()
                || values.is_null(r)
                || values.value(r).is_nan()
                || !within(ts.value(r))
            {
                continue;
            }
            let e = points
                .entry(names.value(r).to_string())
                .or_default()
                .entry(ts.value(r))
                .or_insert((0.0, 0));
            e.0 += values.value(r);
            e.1 += 1;
            kept += 1;
            if kept > max {
                // Stops the stream; the flag says why.
                return Err(StoreError::Template("too many observations".into()));
            }
        }
        Ok(())
    });
    if let Err(e) = read {
        return Err(if kept > max {
            BacktestError::TooMany {
                batch: spec.metric_batch.clone(),
                max,
                range,
            }
        } else {
            e.into()
        });
    }
    if points.is_empty() {
        return Err(BacktestError::NoHistory {
            batch: spec.metric_batch.clone(),
            range,
        });
    }
    Ok(points
        .into_iter()
        .map(|(name, p)| {
            let (timestamps_us, values) = p
                .into_iter()
                .map(|(t, (sum, n))| (t, sum / n as f64))
                .unzip();
            (
                name,
                MetricHistory {
                    timestamps_us,
                    values,
                },
            )
        })
        .collect())
}

/// Replay every metric of `history` through `spec`, on every core; the
/// result is the same on one. `progress` hears arrived rows as they come.
pub fn run(
    spec: &BatchSpec,
    history: &BTreeMap<String, MetricHistory>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<BTreeMap<String, Replayed>, BacktestError> {
    check_replayable(spec)?;
    let schedule = Schedule::of(spec);
    history
        .par_iter()
        .map(|(metric, h)| {
            replay::replay(spec, &schedule, metric, h, progress)
                .map(|r| (metric.clone(), r))
                .map_err(|e| BacktestError::Job {
                    batch: spec.metric_batch.clone(),
                    metric: metric.clone(),
                    source: Box::new(e),
                })
        })
        .collect()
}

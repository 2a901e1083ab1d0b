//! One metric's replay: its stored rows arrive in time order and the
//! train, score, alert (threshold alerts included) and change jobs run on
//! their crons, each seeing only what had arrived by then, through the
//! jobs' own per-metric steps. What the shipped templates select for each
//! job (the day windows, `*_max_n`, smoothing and snooze over the rows
//! before) is computed here over the rows in memory instead of by SQL:
//! that is what lets a replay take one process and milliseconds per step
//! (`tests/it/backtest.rs` runs the scheduler's path beside it and
//! compares every score and alert).
//!
//! A job runs at its first tick after something it reads changed: a row
//! arrived, a model was trained, a score was written, or a row left the
//! job's day window (`*_metric_timestamp_max_days_ago` look back from the
//! clock, so what a job reads changes with time alone). Ticks at which
//! nothing it reads changed would do nothing and are skipped.
//!
//! Observations stored twice for one time are averaged when loaded, as the
//! templates average them; the threshold alerts' read (one row per stored
//! row) and duplicates that arrived at different times are the cases where
//! the scheduler could have judged otherwise. Smoothing frames over more
//! than [`EXACT_FRAME`] rows are summed by running totals, which may differ
//! from SQL's in the last bits.

use std::collections::BTreeSet;

use super::schedule::Schedule;
use crate::config::{BatchSpec, Job};
use crate::domain::{Judgement, Series};
use crate::jobs::alert::{alert_metric, threshold_breach};
use crate::jobs::change::change_metric;
use crate::jobs::rows::JobFailure;
use crate::jobs::score::score_metric;
use crate::jobs::train::fit_metric;
use crate::models::TrainedModel;
use crate::store::NewestValue;

const DAY_US: i64 = 86_400_000_000;

/// Frames up to this many rows are summed in order, as SQL's window
/// average does; longer ones by running totals (linear, not quadratic).
pub const EXACT_FRAME: usize = 256;

/// `days` as µs, saturating.
fn days_us(days: u64) -> i64 {
    i64::try_from(days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_US)
}

/// A metric's stored observations, oldest first, one per timestamp.
#[derive(Debug, Clone, Default)]
pub struct MetricHistory {
    pub timestamps_us: Vec<i64>,
    pub values: Vec<f64>,
}

/// What the replay of one metric produced.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    pub timestamps_us: Vec<i64>,
    pub values: Vec<f64>,
    /// The score each observation got when it was scored (NaN: never).
    pub score: Vec<f64>,
    /// The score averaged over the `alert_smooth_n` observations up to it.
    pub score_smooth: Vec<f64>,
    pub alerts: Vec<Judgement>,
    pub threshold_alerts: Vec<Judgement>,
    pub changes: Vec<Judgement>,
    /// When each of `alerts`, `threshold_alerts` and `changes` was raised:
    /// the tick of the job that stored it (the observation it is stamped
    /// with came earlier).
    pub raised_us: Raised,
    /// Rows that never arrive: no ingest tick at or after them (the cron
    /// library reaches the year 2100).
    pub never_arrived: usize,
    /// Times the models were fitted.
    pub trainings: usize,
    /// When the first model was fitted.
    pub first_model_us: Option<i64>,
    /// Why training skipped the metric, the last time it did.
    pub last_skip: Option<String>,
}

/// The ticks judgements were raised at, in the order of their lists.
#[derive(Debug, Clone, Default)]
pub struct Raised {
    pub alerts: Vec<i64>,
    pub threshold_alerts: Vec<i64>,
    pub changes: Vec<i64>,
}

impl Replayed {
    /// Forget the per-observation columns, keeping the judgements and
    /// counts (a sweep keeps only what its report needs).
    pub fn drop_points(&mut self) {
        for v in [&mut self.values, &mut self.score, &mut self.score_smooth] {
            *v = Vec::new();
        }
        self.timestamps_us = Vec::new();
    }
}

/// The pending tick of each job that runs on stored rows.
#[derive(Default)]
struct Pending {
    train: Option<i64>,
    score: Option<i64>,
    alert: Option<i64>,
    change: Option<i64>,
}

/// What a replay carries from one step to the next.
struct State<'a> {
    spec: &'a BatchSpec,
    metric: &'a str,
    h: &'a MetricHistory,
    /// Rows arrived so far.
    arrived: usize,
    /// By position in `model_configs`.
    models: Vec<Option<TrainedModel>>,
    scored: BTreeSet<i64>,
    alerted: BTreeSet<i64>,
    /// Timestamps with a threshold alert / a change.
    held: BTreeSet<i64>,
    changed: BTreeSet<i64>,
    /// When a row leaves the day window each job read at its last run.
    drift: Pending,
    out: Replayed,
}

/// Replay `h` through `spec`'s jobs on `schedule`; `progress` hears how
/// many rows arrived at each step.
pub fn replay(
    spec: &BatchSpec,
    schedule: &Schedule,
    metric: &str,
    h: &MetricHistory,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Replayed, JobFailure> {
    let arrival = schedule.arrivals(&h.timestamps_us);
    let mut st = State {
        spec,
        metric,
        h,
        arrived: 0,
        models: vec![None; spec.train.model_configs.len()],
        scored: BTreeSet::new(),
        alerted: BTreeSet::new(),
        held: BTreeSet::new(),
        changed: BTreeSet::new(),
        drift: Pending::default(),
        out: Replayed {
            timestamps_us: h.timestamps_us.clone(),
            values: h.values.clone(),
            score: vec![f64::NAN; h.values.len()],
            ..Replayed::default()
        },
    };
    let mut p = Pending::default();
    // A job runs at its first tick at or after the earliest change it has
    // not seen yet.
    let at_or_after = |slot: &mut Option<i64>, job: Job, changed: Option<i64>| {
        if let Some(t) = changed.and_then(|at| schedule.next(job, at)) {
            *slot = Some(slot.map_or(t, |s| s.min(t)));
        }
    };
    let wake = |slot: &mut Option<i64>, job: Job, t: i64| at_or_after(slot, job, Some(t));
    // A job whose window loses a row runs again at its first tick after,
    // while the history lasts: past its last row the replay has ended.
    let end = arrival.iter().rev().find(|t| **t != i64::MAX).copied();
    let drift = |slot: &mut Option<i64>, job: Job, leaves: Option<i64>| {
        let within = leaves.filter(|at| end.is_some_and(|e| *at <= e));
        at_or_after(slot, job, within)
    };
    loop {
        let next_row = arrival.get(st.arrived).copied().filter(|t| *t != i64::MAX);
        let Some(t) = [next_row, p.train, p.score, p.alert, p.change]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        let before = st.arrived;
        while arrival.get(st.arrived) == Some(&t) {
            st.arrived += 1;
        }
        if st.arrived > before {
            progress((st.arrived - before) as u64);
            // A live ingest checks the thresholds as it stores its rows.
            st.threshold(t);
            wake(&mut p.train, Job::Train, t);
            wake(&mut p.score, Job::Score, t);
            wake(&mut p.alert, Job::Alert, t);
            wake(&mut p.change, Job::Change, t);
        }
        if p.train == Some(t) {
            p.train = None;
            if st.train(t)? {
                wake(&mut p.score, Job::Score, t);
            }
            drift(&mut p.train, Job::Train, st.drift.train);
        }
        if p.score == Some(t) {
            p.score = None;
            if st.score()? {
                wake(&mut p.alert, Job::Alert, t);
            }
        }
        if p.alert == Some(t) {
            p.alert = None;
            st.alert(t);
            st.threshold(t);
            drift(&mut p.alert, Job::Alert, st.drift.alert);
        }
        if p.change == Some(t) {
            p.change = None;
            st.change(t);
            drift(&mut p.change, Job::Change, st.drift.change);
        }
    }
    st.out.never_arrived = arrival.iter().filter(|t| **t == i64::MAX).count();
    let smooth_n = spec.alert.smooth_n.max(1) as usize;
    st.out.score_smooth = trailing_mean(&st.out.score, 0, st.out.score.len(), smooth_n);
    Ok(st.out)
}

/// The mean of the non-NaN values among the `n` up to each position of
/// `v[lo..hi]`, not reaching before `lo` (NaN where there are none): SQL's
/// `avg(x) OVER (ROWS n-1 PRECEDING)` over a partition starting at `lo`.
fn trailing_mean(v: &[f64], lo: usize, hi: usize, n: usize) -> Vec<f64> {
    if n > EXACT_FRAME {
        return running_mean(v, lo, hi, n);
    }
    (lo..hi)
        .map(|k| {
            let from = (k + 1).saturating_sub(n).max(lo);
            let (sum, count) = v[from..=k]
                .iter()
                .filter(|x| !x.is_nan())
                .fold((0.0, 0usize), |(s, c), x| (s + x, c + 1));
            if count == 0 {
                f64::NAN
            } else {
                sum / count as f64
            }
        })
        .collect()
}

/// [`trailing_mean`] by running totals of the values and their count.
fn running_mean(v: &[f64], lo: usize, hi: usize, n: usize) -> Vec<f64> {
    let mut sums = vec![(0.0, 0usize); hi.saturating_sub(lo) + 1];
    for k in lo..hi {
        let (s, c) = sums[k - lo];
        sums[k - lo + 1] = if v[k].is_nan() {
            (s, c)
        } else {
            (s + v[k], c + 1)
        };
    }
    (lo..hi)
        .map(|k| {
            let from = (k + 1).saturating_sub(n).max(lo);
            let (s1, c1) = sums[k + 1 - lo];
            let (s0, c0) = sums[from - lo];
            if c1 == c0 {
                f64::NAN
            } else {
                (s1 - s0) / (c1 - c0) as f64
            }
        })
        .collect()
}

impl State<'_> {
    /// The first arrived row no older than `days` before `t`.
    fn since(&self, t: i64, days: u64) -> usize {
        let cutoff = t.saturating_sub(days_us(days));
        self.h.timestamps_us[..self.arrived].partition_point(|ts| *ts < cutoff)
    }

    /// When the row at `lo` (the oldest a job read at its last run) leaves
    /// a window of `days`: the job reads something else from then on.
    fn leaves(&self, lo: usize, days: u64) -> Option<i64> {
        (lo < self.arrived).then(|| {
            self.h.timestamps_us[lo]
                .saturating_add(days_us(days))
                .saturating_add(1)
        })
    }

    fn series(&self, lo: usize, hi: usize) -> Series {
        Series {
            timestamps_us: self.h.timestamps_us[lo..hi].to_vec(),
            values: self.h.values[lo..hi].to_vec(),
            extra: Default::default(),
        }
    }

    /// train.sql: the newest `train_max_n` rows within its day window.
    fn train(&mut self, t: i64) -> Result<bool, JobFailure> {
        let spec = self.spec;
        let hi = self.arrived;
        let lo = self
            .since(t, spec.train.metric_timestamp_max_days_ago)
            .max(hi.saturating_sub(spec.train.max_n as usize));
        self.drift.train = self.leaves(lo, spec.train.metric_timestamp_max_days_ago);
        let s = self.series(lo, hi);
        let fitted = fit_metric(spec, self.metric, &s, &|| Ok(()))?;
        if let Some(why) = fitted.skipped.last() {
            self.out.last_skip = Some(why.clone());
        }
        if fitted.models.is_empty() {
            return Ok(false);
        }
        for m in fitted.models {
            if let Some(i) = spec
                .train
                .model_configs
                .iter()
                .position(|c| c.tag() == m.model_tag)
            {
                self.models[i] = Some(m);
            }
        }
        self.out.trainings += 1;
        self.out.first_model_us.get_or_insert(t);
        Ok(true)
    }

    /// score.sql: the newest `score_max_n` rows; the job skips those
    /// scored before.
    fn score(&mut self) -> Result<bool, JobFailure> {
        let spec = self.spec;
        if spec.score.exclude_metrics.iter().any(|m| m == self.metric) {
            return Ok(false);
        }
        let models: Vec<&TrainedModel> = self.models.iter().flatten().collect();
        if models.is_empty() {
            return Ok(false);
        }
        let hi = self.arrived;
        let lo = hi.saturating_sub(spec.score.max_n as usize);
        let s = self.series(lo, hi);
        let rows = score_metric(spec, self.metric, &s, &models, Some(&self.scored))?;
        for j in &rows {
            self.scored.insert(j.timestamp_us);
            if let Ok(k) = self.h.timestamps_us[lo..hi].binary_search(&j.timestamp_us) {
                self.out.score[lo + k] = j.value;
            }
        }
        Ok(!rows.is_empty())
    }

    /// alerts.sql: the rows of the day window with their scores smoothed
    /// over the `alert_smooth_n` up to each, flagged at `alert_threshold`
    /// unless one of the `alert_snooze_n` before was flagged or alerted;
    /// the newest `alert_max_n` of them.
    fn alert(&mut self, t: i64) {
        let spec = self.spec;
        let a = &spec.alert;
        let hi = self.arrived;
        let part = self.since(t, a.metric_timestamp_max_days_ago);
        self.drift.alert = self.leaves(part, a.metric_timestamp_max_days_ago);
        let lo = part.max(hi.saturating_sub(a.max_n as usize));
        if lo >= hi {
            return;
        }
        // Flags are needed for the snooze_n rows before the first shown,
        // and their smoothing for the smooth_n before those.
        let smooth_n = a.smooth_n.max(1) as usize;
        let from = part.max(lo.saturating_sub(a.snooze_n as usize));
        let reach = part.max(from.saturating_sub(smooth_n - 1));
        let smooth = trailing_mean(&self.out.score, reach, hi, smooth_n);
        let smooth_at = |k: usize| smooth[k - reach];
        let ts = &self.h.timestamps_us;
        // How many of the rows from `from` up to each were flagged or
        // alerted: the snooze asks of a frame of rows before each.
        let mut marked = vec![0usize; hi - from + 1];
        for k in from..hi {
            let m = smooth_at(k) >= a.threshold || self.alerted.contains(&ts[k]);
            marked[k - from + 1] = marked[k - from] + usize::from(m);
        }
        let mut flag = Vec::with_capacity(hi - lo);
        for k in lo..hi {
            let first = k.saturating_sub(a.snooze_n as usize).max(from);
            let snoozed = a.snooze_n > 0 && marked[k - from] > marked[first - from];
            flag.push(if smooth_at(k) >= a.threshold && !snoozed {
                1.0
            } else {
                0.0
            });
        }
        let mut s = self.series(lo, hi);
        s.extra.insert("metric_alert".into(), flag);
        s.extra.insert(
            "recency_rank".into(),
            (lo..hi).map(|k| (hi - k) as f64).collect(),
        );
        s.extra
            .insert("metric_score".into(), self.out.score[lo..hi].to_vec());
        s.extra.insert(
            "metric_score_smooth".into(),
            (lo..hi).map(smooth_at).collect(),
        );
        for j in alert_metric(spec, self.metric, &s, Some(&self.alerted)) {
            self.alerted.insert(j.timestamp_us);
            self.out.alerts.push(j);
            self.out.raised_us.alerts.push(t);
        }
    }

    /// The threshold alerts' read: the metric's newest
    /// `tholdalert_recent_n + tholdalert_snooze_n` values.
    fn threshold(&mut self, t: i64) {
        let spec = self.spec;
        let settings = &spec.tholdalert;
        let Some(bounds) = settings.thresholds.get(self.metric) else {
            return;
        };
        if settings.disabled || settings.exclude_metrics.iter().any(|m| m == self.metric) {
            return;
        }
        let want = (settings.recent_n as usize)
            .max(1)
            .saturating_add(settings.snooze_n as usize);
        let hi = self.arrived;
        let rows: Vec<NewestValue> = (hi.saturating_sub(want)..hi)
            .rev()
            .map(|k| NewestValue {
                timestamp_us: self.h.timestamps_us[k],
                value: self.h.values[k],
                alerted: self.held.contains(&self.h.timestamps_us[k]),
            })
            .collect();
        if let Some(j) = threshold_breach(spec, self.metric, bounds, &rows) {
            self.held.insert(j.timestamp_us);
            self.out.threshold_alerts.push(j);
            self.out.raised_us.threshold_alerts.push(t);
        }
    }

    /// change.sql: the rows of the day window, each value smoothed over the
    /// `change_smooth_n` up to it, and whether a change was stored in the
    /// `change_snooze_n` before it.
    fn change(&mut self, t: i64) {
        let spec = self.spec;
        let c = &spec.change;
        let listed = |l: &[String]| l.iter().any(|m| m == self.metric);
        if (!c.include_metrics.is_empty() && !listed(&c.include_metrics))
            || listed(&c.exclude_metrics)
        {
            return;
        }
        let hi = self.arrived;
        let lo = self.since(t, c.metric_timestamp_max_days_ago);
        self.drift.change = self.leaves(lo, c.metric_timestamp_max_days_ago);
        if lo >= hi {
            return;
        }
        let ts = &self.h.timestamps_us;
        let mut s = self.series(lo, hi);
        s.extra.insert(
            "metric_value_smooth".into(),
            trailing_mean(&self.h.values, lo, hi, c.smooth_n.max(1) as usize),
        );
        // Changes stored among the rows from `lo` up to each.
        let mut stored = vec![0usize; hi - lo + 1];
        for k in lo..hi {
            stored[k - lo + 1] = stored[k - lo] + usize::from(self.changed.contains(&ts[k]));
        }
        let before = |k: usize| {
            let first = k.saturating_sub(c.snooze_n as usize).max(lo);
            if c.snooze_n > 0 && stored[k - lo] > stored[first - lo] {
                1.0
            } else {
                0.0
            }
        };
        s.extra
            .insert("changed_before".into(), (lo..hi).map(before).collect());
        for j in change_metric(spec, self.metric, &s, Some(&self.changed)) {
            self.changed.insert(j.timestamp_us);
            self.out.changes.push(j);
            self.out.raised_us.changes.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailing_mean_skips_missing_scores_and_stays_in_its_partition() {
        let v = [1.0, f64::NAN, 3.0, 5.0];
        let m = trailing_mean(&v, 0, 4, 2);
        assert_eq!(m[0], 1.0);
        assert_eq!(m[1], 1.0);
        assert_eq!(m[2], 3.0);
        assert_eq!(m[3], 4.0);
        let m = trailing_mean(&v, 2, 4, 3);
        assert_eq!(m, vec![3.0, 4.0], "nothing before position 2");
        assert!(trailing_mean(&[f64::NAN], 0, 1, 3)[0].is_nan());
        let long: Vec<f64> = (0..2000)
            .map(|i| {
                if i % 7 == 0 {
                    f64::NAN
                } else {
                    (i % 13) as f64
                }
            })
            .collect();
        let direct = |n: usize| -> Vec<f64> {
            (0..long.len())
                .map(|k| {
                    let w: Vec<f64> = long[(k + 1).saturating_sub(n)..=k]
                        .iter()
                        .copied()
                        .filter(|x| !x.is_nan())
                        .collect();
                    w.iter().sum::<f64>() / w.len() as f64
                })
                .collect()
        };
        let (fast, slow) = (trailing_mean(&long, 0, 2000, 700), direct(700));
        assert!(fast
            .iter()
            .zip(&slow)
            .all(|(a, b)| (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-9));
    }
}

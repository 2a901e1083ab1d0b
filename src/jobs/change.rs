//! The change job: MAD-based change detection. For each metric, the newest
//! `change_detect_last_n` (smoothed) values are compared with the earlier
//! ones (all in the window, or the `change_baseline_n` before them) by the
//! modified z-score `0.6745 (x - median) / MAD` (Iglewicz and
//! Hoaglin); beyond `change_threshold` is a change, unless one was flagged in
//! the previous `change_snooze_n` observations.

use super::rows::{load_input, write, JobError, JobFailure};
use crate::config::{BatchSpec, Job};
use std::collections::BTreeSet;

use crate::domain::{Judgement, JudgementFacts, JudgementMeta, MetricType, Series};
use crate::models::preprocess::median;
use crate::store::Store;

/// Earlier observations needed before a change can be judged.
pub const MIN_BASELINE: usize = 10;

pub type ChangeError = JobError;

/// Modified z-scores of `recent` against `baseline`; None if the baseline
/// has no spread at all.
pub fn modified_z(baseline: &[f64], recent: &[f64]) -> Option<Vec<f64>> {
    let mut b = baseline.to_vec();
    let med = median(&mut b);
    let mut dev: Vec<f64> = baseline.iter().map(|x| (x - med).abs()).collect();
    let mean_dev = dev.iter().sum::<f64>() / dev.len().max(1) as f64;
    let mad = median(&mut dev);
    // With MAD 0 (over half the baseline identical), the usual fallback:
    // (x - median) / (1.253314 * mean absolute deviation).
    let (k, scale) = if mad > 0.0 {
        (0.6745, mad)
    } else {
        (1.0, 1.253314 * mean_dev)
    };
    (scale > 0.0).then(|| recent.iter().map(|x| k * (x - med) / scale).collect())
}

pub fn run(spec: &BatchSpec, store: &mut Store) -> Result<Vec<Judgement>, ChangeError> {
    change(spec, store).map_err(JobError::of(spec))
}

fn change(spec: &BatchSpec, store: &mut Store) -> Result<Vec<Judgement>, JobFailure> {
    let batch = spec.metric_batch.clone();
    let input = load_input(spec, store, Job::Change, Some(MetricType::Change))?;
    let (series, already) = (&input.series, &input.done);
    let mut out = Vec::new();
    for (metric, s) in series {
        out.extend(change_metric(spec, metric, s, already.get(metric)));
    }
    for j in &out {
        let f = JudgementFacts::read(MetricType::Change, j.metadata.as_ref());
        tracing::warn!(
            batch = %batch,
            metric = %j.metric_name,
            value = f.value.unwrap_or(f64::NAN),
            z = %format_args!("{:.2}", f.score.unwrap_or(f64::NAN)),
            "CHANGE: modified z-score past change_threshold"
        );
    }
    write(store, &spec.table_key, &batch, MetricType::Change, &out)?;
    Ok(out)
}

/// One metric's changes from its change SQL's rows (oldest first, with
/// `metric_value_smooth` and `changed_before`): the newest
/// `change_detect_last_n` smoothed values judged against the earlier ones;
/// a timestamp in `already` was flagged before.
pub fn change_metric(
    spec: &BatchSpec,
    metric: &str,
    s: &Series,
    already: Option<&BTreeSet<i64>>,
) -> Vec<Judgement> {
    let mut out = Vec::new();
    let last_n = spec.change.detect_last_n.max(1) as usize;
    let smooth = s
        .extra
        .get("metric_value_smooth")
        .cloned()
        .unwrap_or_else(|| s.values.clone());
    let changed_before = s
        .extra
        .get("changed_before")
        .cloned()
        .unwrap_or_else(|| vec![0.0; s.values.len()]);
    let n = smooth.len();
    if n < last_n.saturating_add(MIN_BASELINE) {
        return out;
    }
    let split = n - last_n;
    let from = match spec.change.baseline_n {
        0 => 0,
        b => split.saturating_sub(usize::try_from(b).unwrap_or(usize::MAX).max(MIN_BASELINE)),
    };
    let baseline: Vec<f64> = smooth[from..split]
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    let Some(z) = modified_z(&baseline, &smooth[split..]) else {
        return out;
    };
    let mut last_flag: Option<usize> = None;
    for (k, zk) in z.iter().enumerate() {
        let i = split + k;
        let snoozed = changed_before[i] > 0.0
            || last_flag.is_some_and(|j| i - j <= spec.change.snooze_n as usize)
            || already.is_some_and(|d| d.contains(&s.timestamps_us[i]));
        if zk.abs() > spec.change.threshold && !snoozed {
            last_flag = Some(i);
            out.push(Judgement {
                timestamp_us: s.timestamps_us[i],
                metric_name: metric.to_string(),
                value: 1.0,
                metadata: Some(
                    JudgementMeta::Change {
                        value: s.values[i],
                        z: *zk,
                        threshold: spec.change.threshold,
                        tags: spec.metric_tags.get(metric).cloned(),
                    }
                    .to_value(),
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_shift_scores_far_beyond_the_threshold() {
        let baseline: Vec<f64> = (0..50)
            .map(|i| 10.0 + ((i * 37 % 11) as f64 - 5.0) * 0.1)
            .collect();
        let z = modified_z(&baseline, &[10.1, 14.0]).expect("spread");
        assert!(z[0].abs() < 3.5 && z[1] > 3.5, "{z:?}");
        assert!(modified_z(&[1.0; 20], &[1.0]).is_none());
    }

    #[test]
    fn settings_at_the_integer_limit_judge_nothing_rather_than_overflow() {
        let spec = crate::config::test_spec(
            "metric_batch: b\ningest_sql: SELECT 1\nchange_detect_last_n: 18446744073709551615\nchange_snooze_n: 18446744073709551615\n",
        );
        let s = Series {
            timestamps_us: (0..30).collect(),
            values: (0..30)
                .map(|i| if i == 29 { 99.0 } else { (i % 3) as f64 })
                .collect(),
            extra: Default::default(),
        };
        assert!(change_metric(&spec, "m", &s, None).is_empty());
    }

    /// A series that wanders (flat, then a slow drift) and then jumps: against
    /// the whole window (Anomstack's way) the wandering is a change, against
    /// the 60 observations before it only the jump is.
    #[test]
    fn a_recent_baseline_tells_a_jump_from_a_wander() {
        let s = |jump: bool| Series {
            timestamps_us: (0..400).collect(),
            values: (0..400)
                .map(|i| {
                    let drift = (i as usize).saturating_sub(300) as f64 * 0.05;
                    let v = drift + ((i * 37 % 11) as f64 - 5.0) * 0.1;
                    if jump && i == 399 {
                        v + 15.0
                    } else {
                        v
                    }
                })
                .collect(),
            extra: Default::default(),
        };
        let spec = |baseline: &str| {
            crate::config::test_spec(&format!(
                "metric_batch: b\ningest_sql: SELECT 1\nchange_detect_last_n: 1\nchange_smooth_n: 1\nchange_threshold: 8\nchange_baseline_n: {baseline}\n"
            ))
        };
        let (all, recent) = (spec("0"), spec("60"));
        assert_eq!(
            change_metric(&all, "m", &s(false), None).len(),
            1,
            "the wander"
        );
        assert!(change_metric(&recent, "m", &s(false), None).is_empty());
        assert_eq!(
            change_metric(&recent, "m", &s(true), None).len(),
            1,
            "the jump"
        );
        // Past the series or below the floor of 10: every value, or 10.
        let huge = spec("18446744073709551615");
        assert_eq!(change_metric(&huge, "m", &s(false), None).len(), 1);
        let tiny = spec("1");
        assert_eq!(change_metric(&tiny, "m", &s(true), None).len(), 1);
    }
}

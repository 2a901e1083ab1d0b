//! The alert job: `alert_sql` smooths each metric's score over the previous
//! `alert_smooth_n` observations and snoozes after an alert; a row flagged
//! there within the newest `alert_recent_n` becomes an `alert` row (once).
//! Threshold alerts (`tholdalert_thresholds`) run in the same job, and
//! right after a live ingest ([`threshold_run`]). Alerts are stored and
//! logged; delivery is a separate step.

use super::rows::{load_input, write, JobError, JobFailure};
use crate::config::{BatchSpec, Job, Thresholds};
use std::collections::BTreeSet;

use crate::domain::{Driver, Judgement, JudgementFacts, JudgementMeta, MetricType, Series};
use crate::store::NewestValue;
use crate::store::{Store, StoreError};

pub type AlertError = JobError;

#[derive(Debug, Default)]
pub struct AlertReport {
    pub alerts: Vec<Judgement>,
    pub threshold_alerts: Vec<Judgement>,
}

pub fn run(spec: &BatchSpec, store: &mut Store) -> Result<AlertReport, AlertError> {
    alert(spec, store).map_err(JobError::of(spec))
}

fn alert(spec: &BatchSpec, store: &mut Store) -> Result<AlertReport, JobFailure> {
    let batch = spec.metric_batch.clone();
    let input = load_input(spec, store, Job::Alert, Some(MetricType::Alert))?;
    let (series, already) = (&input.series, &input.done);
    let mut report = AlertReport::default();
    for (metric, s) in series {
        report
            .alerts
            .extend(alert_metric(spec, metric, s, already.get(metric)));
    }
    for j in &report.alerts {
        said(spec, MetricType::Alert, j);
    }
    write(
        store,
        &spec.table_key,
        &batch,
        MetricType::Alert,
        &report.alerts,
    )?;
    report.threshold_alerts = raise_threshold_alerts(spec, store)?;
    Ok(report)
}

/// Threshold alerts on the newest values, as Anomstack raises them right
/// after an ingest stores its rows; the alert job runs this too, for folders
/// whose batches only alert from it. A breach alerts once: a stored one is
/// within the snooze of the next check.
pub fn threshold_run(spec: &BatchSpec, store: &mut Store) -> Result<Vec<Judgement>, AlertError> {
    raise_threshold_alerts(spec, store).map_err(JobError::of(spec))
}

fn raise_threshold_alerts(
    spec: &BatchSpec,
    store: &mut Store,
) -> Result<Vec<Judgement>, JobFailure> {
    // An ingest and the alert job of one batch may run at once (the
    // scheduler runs different jobs of a batch side by side): each checks
    // for a stored alert, then stores its own, so the two are taken one
    // at a time in this process, or both would raise and send the same
    // breach. One lock for all batches: a check is a few small reads.
    if !spec.tholdalert.checks_anything() {
        return Ok(Vec::new());
    }
    static RAISING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = RAISING.lock().unwrap_or_else(|p| p.into_inner());
    let raised = threshold_alerts(spec, store)?;
    for j in &raised {
        said(spec, MetricType::ThresholdAlert, j);
    }
    write(
        store,
        &spec.table_key,
        &spec.metric_batch,
        MetricType::ThresholdAlert,
        &raised,
    )?;
    Ok(raised)
}

/// Log an alert or threshold alert the job stores (a backtest's steps
/// find them too, and stay quiet).
fn said(spec: &BatchSpec, kind: MetricType, j: &Judgement) {
    let f = JudgementFacts::read(kind, j.metadata.as_ref());
    let (batch, metric) = (&spec.metric_batch, &j.metric_name);
    let value = f.value.unwrap_or(f64::NAN);
    if kind == MetricType::ThresholdAlert {
        let (side, bound) = (f.bound.unwrap_or_default(), f.threshold.unwrap_or(f64::NAN));
        tracing::warn!(batch = %batch, metric = %metric, value, bound, "THRESHOLD ALERT: past its {side} bound");
        return;
    }
    let forced = j
        .metadata
        .as_ref()
        .and_then(|m| m.get("alert_always"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let why = if forced {
        "alert_always is set"
    } else {
        "at or over alert_threshold"
    };
    tracing::warn!(
        batch = %batch,
        metric = %metric,
        value,
        score_smooth = %format_args!("{:.3}", f.score.unwrap_or(f64::NAN)),
        threshold = spec.alert.threshold,
        "ALERT: {why}"
    );
}

/// One metric's alerts from its alert SQL's rows (oldest first, with the
/// columns `metric_alert`, `recency_rank`, `metric_score` and
/// `metric_score_smooth`): a flagged row among the newest `alert_recent_n`
/// whose timestamp is not in `already`.
pub fn alert_metric(
    spec: &BatchSpec,
    metric: &str,
    s: &Series,
    already: Option<&BTreeSet<i64>>,
) -> Vec<Judgement> {
    let mut out = Vec::new();
    if spec.alert.exclude_metrics.iter().any(|m| m == metric) {
        return out;
    }
    let col = |name: &str| {
        s.extra
            .get(name)
            .cloned()
            .unwrap_or_else(|| vec![f64::NAN; s.values.len()])
    };
    let (flag, rank, score, smooth) = (
        col("metric_alert"),
        col("recency_rank"),
        col("metric_score"),
        col("metric_score_smooth"),
    );
    for i in 0..s.values.len() {
        let recent = rank[i] <= spec.alert.recent_n as f64;
        let is_new = !already.is_some_and(|d| d.contains(&s.timestamps_us[i]));
        // alert_always (Anomstack's test of a batch's alert setup): the
        // newest observation alerts whatever its score.
        let forced = spec.alert.always && rank[i] == 1.0 && flag[i] != 1.0;
        if recent && (flag[i] == 1.0 || forced) && is_new {
            let j = Judgement {
                timestamp_us: s.timestamps_us[i],
                metric_name: metric.to_string(),
                value: 1.0,
                metadata: Some(
                    JudgementMeta::Alert {
                        value: s.values[i],
                        score: score[i],
                        score_smooth: smooth[i],
                        threshold: spec.alert.threshold,
                        alert_always: forced,
                        tags: spec.metric_tags.get(metric).cloned(),
                        driver: driver(s, &score, i, spec.alert.smooth_n as usize),
                    }
                    .to_value(),
                ),
            };
            out.push(j);
        }
    }
    out
}

/// The observation with the highest score among the `smooth_n` up to `i`
/// (the ones the smoothed score averaged), with the metric's typical range
/// before them.
fn driver(s: &crate::domain::Series, score: &[f64], i: usize, smooth_n: usize) -> Option<Driver> {
    let start = (i + 1).saturating_sub(smooth_n.max(1));
    let j = (start..=i)
        .filter(|k| score[*k].is_finite())
        .max_by(|a, b| score[*a].total_cmp(&score[*b]))?;
    let mut before: Vec<f64> = s.values[..start]
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if before.is_empty() {
        before = s.values.iter().copied().filter(|v| v.is_finite()).collect();
    }
    before.sort_by(f64::total_cmp);
    let at = |q: f64| before[((before.len() - 1) as f64 * q).round() as usize];
    Some(Driver {
        timestamp_us: s.timestamps_us[j],
        value: s.values[j],
        score: score[j],
        typical_low: at(0.05),
        typical_high: at(0.95),
    })
}

/// The newest of each metric's `tholdalert_recent_n` newest values that is
/// outside its bounds in `tholdalert_thresholds`, unless a threshold alert
/// fired in the `tholdalert_snooze_n` observations before it. Nothing when
/// `disable_tholdalert` is set; never for `tholdalert_exclude_metrics`.
fn threshold_alerts(spec: &BatchSpec, store: &Store) -> Result<Vec<Judgement>, StoreError> {
    let mut out = Vec::new();
    let settings = &spec.tholdalert;
    let batch = &spec.metric_batch;
    let recent_n = (settings.recent_n as usize).max(1);
    for (metric, bounds) in &settings.thresholds {
        if settings.exclude_metrics.contains(metric) {
            continue;
        }
        let rows = store.newest_values(
            &spec.table_key,
            batch,
            metric,
            recent_n.saturating_add(settings.snooze_n as usize),
        )?;
        out.extend(threshold_breach(spec, metric, bounds, &rows));
    }
    Ok(out)
}

/// A threshold alert for `metric` from its newest values (newest first,
/// `tholdalert_recent_n + tholdalert_snooze_n` of them): the newest of the
/// recent ones outside `bounds`, unless one alerted within the snooze.
pub fn threshold_breach(
    spec: &BatchSpec,
    metric: &str,
    bounds: &Thresholds,
    rows: &[NewestValue],
) -> Option<Judgement> {
    let settings = &spec.tholdalert;
    let recent_n = (settings.recent_n as usize).max(1);
    let (i, row, (side, bound)) = rows
        .iter()
        .take(recent_n)
        .enumerate()
        .find_map(|(i, row)| {
            let side = match (bounds.upper, bounds.lower) {
                (Some(u), _) if row.value > u => Some(("upper", u)),
                (_, Some(l)) if row.value < l => Some(("lower", l)),
                _ => None,
            };
            side.map(|s| (i, row, s))
        })?;
    let window = (i + 1).saturating_add(settings.snooze_n as usize);
    if rows.iter().take(window).any(|r| r.alerted) {
        return None;
    }
    let value = row.value;
    Some(Judgement {
        timestamp_us: row.timestamp_us,
        metric_name: metric.to_string(),
        value: 1.0,
        metadata: Some(
            JudgementMeta::Threshold {
                value,
                bound: side.to_string(),
                threshold: bound,
                tags: spec.metric_tags.get(metric).cloned(),
            }
            .to_value(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Series;

    #[test]
    fn the_driver_is_the_highest_score_in_the_smoothing_window() {
        let values: Vec<f64> = (0..40).map(|i| 10.0 + (i % 4) as f64 * 0.1).collect();
        let mut s = Series {
            timestamps_us: (0..40).map(|i| i * 1_000_000).collect(),
            values,
            extra: Default::default(),
        };
        // A spike at 37; the alert is stamped at 39, two observations on.
        s.values[37] = 30.0;
        let mut score = vec![0.1; 40];
        score[37] = 1.0;
        score[38] = 0.9;
        let d = driver(&s, &score, 39, 3).expect("a driver");
        assert_eq!((d.timestamp_us, d.value, d.score), (37_000_000, 30.0, 1.0));
        assert_eq!((d.typical_low, d.typical_high), (10.0, 10.3));
        // Outside the window, the spike does not count.
        assert_eq!(
            driver(&s, &score, 39, 1).expect("own").timestamp_us,
            39_000_000
        );
        let meta = JudgementMeta::Alert {
            value: 10.1,
            score: 0.1,
            score_smooth: 0.67,
            threshold: 0.6,
            alert_always: false,
            tags: None,
            driver: Some(d.clone()),
        }
        .to_value();
        let facts = crate::domain::JudgementFacts::read(MetricType::Alert, Some(&meta));
        assert_eq!(facts.driver, Some(d));
        assert_eq!(
            facts.value,
            Some(10.1),
            "Anomstack's keys stay as they were"
        );
    }

    #[test]
    fn a_threshold_snooze_at_the_integer_limit_does_not_overflow() {
        let spec = crate::config::test_spec(
            "metric_batch: b\ningest_sql: SELECT 1\ntholdalert_snooze_n: 18446744073709551615\ntholdalert_recent_n: 18446744073709551615\n",
        );
        let bounds = Thresholds {
            upper: Some(5.0),
            lower: None,
        };
        let rows: Vec<NewestValue> = (0..3)
            .map(|i| NewestValue {
                timestamp_us: 3 - i,
                value: 9.0,
                alerted: false,
            })
            .collect();
        let j = threshold_breach(&spec, "m", &bounds, &rows).expect("a breach");
        assert_eq!(j.timestamp_us, 3);
    }
}

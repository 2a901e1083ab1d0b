//! The alert job: `alert_sql` smooths each metric's score over the previous
//! `alert_smooth_n` observations and snoozes after an alert; a row flagged
//! there within the newest `alert_recent_n` becomes an `alert` row (once).
//! Threshold alerts (`tholdalert_thresholds`) run in the same job. Alerts
//! are stored and logged; delivery is a separate step.

use super::rows::{load_input, write, JobError, JobFailure};
use crate::config::{BatchSpec, Job};
use crate::domain::{Judgement, JudgementMeta, MetricType};
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
        if spec.alert.exclude_metrics.contains(metric) {
            continue;
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
            let is_new = !already
                .get(metric)
                .is_some_and(|d| d.contains(&s.timestamps_us[i]));
            // alert_always (Anomstack's test of a batch's alert setup): the
            // newest observation alerts whatever its score.
            let forced = spec.alert.always && rank[i] == 1.0 && flag[i] != 1.0;
            if recent && (flag[i] == 1.0 || forced) && is_new {
                let j = Judgement {
                    timestamp_us: s.timestamps_us[i],
                    metric_name: metric.clone(),
                    value: 1.0,
                    metadata: Some(
                        JudgementMeta::Alert {
                            value: s.values[i],
                            score: score[i],
                            score_smooth: smooth[i],
                            threshold: spec.alert.threshold,
                            alert_always: forced,
                            tags: spec.metric_tags.get(metric).cloned(),
                        }
                        .to_value(),
                    ),
                };
                let why = if forced {
                    "alert_always is set"
                } else {
                    "at or over alert_threshold"
                };
                tracing::warn!(
                    batch = %batch,
                    metric = %metric,
                    value = s.values[i],
                    score_smooth = %format_args!("{:.3}", smooth[i]),
                    threshold = spec.alert.threshold,
                    "ALERT: {why}"
                );
                report.alerts.push(j);
            }
        }
    }
    write(
        store,
        &spec.table_key,
        &batch,
        MetricType::Alert,
        &report.alerts,
    )?;
    report.threshold_alerts = threshold_alerts(spec, store)?;
    write(
        store,
        &spec.table_key,
        &batch,
        MetricType::ThresholdAlert,
        &report.threshold_alerts,
    )?;
    Ok(report)
}

/// The newest of each metric's `tholdalert_recent_n` newest values that is
/// outside its bounds in `tholdalert_thresholds`, unless a threshold alert
/// fired in the `tholdalert_snooze_n` observations before it. Nothing when
/// `disable_tholdalert` is set; never for `tholdalert_exclude_metrics`.
fn threshold_alerts(spec: &BatchSpec, store: &Store) -> Result<Vec<Judgement>, StoreError> {
    let mut out = Vec::new();
    let settings = &spec.tholdalert;
    if settings.disabled || settings.thresholds.is_empty() {
        return Ok(out);
    }
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
        let breach = rows.iter().take(recent_n).enumerate().find_map(|(i, row)| {
            let side = match (bounds.upper, bounds.lower) {
                (Some(u), _) if row.value > u => Some(("upper", u)),
                (_, Some(l)) if row.value < l => Some(("lower", l)),
                _ => None,
            };
            side.map(|s| (i, row, s))
        });
        let Some((i, row, (side, bound))) = breach else {
            continue;
        };
        let window = i + 1 + settings.snooze_n as usize;
        let snoozed = rows.iter().take(window).any(|r| r.alerted);
        if snoozed {
            continue;
        }
        let value = row.value;
        tracing::warn!(batch = %batch, metric = %metric, value, bound, "THRESHOLD ALERT: past its {side} bound");
        out.push(Judgement {
            timestamp_us: row.timestamp_us,
            metric_name: metric.clone(),
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
        });
    }
    Ok(out)
}

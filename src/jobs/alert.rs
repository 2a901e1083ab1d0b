//! The alert job: `alert_sql` smooths each metric's score over the previous
//! `alert_smooth_n` observations and snoozes after an alert; a row flagged
//! there within the newest `alert_recent_n` becomes an `alert` row (once).
//! Threshold alerts (`tholdalert_thresholds`) run in the same job. Alerts
//! are stored and logged; delivery is a separate step.

use super::rows::{load_input, write, JobError, JobFailure};
use crate::config::BatchSpec;
use crate::domain::Judgement;
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
    let input = load_input(spec, store, "alert_sql", "alert", Some("alert"))?;
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
            if recent && flag[i] == 1.0 && is_new {
                let j = Judgement {
                    timestamp_us: s.timestamps_us[i],
                    metric_name: metric.clone(),
                    value: 1.0,
                    metadata: Some(serde_json::json!({
                        "value": s.values[i],
                        "score": score[i],
                        "score_smooth": smooth[i],
                        "threshold": spec.alert.threshold,
                        "tags": spec.metric_tags.get(metric),
                    })),
                };
                tracing::warn!(
                    "ALERT batch {batch} metric {metric}: value {} smoothed score {:.3} >= alert_threshold {}",
                    s.values[i],
                    smooth[i],
                    spec.alert.threshold
                );
                report.alerts.push(j);
            }
        }
        if spec.alert.always {
            if let Some(i) = rank.iter().position(|r| *r == 1.0) {
                tracing::info!(
                    "alert_always: batch {batch} metric {metric} latest smoothed score {:.3}",
                    smooth[i]
                );
            }
        }
    }
    write(store, &spec.table_key, &batch, "alert", &report.alerts)?;
    report.threshold_alerts = threshold_alerts(spec, store)?;
    write(
        store,
        &spec.table_key,
        &batch,
        "tholdalert",
        &report.threshold_alerts,
    )?;
    Ok(report)
}

/// The newest value of each metric in `tholdalert_thresholds` outside its
/// bounds, unless a threshold alert fired in the previous
/// `tholdalert_snooze_n` observations.
fn threshold_alerts(spec: &BatchSpec, store: &Store) -> Result<Vec<Judgement>, StoreError> {
    let mut out = Vec::new();
    if spec.tholdalert.thresholds.is_empty() {
        return Ok(out);
    }
    let batch = &spec.metric_batch;
    for (metric, bounds) in &spec.tholdalert.thresholds {
        let rows = store.newest_values(
            &spec.table_key,
            batch,
            metric,
            (spec.tholdalert.snooze_n as usize).saturating_add(1),
        )?;
        let Some(newest) = rows.first() else {
            continue;
        };
        let (ts, value) = (newest.timestamp_us, newest.value);
        let snoozed = rows.iter().skip(1).any(|r| r.alerted);
        let broken = match (bounds.upper, bounds.lower) {
            (Some(u), _) if value > u => Some(("upper", u)),
            (_, Some(l)) if value < l => Some(("lower", l)),
            _ => None,
        };
        if let Some((side, bound)) = broken {
            if !newest.alerted && !snoozed {
                tracing::warn!("THRESHOLD ALERT batch {batch} metric {metric}: value {value} is past its {side} bound {bound}");
                out.push(Judgement {
                    timestamp_us: ts,
                    metric_name: metric.clone(),
                    value: 1.0,
                    metadata: Some(serde_json::json!({"value": value, "bound": side, "threshold": bound, "tags": spec.metric_tags.get(metric)})),
                });
            }
        }
    }
    Ok(out)
}

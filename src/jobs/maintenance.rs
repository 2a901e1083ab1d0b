//! Retention (`delete_sql`) and the summary (`summary_sql`), each batch's
//! over its own rows; and the folder's daily summary across batches.

use arrow::record_batch::RecordBatch;

use crate::config::{BatchSpec, Job};
use crate::domain::MetricType;
use crate::store::{ResultCaps, Store, StoreError};

/// Run the batch's `delete_sql` over its own rows (see
/// [`Store::delete_batch_sql`]); returns how many rows it removed.
pub fn delete(spec: &BatchSpec, store: &mut Store) -> Result<u64, StoreError> {
    let Some(sql) = spec.sql(Job::Delete) else {
        return Ok(0);
    };
    store.ensure_metrics_table(&spec.table_key)?;
    let removed = store
        .delete_batch_sql(&spec.table_key, &spec.metric_batch, sql)
        .map_err(|e| in_key(spec, "delete_sql", e))?;
    Ok(removed as u64)
}

/// Each batch's `summary_sql`, over its own rows, one after another.
pub fn summary<'a>(
    batches: impl Iterator<Item = &'a BatchSpec>,
    store: &Store,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut out = Vec::new();
    for spec in batches {
        let Some(sql) = spec.sql(Job::Summary) else {
            continue;
        };
        store.ensure_metrics_table(&spec.table_key)?;
        out.extend(
            store
                .query_batch_sql(
                    &spec.table_key,
                    &spec.metric_batch,
                    sql,
                    ResultCaps::TEMPLATE,
                )
                .map_err(|e| in_key(spec, "summary_sql", e))?,
        );
    }
    Ok(out)
}

/// The folder's daily summary: each batch's `summary_sql` table, and the
/// metrics that alerted in the last day with their series (for small
/// plots), most alerts first.
#[derive(Debug, Default)]
pub struct FolderSummary {
    pub sections: Vec<(String, Vec<RecordBatch>)>,
    pub alerting: Vec<Alerting>,
    /// Batches whose part could not be made, with why (the rest is sent).
    pub failed: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Alerting {
    pub batch: String,
    pub metric: String,
    /// Anomaly, threshold and LLM alerts in the last day.
    pub alerts: usize,
    /// `plot_sql`'s series, for its plot (None when it returned none).
    pub series: Option<crate::domain::Series>,
    pub threshold: f64,
}

impl FolderSummary {
    /// Every batch's rows, for the run's row count.
    pub fn rows(&self) -> Vec<RecordBatch> {
        self.sections
            .iter()
            .flat_map(|(_, b)| b.iter().cloned())
            .collect()
    }
}

/// Judgements read per batch for the summary's counts (newest first).
const MAX_JUDGED: usize = 10_000;

/// The folder summary of `batches` at `now_us`: a batch whose SQL fails is
/// named in `failed` and the others still summarised.
pub fn folder_summary(batches: &[&BatchSpec], store: &Store, now_us: i64) -> FolderSummary {
    let day_ago = now_us - 86_400_000_000;
    let mut out = FolderSummary::default();
    for spec in batches {
        match summary(std::iter::once(*spec), store) {
            Ok(rows) => out.sections.push((spec.metric_batch.clone(), rows)),
            Err(e) => out.failed.push((spec.metric_batch.clone(), e.to_string())),
        }
        // What alerted in the last day, by metric: anomaly, threshold and
        // LLM alerts as stored (newest first).
        let judged = match store.anomalies(
            &[(&spec.table_key, spec.metric_batch.as_str())],
            MAX_JUDGED,
            0,
        ) {
            Ok(j) => j,
            Err(e) => {
                out.failed.push((spec.metric_batch.clone(), e.to_string()));
                continue;
            }
        };
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for a in judged
            .iter()
            .filter(|a| a.timestamp_us >= day_ago)
            .filter(|a| {
                matches!(
                    a.kind,
                    MetricType::Alert | MetricType::ThresholdAlert | MetricType::LlmAlert
                )
            })
        {
            *counts.entry(a.metric.clone()).or_default() += 1;
        }
        if counts.is_empty() {
            continue;
        }
        // plot_sql's series for their plots (alerts marked at the
        // observations that drove them); without it they are listed unplotted.
        let mut series = super::plot::series(spec, store).unwrap_or_else(|e| {
            out.failed
                .push((spec.metric_batch.clone(), format!("no plots: {e}")));
            Default::default()
        });
        for (metric, alerts) in counts {
            out.alerting.push(Alerting {
                batch: spec.metric_batch.clone(),
                series: series.remove(&metric),
                metric,
                alerts,
                threshold: spec.alert.threshold,
            });
        }
    }
    out.alerting.sort_by(|a, b| {
        b.alerts
            .cmp(&a.alerts)
            .then(a.batch.cmp(&b.batch))
            .then(a.metric.cmp(&b.metric))
    });
    out
}

/// A template's failure, naming the batch and the key.
fn in_key(spec: &BatchSpec, key: &str, e: StoreError) -> StoreError {
    StoreError::Sql {
        context: format!("batch {}: {key}", spec.metric_batch),
        message: e.to_string(),
    }
}

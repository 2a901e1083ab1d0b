//! Retention (`delete_sql`) and the summary (`summary_sql`), each batch's
//! over its own rows; and the folder's daily summary across batches.

use arrow::record_batch::RecordBatch;

use crate::config::{BatchSpec, Job};
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
    pub alerts: usize,
    pub series: crate::domain::Series,
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
        // plot_sql's series, alerts marked at the observations that drove them.
        let series = match super::plot::series(spec, store) {
            Ok(s) => s,
            Err(e) => {
                out.failed.push((spec.metric_batch.clone(), e.to_string()));
                continue;
            }
        };
        for (metric, s) in series {
            let alerts = s.extra.get("metric_alert").map_or(0, |flags| {
                flags
                    .iter()
                    .zip(&s.timestamps_us)
                    .filter(|(f, t)| **f > 0.0 && **t >= day_ago)
                    .count()
            });
            if alerts > 0 {
                out.alerting.push(Alerting {
                    batch: spec.metric_batch.clone(),
                    metric,
                    alerts,
                    series: s,
                    threshold: spec.alert.threshold,
                });
            }
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

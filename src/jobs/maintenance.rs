//! Retention (`delete_sql`) and the summary (`summary_sql`), each batch's
//! over its own rows.

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

/// A template's failure, naming the batch and the key.
fn in_key(spec: &BatchSpec, key: &str, e: StoreError) -> StoreError {
    StoreError::Sql {
        context: format!("batch {}: {key}", spec.metric_batch),
        message: e.to_string(),
    }
}

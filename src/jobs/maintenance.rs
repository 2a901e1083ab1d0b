//! Retention (`delete_sql`) and the summary (`summary_sql`) across batches.

use arrow::record_batch::RecordBatch;

use crate::config::BatchSpec;
use crate::store::{Store, StoreError};

/// Run the batch's `delete_sql`, as one statement (a prepared statement
/// cannot smuggle a second one in); returns how many rows it removed.
pub fn delete(spec: &BatchSpec, store: &mut Store) -> Result<u64, StoreError> {
    let Some(sql) = spec.sql.get("delete_sql") else {
        return Ok(0);
    };
    store.ensure_metrics_table(&spec.table_key)?;
    let removed = store.delete_with_template(
        &spec.table_key,
        &spec.metric_batch,
        sql,
        &format!("batch {}: delete_sql", spec.metric_batch),
    )?;
    Ok(removed as u64)
}

/// `summary_sql` once per distinct table among `batches`.
pub fn summary<'a>(
    batches: impl Iterator<Item = &'a BatchSpec>,
    store: &Store,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for spec in batches {
        if !seen.insert(spec.table_key.clone()) {
            continue;
        }
        let Some(sql) = spec.sql.get("summary_sql") else {
            continue;
        };
        store.ensure_metrics_table(&spec.table_key)?;
        out.extend(store.query_template(sql)?);
    }
    Ok(out)
}

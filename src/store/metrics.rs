//! The metrics tables: what ingest appends and what the detection jobs read
//! and write (their judgements are metrics rows too, of another
//! `metric_type`).

use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;

use super::StoreError;

/// One of a metric's newest values, for threshold alerts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewestValue {
    pub timestamp_us: i64,
    /// NaN when the stored value is NULL.
    pub value: f64,
    /// A threshold alert is already stored at this timestamp.
    pub alerted: bool,
}

/// Per metric name, the timestamps (µs) that have a row of some type.
pub type TimestampsByMetric = BTreeMap<String, BTreeSet<i64>>;

/// Why a `delete_sql` that would remove `rows` of other batches than
/// `batch` was rolled back (either engine says the same).
pub(crate) fn removes_other_batches(rows: i64, batch: &str) -> String {
    format!(
        "it would remove {rows} rows of other batches; a batch's delete_sql may remove only its own \
         (metric_batch = '{batch}'), so nothing was removed"
    )
}

pub trait MetricsStore {
    /// Create the metrics table `table_key` (and its schema) if missing.
    fn ensure_metrics_table(&self, table_key: &str) -> Result<(), StoreError>;

    /// Append rows (in [`super::metrics_schema`]) in one transaction;
    /// returns how many.
    fn append_metrics(
        &mut self,
        table_key: &str,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError>;

    /// Rows in `table_key`; 0 when it does not exist.
    fn count_rows(&self, table_key: &str) -> Result<u64, StoreError>;

    /// Whether `batch` has any row in `table_key`.
    fn batch_has_rows(&self, table_key: &str, batch: &str) -> Result<bool, StoreError>;

    /// Per metric of `batch`, the timestamps that already have a row of
    /// `metric_type` (what a job has already judged).
    fn timestamps_of_type(
        &self,
        table_key: &str,
        batch: &str,
        metric_type: &str,
    ) -> Result<TimestampsByMetric, StoreError>;

    /// The newest `n` values of one metric (type `metric`), newest first.
    fn newest_values(
        &self,
        table_key: &str,
        batch: &str,
        metric: &str,
        n: usize,
    ) -> Result<Vec<NewestValue>, StoreError>;

    /// Run one query from the metrics folder (a job's SQL template) and
    /// return its rows. More than one statement is refused unrun.
    fn query_template(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError>;

    /// Run `delete_sql` of `batch`: one DELETE that may remove only that
    /// batch's rows of `table_key` (if it would touch another batch's, it
    /// is rolled back and refused). Returns the rows removed. `context`
    /// names it in errors.
    fn delete_with_template(
        &mut self,
        table_key: &str,
        batch: &str,
        sql: &str,
        context: &str,
    ) -> Result<usize, StoreError>;

    /// Start a transaction: a template query and appends that stand or
    /// fall together (SQL ingest).
    fn begin(&mut self) -> Result<Box<dyn MetricsTx + '_>, StoreError>;
}

/// Work inside one transaction; dropped without [`MetricsTx::commit`], it
/// is rolled back.
pub trait MetricsTx {
    /// Like [`MetricsStore::query_template`]; errors are
    /// [`StoreError::Template`] or [`StoreError::Sql`] with the engine's
    /// own words, for the caller to name the key.
    fn query_template(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError>;

    fn append_metrics(&self, table_key: &str, batches: &[RecordBatch])
        -> Result<usize, StoreError>;

    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}

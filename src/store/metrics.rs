//! The metrics tables: what ingest appends and what the detection jobs read
//! and write (their judgements are metrics rows too, of another
//! `metric_type`).

use crate::store::TableKey;
use std::collections::{BTreeMap, BTreeSet};

use arrow::record_batch::RecordBatch;

use super::StoreError;
use crate::domain::MetricType;

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

/// Takes rows as they are read (see [`MetricsStore::stream_rows`]).
pub type RowSink<'a> = dyn FnMut(RecordBatch) -> Result<(), StoreError> + 'a;

/// Shown a batch's rows, answers the positions of those to delete (see
/// [`MetricsStore::delete_picked`]).
pub type PickRows<'a> = dyn FnMut(&[RecordBatch]) -> Result<Vec<usize>, StoreError> + 'a;

pub trait MetricsStore {
    /// Create the metrics table `table_key` (and its schema) if missing.
    fn ensure_metrics_table(&self, table_key: &TableKey) -> Result<(), StoreError>;

    /// Append rows (in [`super::metrics_schema`]) in one transaction;
    /// returns how many.
    fn append_metrics(
        &mut self,
        table_key: &TableKey,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError>;

    /// Rows in `table_key`; 0 when it does not exist.
    fn count_rows(&self, table_key: &TableKey) -> Result<u64, StoreError>;

    /// Whether `batch` has any row in `table_key`.
    fn batch_has_rows(&self, table_key: &TableKey, batch: &str) -> Result<bool, StoreError>;

    /// Per metric of `batch`, the timestamps that already have a row of
    /// `metric_type` (what a job has already judged).
    fn timestamps_of_type(
        &self,
        table_key: &TableKey,
        batch: &str,
        metric_type: MetricType,
    ) -> Result<TimestampsByMetric, StoreError>;

    /// The newest `n` values of one metric (type `metric`), newest first.
    fn newest_values(
        &self,
        table_key: &TableKey,
        batch: &str,
        metric: &str,
        n: usize,
    ) -> Result<Vec<NewestValue>, StoreError>;

    /// The rows of `batch` in `table_key` (every batch's when None), in
    /// [`super::metrics_schema`], handed to `each` a record batch at a
    /// time as they are read (what a batch's SQL runs over: see
    /// [`super::confined`]); none when the table does not exist.
    fn stream_rows(
        &self,
        table_key: &TableKey,
        batch: Option<&str>,
        each: &mut RowSink<'_>,
    ) -> Result<(), StoreError>;

    /// [`MetricsStore::stream_rows`], collected.
    fn read_rows(
        &self,
        table_key: &TableKey,
        batch: Option<&str>,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let mut out = Vec::new();
        self.stream_rows(table_key, batch, &mut |b| {
            out.push(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Delete some of `batch`'s rows of `table_key`, in one transaction:
    /// `pick` is shown the batch's rows (as [`MetricsStore::read_rows`]
    /// gives them) and answers the positions of those to delete. Returns
    /// how many were deleted. Only rows of `batch` can be named.
    fn delete_picked(
        &mut self,
        table_key: &TableKey,
        batch: &str,
        pick: &mut PickRows<'_>,
    ) -> Result<usize, StoreError>;
}

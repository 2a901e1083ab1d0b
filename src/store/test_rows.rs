//! Metrics rows for the backends' tests.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;

use super::metrics_schema;

/// Rows of (µs, batch, metric, type, value).
pub(crate) fn rows(rows: &[(i64, &str, &str, &str, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![None::<&str>; rows.len()])),
        ],
    )
    .expect("rows")
}

//! Metrics rows and run records for the backends' tests.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;

use super::{metrics_schema, RunRecord, RunStatus};

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

/// A run of batch's ingest that started at `started_us` and ended as `status`.
pub(crate) fn run_record(batch: &str, started_us: i64, status: RunStatus) -> RunRecord {
    RunRecord {
        run_id: 0,
        batch: batch.into(),
        job: "ingest".into(),
        scheduled_us: started_us,
        started_us,
        ended_us: started_us + 5_000,
        status,
        error: (status == RunStatus::Failed).then(|| "boom".to_string()),
        rows: 3,
        fuel: 10,
        wall_ms: 5.0,
        cassette: None,
        log: Some("printed".into()),
        attempt: 1,
        worker: None,
    }
}

/// A table key the tests name.
pub(crate) fn key(k: &str) -> super::TableKey {
    super::TableKey::parse(k).expect("a test's table key")
}

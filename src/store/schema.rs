//! The long metrics table's columns: the Arrow schema rows are normalised
//! to before they are appended, whichever the engine.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const METRIC_TIMESTAMP: &str = "metric_timestamp";
pub const METRIC_BATCH: &str = "metric_batch";
pub const METRIC_NAME: &str = "metric_name";
pub const METRIC_TYPE: &str = "metric_type";
pub const METRIC_VALUE: &str = "metric_value";
pub const METADATA: &str = "metadata";

/// The Arrow schema of a metrics row batch (timestamps are UTC, stored
/// without a zone as DuckDB `TIMESTAMP`).
pub fn metrics_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    METRIC_TIMESTAMP,
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                ),
                Field::new(METRIC_BATCH, DataType::Utf8, false),
                Field::new(METRIC_NAME, DataType::Utf8, false),
                Field::new(METRIC_TYPE, DataType::Utf8, false),
                Field::new(METRIC_VALUE, DataType::Float64, true),
                Field::new(METADATA, DataType::Utf8, true),
            ]))
        })
        .clone()
}

//! The long metrics table: its DuckDB DDL and the Arrow schema rows are
//! normalised to before they are appended.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const METRIC_TIMESTAMP: &str = "metric_timestamp";
pub const METRIC_BATCH: &str = "metric_batch";
pub const METRIC_NAME: &str = "metric_name";
pub const METRIC_TYPE: &str = "metric_type";
pub const METRIC_VALUE: &str = "metric_value";
pub const METADATA: &str = "metadata";

/// Column definitions, in table order.
pub fn create_table_sql(qualified: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {qualified} (\n  \
         metric_timestamp TIMESTAMP NOT NULL,\n  \
         metric_batch VARCHAR NOT NULL,\n  \
         metric_name VARCHAR NOT NULL,\n  \
         metric_type VARCHAR NOT NULL,\n  \
         metric_value DOUBLE,\n  \
         metadata VARCHAR\n)"
    )
}

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

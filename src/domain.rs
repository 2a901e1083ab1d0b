//! The domain types the jobs produce and delivery, plots and the dashboard
//! consume: one metric's series and a judgement row. They sit below both, so
//! neither has to import the other for them.

use std::collections::BTreeMap;

/// One metric's observations, oldest first, with any extra numeric columns
/// the SQL returned (by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub timestamps_us: Vec<i64>,
    pub values: Vec<f64>,
    pub extra: BTreeMap<String, Vec<f64>>,
}

/// A judgement row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub timestamp_us: i64,
    pub metric_name: String,
    pub value: f64,
    pub metadata: Option<serde_json::Value>,
}

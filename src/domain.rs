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

/// `value` rounded to `decimals` places, as Anomstack's
/// `ingest_metric_rounding` and `score_metric_rounding` do; a negative
/// `decimals` leaves it as it is.
pub fn round_decimals(value: f64, decimals: i64) -> f64 {
    if decimals < 0 {
        return value;
    }
    let scale = 10f64.powi(decimals.min(15) as i32);
    (value * scale).round() / scale
}

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

/// What a row of a metrics table is: its `metric_type` column, spelled as
/// Anomstack spells it. The one place these words are written; everything
/// else names the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    /// An observation, as ingest stores it.
    Metric,
    /// A model's anomaly score (score job).
    Score,
    /// An anomaly the smoothed score found (alert job).
    Alert,
    /// A value outside its bounds (threshold alerts).
    ThresholdAlert,
    /// A change the change job found.
    Change,
    /// An anomaly a chat model confirmed (llmalert job).
    LlmAlert,
    /// The dashboard's feedback on an anomaly.
    ThumbsUp,
    ThumbsDown,
}

impl MetricType {
    pub const ALL: [MetricType; 8] = [
        MetricType::Metric,
        MetricType::Score,
        MetricType::Alert,
        MetricType::ThresholdAlert,
        MetricType::Change,
        MetricType::LlmAlert,
        MetricType::ThumbsUp,
        MetricType::ThumbsDown,
    ];

    /// The judgements the dashboard lists as anomalies and marks on charts.
    pub const ANOMALIES: [MetricType; 4] = [
        MetricType::Alert,
        MetricType::ThresholdAlert,
        MetricType::Change,
        MetricType::LlmAlert,
    ];

    /// The word in the `metric_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Metric => "metric",
            MetricType::Score => "score",
            MetricType::Alert => "alert",
            MetricType::ThresholdAlert => "tholdalert",
            MetricType::Change => "change",
            MetricType::LlmAlert => "llmalert",
            MetricType::ThumbsUp => "thumbsup",
            MetricType::ThumbsDown => "thumbsdown",
        }
    }

    /// The type a `metric_type` word names; None for a word sandstack does
    /// not write (a shared table may hold others').
    pub fn parse(word: &str) -> Option<MetricType> {
        MetricType::ALL.into_iter().find(|t| t.as_str() == word)
    }

    /// `('alert', 'tholdalert', ...)`: `types` as an SQL list of literals
    /// (the words are sandstack's own, never a batch's).
    pub fn sql_list(types: &[MetricType]) -> String {
        let words: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
        format!("({})", words.join(", "))
    }
}

impl std::fmt::Display for MetricType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_type_reads_back_from_its_word() {
        for t in MetricType::ALL {
            assert_eq!(MetricType::parse(t.as_str()), Some(t));
        }
        assert_eq!(MetricType::parse("thumbs"), None);
        assert_eq!(
            MetricType::sql_list(&MetricType::ANOMALIES),
            "('alert', 'tholdalert', 'change', 'llmalert')"
        );
    }
}

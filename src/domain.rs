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

impl Series {
    /// Move each alert mark (`metric_alert`) to the observation that drove
    /// it (`alert_driver_us`, from the alert's metadata), when that is in
    /// the series: the spike, not the ordinary value after it.
    pub fn mark_alerts_at_drivers(&mut self) {
        let (Some(drivers), Some(mut alert)) = (
            self.extra.get("alert_driver_us"),
            self.extra.get("metric_alert").cloned(),
        ) else {
            return;
        };
        for (i, d) in drivers.iter().enumerate() {
            if !(d.is_finite() && alert[i] > 0.0) {
                continue;
            }
            if let Ok(j) = self.timestamps_us.binary_search(&(*d as i64)) {
                alert[i] = 0.0;
                alert[j] = alert[j].max(1.0);
            }
        }
        self.extra.insert("metric_alert".into(), alert);
    }
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

/// What a judgement's `metadata` column holds, one shape per kind, under
/// the keys Anomstack's queries read; written into the column as JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum JudgementMeta {
    /// A score: each model's probability, by its tag.
    Score { models: BTreeMap<String, f64> },
    /// An anomaly the smoothed score found (or `alert_always` forced).
    Alert {
        value: f64,
        score: f64,
        score_smooth: f64,
        threshold: f64,
        alert_always: bool,
        tags: Option<serde_json::Value>,
        /// The observation that drove the alert: the highest score in the
        /// smoothing window (the alert itself is stamped, as Anomstack's,
        /// at the newest one).
        #[serde(skip_serializing_if = "Option::is_none")]
        driver: Option<Driver>,
    },
    /// A value past a bound: which side, and the bound.
    Threshold {
        value: f64,
        bound: String,
        threshold: f64,
        tags: Option<serde_json::Value>,
    },
    /// A change: its modified z-score against `change_threshold`.
    Change {
        value: f64,
        z: f64,
        threshold: f64,
        tags: Option<serde_json::Value>,
    },
    /// A chat model's confirmed anomaly; `anomaly_explanation` is
    /// Anomstack's name for the reason, for queries written for it.
    LlmAlert {
        reason: String,
        anomaly_explanation: String,
        detection_reason: String,
        value: f64,
        model: String,
        prompt_tokens: u64,
        answer_tokens: u64,
        tags: Option<serde_json::Value>,
    },
}

impl JudgementMeta {
    /// The column's JSON (a value that is not finite is written as null).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The observation behind an alert, and the metric's typical range then.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Driver {
    /// µs since 1970, UTC.
    pub timestamp_us: i64,
    pub value: f64,
    pub score: f64,
    /// The 5th and 95th percentiles of the metric's values before the
    /// smoothing window.
    pub typical_low: f64,
    pub typical_high: f64,
}

/// What readers of a judgement need from its metadata, whichever version
/// or tool wrote it: a key that is missing or of another type reads as
/// absent. The one place that knows which key holds a kind's score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgementFacts {
    pub value: Option<f64>,
    /// The smoothed anomaly score, or a change's z-score.
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    /// A threshold alert's side: `upper` or `lower`.
    pub bound: Option<String>,
    /// A chat model's reason, and the model.
    pub reason: Option<String>,
    pub model: Option<String>,
    pub tags: serde_json::Value,
    /// An alert's driving observation, when its writer recorded one.
    pub driver: Option<Driver>,
}

impl JudgementFacts {
    pub fn read(kind: MetricType, meta: Option<&serde_json::Value>) -> JudgementFacts {
        let Some(meta) = meta else {
            return JudgementFacts::default();
        };
        let num = |k: &str| meta.get(k).and_then(serde_json::Value::as_f64);
        let text = |k: &str| meta.get(k).and_then(|v| v.as_str()).map(str::to_string);
        JudgementFacts {
            value: num("value"),
            score: match kind {
                MetricType::Change => num("z"),
                _ => num("score_smooth"),
            },
            threshold: num("threshold"),
            bound: text("bound"),
            reason: text("reason"),
            model: text("model"),
            tags: meta.get("tags").cloned().unwrap_or_default(),
            driver: meta
                .get("driver")
                .and_then(|d| serde_json::from_value(d.clone()).ok()),
        }
    }
}

/// A time in µs since 1970 as messages show it: `2024-05-01 13:00:00`
/// (UTC), or the count itself when no calendar holds it.
pub fn fmt_us(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{us} µs from 1970"),
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
    let scaled = value * scale;
    // A value this large has no decimals left to round (and scaling it
    // would make it infinite).
    if !scaled.is_finite() {
        return value;
    }
    scaled.round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_marks_move_to_their_drivers_when_those_are_in_the_series() {
        let mut s = Series {
            timestamps_us: vec![10, 20, 30, 40],
            values: vec![1.0, 9.0, 1.0, 1.0],
            extra: BTreeMap::from([
                ("metric_alert".to_string(), vec![0.0, 0.0, 1.0, 1.0]),
                (
                    "alert_driver_us".to_string(),
                    vec![f64::NAN, f64::NAN, 20.0, 5.0],
                ),
            ]),
        };
        s.mark_alerts_at_drivers();
        // 30's driver is 20; 40's (5) is not in the series, so it stays.
        assert_eq!(s.extra["metric_alert"], vec![0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn rounding_keeps_values_too_large_to_scale() {
        assert_eq!(round_decimals(1.23456, 2), 1.23);
        assert_eq!(round_decimals(1e306, 4), 1e306);
        assert_eq!(round_decimals(-1e306, 4), -1e306);
        assert_eq!(round_decimals(1.5, -1), 1.5);
    }

    #[test]
    fn each_metric_type_reads_back_from_its_word() {
        for t in MetricType::ALL {
            assert_eq!(MetricType::parse(t.as_str()), Some(t));
        }
        assert_eq!(MetricType::parse("thumbs"), None);
    }

    #[test]
    fn judgement_metadata_writes_anomstacks_keys_and_reads_back() {
        let change = JudgementMeta::Change {
            value: f64::NAN,
            z: 4.5,
            threshold: 3.5,
            tags: None,
        }
        .to_value();
        assert_eq!(
            change,
            serde_json::json!({"value": null, "z": 4.5, "threshold": 3.5, "tags": null})
        );
        let facts = JudgementFacts::read(MetricType::Change, Some(&change));
        assert_eq!((facts.value, facts.score), (None, Some(4.5)));
        // An alert's score is its smoothed one; a foreign row's odd types
        // read as absent.
        let odd = serde_json::json!({"score_smooth": 0.9, "value": "high", "reason": 7});
        let facts = JudgementFacts::read(MetricType::Alert, Some(&odd));
        assert_eq!(
            (facts.score, facts.value, facts.reason),
            (Some(0.9), None, None)
        );
        assert_eq!(
            MetricType::sql_list(&MetricType::ANOMALIES),
            "('alert', 'tholdalert', 'change', 'llmalert')"
        );
    }
}

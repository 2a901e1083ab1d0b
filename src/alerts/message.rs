//! What an alert says: a subject, a plain-text body, the same facts as
//! structured fields (for webhooks), and the metric's plot.

use serde_json::{json, Value};

use crate::file_names::file_stem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The smoothed anomaly score reached `alert_threshold`.
    Anomaly,
    /// A value outside its `tholdalert_thresholds` bound.
    Threshold,
    /// A level change (MAD z-score past `change_threshold`).
    Change,
    /// A chat model found the point anomalous and confirmed it (llmalert).
    Llm,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Anomaly => "anomaly",
            Kind::Threshold => "threshold",
            Kind::Change => "change",
            Kind::Llm => "llmalert",
            Kind::Summary => "summary",
        }
    }
}

/// One detected event on one metric.
#[derive(Debug, Clone)]
pub struct AlertFacts {
    pub kind: Kind,
    pub batch: String,
    pub metric: String,
    pub timestamp_us: i64,
    pub value: f64,
    /// The smoothed anomaly score, or the change's z-score.
    pub score: Option<f64>,
    /// `alert_threshold`, `change_threshold`, or the broken bound.
    pub threshold: f64,
    /// For threshold alerts: `upper` or `lower`.
    pub bound: Option<String>,
    /// For LLM alerts: the model's reason (plain text, checked) and the model.
    pub reason: Option<String>,
    pub model: Option<String>,
    pub tags: Value,
}

#[derive(Debug, Clone)]
pub struct Plot {
    pub filename: String,
    pub png: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub subject: String,
    pub text: String,
    pub fields: Value,
    pub plot: Option<Plot>,
}

pub fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| us.to_string())
}

impl Message {
    pub fn alert(f: &AlertFacts, plot_png: Option<Vec<u8>>) -> Message {
        let when = format_time(f.timestamp_us);
        let (headline, judgement) = match f.kind {
            Kind::Anomaly => (
                "anomaly",
                format!(
                    "smoothed anomaly score: {} (alert_threshold {})",
                    num(f.score),
                    f.threshold
                ),
            ),
            Kind::Change => (
                "level change",
                format!(
                    "change z-score: {} (change_threshold {})",
                    num(f.score),
                    f.threshold
                ),
            ),
            Kind::Threshold => (
                "threshold breached",
                format!(
                    "{} bound: {}",
                    f.bound.as_deref().unwrap_or("a"),
                    f.threshold
                ),
            ),
            Kind::Llm => (
                "LLM alert",
                format!(
                    "reason: {}\nmodel: {}",
                    f.reason.as_deref().unwrap_or("(none given)"),
                    f.model.as_deref().unwrap_or("(unknown)")
                ),
            ),
            Kind::Summary => ("summary", String::new()),
        };
        let subject = format!(
            "[sandstack] {headline}: {} / {} at {when}",
            f.batch, f.metric
        );
        let tags = if f.tags.is_null() {
            "none".to_string()
        } else {
            f.tags.to_string()
        };
        let text = format!(
            "{headline} in batch {}\n\nmetric: {}\ntimestamp: {when}\nvalue: {}\n{judgement}\ntags: {tags}\n",
            f.batch,
            f.metric,
            num(Some(f.value)),
        );
        let fields = json!({
            "kind": f.kind.as_str(),
            "batch": f.batch,
            "metric": f.metric,
            "timestamp": chrono::DateTime::from_timestamp_micros(f.timestamp_us).map(|t| t.to_rfc3339()),
            "value": finite(f.value),
            "score": f.score.and_then(finite),
            "threshold": finite(f.threshold),
            "bound": f.bound,
            "reason": f.reason,
            "model": f.model,
            "tags": f.tags,
        });
        Message {
            kind: f.kind,
            subject,
            text,
            fields,
            plot: plot_png.map(|png| Plot {
                filename: format!("{}_{}.png", file_stem(&f.batch), file_stem(&f.metric)),
                png,
            }),
        }
    }

    pub fn summary(title: &str, table: String, rows: usize) -> Message {
        Message {
            kind: Kind::Summary,
            subject: format!("[sandstack] summary: {title}"),
            text: format!("sandstack summary: {title}\n\n{table}\n"),
            fields: json!({"kind": "summary", "title": title, "rows": rows, "table": table}),
            plot: None,
        }
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let r = (v * 1e4).round() / 1e4;
            format!("{r}")
        }
        _ => "n/a".into(),
    }
}

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
    /// A batch's job failed `alert_on_failure_n` runs in a row.
    Failure,
    /// It succeeded again after such a streak.
    Recovery,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Anomaly => "anomaly",
            Kind::Threshold => "threshold",
            Kind::Change => "change",
            Kind::Llm => "llmalert",
            Kind::Summary => "summary",
            Kind::Failure => "failure",
            Kind::Recovery => "recovery",
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
    /// For anomalies: the observation that drove the alert, and the
    /// metric's typical range.
    pub driver: Option<crate::domain::Driver>,
}

/// How to replay a failed run from its cassette, when it recorded one.
fn replay_line(job: &str, batch: &str, cassette: Option<&str>) -> String {
    cassette
        .map(|c| format!("\nreplay it: sandstack {job} {batch} --replay {c}\n"))
        .unwrap_or_default()
}

/// One failed run, for [`Message::failed_run`].
#[derive(Debug, Clone, Copy)]
pub struct RunFailure<'a> {
    pub batch: &'a str,
    pub job: &'a str,
    pub run_id: i64,
    pub error: &'a str,
    pub cassette: Option<&'a str>,
}

/// A failure streak, for [`Message::failing`].
#[derive(Debug, Clone)]
pub struct FailureFacts<'a> {
    pub batch: &'a str,
    pub job: &'a str,
    pub failures: u32,
    pub run_id: i64,
    pub error: &'a str,
    /// The newest failed run's cassette, when it recorded one.
    pub cassette: Option<&'a str>,
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
    /// Plots shown with the text: one for an alert, one per alerting
    /// metric for the folder's summary.
    pub plots: Vec<Plot>,
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
            Kind::Summary | Kind::Failure | Kind::Recovery => ("summary", String::new()),
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
        let driven = f.driver.as_ref().map_or(String::new(), |d| {
            format!(
                "driven by: value {} at {} (anomaly score {}); typical range {} to {}\n",
                num(Some(d.value)),
                format_time(d.timestamp_us),
                num(Some(d.score)),
                num(Some(d.typical_low)),
                num(Some(d.typical_high)),
            )
        });
        let text = format!(
            "{headline} in batch {}\n\nmetric: {}\ntimestamp: {when}\nvalue: {}\n{driven}{judgement}\ntags: {tags}\n",
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
            "driver": f.driver,
        });
        Message {
            kind: f.kind,
            subject,
            text,
            fields,
            plots: plot_png
                .map(|png| Plot {
                    filename: format!("{}_{}.png", file_stem(&f.batch), file_stem(&f.metric)),
                    png,
                })
                .into_iter()
                .collect(),
        }
    }

    /// A batch's job has failed `failures` runs in a row; `last` is the
    /// newest failure.
    pub fn failing(f: &FailureFacts<'_>) -> Message {
        let replay = replay_line(f.job, f.batch, f.cassette);
        Message {
            kind: Kind::Failure,
            subject: format!(
                "[sandstack] failing: {} / {} ({} runs in a row)",
                f.batch, f.job, f.failures
            ),
            text: format!(
                "The {} job of batch {} has failed {} runs in a row (the newest is run {}).\n\nerror:\n{}\n{replay}\nsandstack runs --show {} has its log. A message follows when it succeeds again.\n",
                f.job, f.batch, f.failures, f.run_id, f.error, f.run_id
            ),
            fields: json!({"kind": "failure", "batch": f.batch, "job": f.job, "failures": f.failures,
                           "run_id": f.run_id, "error": f.error, "cassette": f.cassette}),
            plots: Vec::new(),
        }
    }

    /// One failed run, for Anomstack's failure e-mail (every failed run,
    /// where `failing` tells of a streak once).
    pub fn failed_run(f: &RunFailure<'_>) -> Message {
        let replay = replay_line(f.job, f.batch, f.cassette);
        Message {
            kind: Kind::Failure,
            subject: format!("[sandstack] run failed: {} / {} (run {})", f.batch, f.job, f.run_id),
            text: format!(
                "Run {} of the {} job of batch {} failed.\n\nerror:\n{}\n{replay}\nsandstack runs --show {} has its log.\n",
                f.run_id, f.job, f.batch, f.error, f.run_id
            ),
            fields: json!({"kind": "failure", "batch": f.batch, "job": f.job, "failures": 1,
                           "run_id": f.run_id, "error": f.error, "cassette": f.cassette}),
            plots: Vec::new(),
        }
    }

    /// A batch's job succeeded after `failures` failed runs.
    pub fn recovered(batch: &str, job: &str, failures: u32, run_id: i64) -> Message {
        Message {
            kind: Kind::Recovery,
            subject: format!("[sandstack] recovered: {batch} / {job}"),
            text: format!(
                "The {job} job of batch {batch} succeeded again (run {run_id}) after {failures} failed runs.\n"
            ),
            fields: json!({"kind": "recovery", "batch": batch, "job": job, "failures": failures, "run_id": run_id}),
            plots: Vec::new(),
        }
    }

    /// The folder's daily summary: `text` already laid out, a plot per
    /// alerting metric.
    pub fn folder_summary(
        batches: usize,
        alerting: usize,
        text: String,
        rows: usize,
        plots: Vec<Plot>,
    ) -> Message {
        Message {
            kind: Kind::Summary,
            subject: format!(
                "[sandstack] daily summary: {batches} batch(es), {alerting} metric(s) alerted in the last 24 hours"
            ),
            fields: json!({"kind": "summary", "title": "daily summary", "batches": batches,
                           "alerting_metrics": alerting, "rows": rows, "text": text}),
            text,
            plots,
        }
    }

    pub fn summary(title: &str, table: String, rows: usize) -> Message {
        Message {
            kind: Kind::Summary,
            subject: format!("[sandstack] summary: {title}"),
            text: format!("sandstack summary: {title}\n\n{table}\n"),
            fields: json!({"kind": "summary", "title": title, "rows": rows, "table": table}),
            plots: Vec::new(),
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

#[cfg(test)]
mod driver_tests {
    use super::*;

    #[test]
    fn an_anomaly_names_the_value_that_drove_it_beside_the_typical_range() {
        let f = AlertFacts {
            kind: Kind::Anomaly,
            batch: "b".into(),
            metric: "m".into(),
            timestamp_us: 1_714_568_520_000_000,
            value: 10.05,
            score: Some(0.7),
            threshold: 0.6,
            bound: None,
            reason: None,
            model: None,
            tags: Value::Null,
            driver: Some(crate::domain::Driver {
                timestamp_us: 1_714_568_400_000_000,
                value: 31.5,
                score: 1.0,
                typical_low: 9.8,
                typical_high: 10.4,
            }),
        };
        let m = Message::alert(&f, None);
        assert!(
            m.text
                .contains("driven by: value 31.5 at 2024-05-01 13:00:00"),
            "{}",
            m.text
        );
        assert!(m.text.contains("typical range 9.8 to 10.4"), "{}", m.text);
        assert_eq!(m.fields["driver"]["value"], 31.5);
    }
}

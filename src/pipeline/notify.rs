//! From job results to messages: the alert job's alerts and threshold
//! alerts, the change job's changes, llmalert's confirmed anomalies and the
//! summary, each sent through the batch's methods with the metric's plot.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;

use crate::alerts::message::{AlertFacts, Kind, Message};
use crate::alerts::{deliver, Channels, Delivery, Outcome};
use crate::config::{AlertMethod, BatchSpec};
use crate::domain::{Judgement, JudgementFacts, MetricType};
use crate::drawing;
use crate::jobs::alert::AlertReport;
use crate::store::Store;

/// What a round of sending did.
#[derive(Debug, Default)]
pub struct NotifyReport {
    pub messages: usize,
    pub deliveries: Vec<Delivery>,
}

impl NotifyReport {
    /// One line per channel that failed (or is listed but not configured).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .deliveries
            .iter()
            .filter_map(|d| match &d.outcome {
                Outcome::Sent => None,
                Outcome::NotConfigured(why) => Some(why.clone()),
                Outcome::Failed(why) => Some(format!(
                    "{} failed after {} attempt(s): {why}",
                    d.channel, d.attempts
                )),
            })
            .collect();
        out.dedup();
        out
    }

    pub fn sent(&self) -> usize {
        self.deliveries
            .iter()
            .filter(|d| d.outcome == Outcome::Sent)
            .count()
    }

    fn add(&mut self, d: Vec<Delivery>) {
        self.messages += 1;
        self.deliveries.extend(d);
    }
}

fn facts(spec: &BatchSpec, kind: Kind, j: &Judgement) -> AlertFacts {
    let written_as = match kind {
        Kind::Threshold => MetricType::ThresholdAlert,
        Kind::Change => MetricType::Change,
        Kind::Llm => MetricType::LlmAlert,
        _ => MetricType::Alert,
    };
    let f = JudgementFacts::read(written_as, j.metadata.as_ref());
    AlertFacts {
        kind,
        batch: spec.metric_batch.clone(),
        metric: j.metric_name.clone(),
        timestamp_us: j.timestamp_us,
        value: f.value.unwrap_or(f64::NAN),
        score: f.score,
        threshold: f.threshold.unwrap_or(f64::NAN),
        bound: f.bound,
        reason: f.reason,
        model: f.model,
        tags: f.tags,
        driver: f.driver,
    }
}

fn send_judgements(
    spec: &BatchSpec,
    store: &Store,
    channels: &Channels,
    items: &[(Kind, &Judgement)],
) -> NotifyReport {
    let mut report = NotifyReport::default();
    if items.is_empty() {
        return report;
    }
    let series = crate::jobs::plot::series(spec, store).unwrap_or_else(|e| {
        tracing::warn!(batch = %spec.metric_batch, error = %e, "no plots for the alerts");
        BTreeMap::new()
    });
    for (kind, j) in items {
        let facts = facts(spec, *kind, j);
        let png = series.get(&j.metric_name).and_then(|s| {
            drawing::render_png(&spec.metric_batch, &j.metric_name, s, spec.alert.threshold)
                .map_err(|e| tracing::warn!(batch = %spec.metric_batch, error = %e, "no plot for the alert"))
                .ok()
        });
        let methods = match kind {
            Kind::Threshold => &spec.tholdalert.methods,
            _ => &spec.alert.methods,
        };
        report.add(deliver(channels, methods, &Message::alert(&facts, png)));
    }
    report
}

/// Send the alert job's alerts (through `alert_methods`) and threshold
/// alerts (through `tholdalert_methods`).
pub fn alerts(
    spec: &BatchSpec,
    store: &Store,
    alert: &AlertReport,
    channels: &Channels,
) -> NotifyReport {
    let items: Vec<(Kind, &Judgement)> = alert
        .alerts
        .iter()
        .map(|j| (Kind::Anomaly, j))
        .chain(alert.threshold_alerts.iter().map(|j| (Kind::Threshold, j)))
        .collect();
    send_judgements(spec, store, channels, &items)
}

/// Send the change job's changes through `alert_methods`.
pub fn changes(
    spec: &BatchSpec,
    store: &Store,
    changes: &[Judgement],
    channels: &Channels,
) -> NotifyReport {
    let items: Vec<(Kind, &Judgement)> = changes.iter().map(|j| (Kind::Change, j)).collect();
    send_judgements(spec, store, channels, &items)
}

/// Send the llmalert job's alerts through `alert_methods`.
pub fn llm_alerts(
    spec: &BatchSpec,
    store: &Store,
    alerts: &[Judgement],
    channels: &Channels,
) -> NotifyReport {
    let items: Vec<(Kind, &Judgement)> = alerts.iter().map(|j| (Kind::Llm, j)).collect();
    send_judgements(spec, store, channels, &items)
}

/// Send a summary (the `summary_sql` result) through `methods`.
/// Plots the folder's summary carries at most (the metrics with the most
/// alerts in the last day).
const SUMMARY_PLOTS: usize = 8;
/// Alerting metrics it lists, and rows of each batch's table it shows: a
/// folder of hundreds of batches still makes one message a mail server
/// and Slack take.
const SUMMARY_METRICS: usize = 50;
const SUMMARY_ROWS: usize = 40;

/// Send the folder's daily summary through `methods` (the carrier batch's):
/// each batch's table, the metrics that alerted in the last day, and a plot
/// of each of the first few.
pub fn folder_summary(
    methods: &[AlertMethod],
    summary: &crate::jobs::maintenance::FolderSummary,
    channels: &Channels,
) -> NotifyReport {
    let mut text = String::new();
    if summary.alerting.is_empty() {
        text.push_str("No metric alerted in the last 24 hours.\n");
    } else {
        text.push_str("Alerted in the last 24 hours:\n");
        for a in summary.alerting.iter().take(SUMMARY_METRICS) {
            text.push_str(&format!(
                "  {} / {}: {} alert(s)\n",
                a.batch, a.metric, a.alerts
            ));
        }
        if summary.alerting.len() > SUMMARY_METRICS {
            text.push_str(&format!(
                "  and {} more (see the dashboard's anomalies)\n",
                summary.alerting.len() - SUMMARY_METRICS
            ));
        }
    }
    for (batch, rows) in &summary.sections {
        let total: usize = rows.iter().map(|b| b.num_rows()).sum();
        let mut shown = Vec::new();
        let mut left = SUMMARY_ROWS;
        for b in rows {
            if left == 0 {
                break;
            }
            let n = b.num_rows().min(left);
            shown.push(b.slice(0, n));
            left -= n;
        }
        let table = crate::escape::table(&shown)
            .unwrap_or_else(|e| format!("(cannot format the summary: {e})"));
        let more = if total > SUMMARY_ROWS {
            format!(
                "({} more rows: `sandstack summary {batch}`)\n",
                total - SUMMARY_ROWS
            )
        } else {
            String::new()
        };
        text.push_str(&format!("\n== {batch} ==\n{table}\n{more}"));
    }
    for (batch, why) in &summary.failed {
        text.push_str(&format!("\n== {batch} ==\n(not summarised: {why})\n"));
    }
    let plots = summary
        .alerting
        .iter()
        .filter(|a| a.series.is_some())
        .take(SUMMARY_PLOTS)
        .filter_map(|a| {
            let series = a.series.as_ref()?;
            crate::drawing::render_png(&a.batch, &a.metric, series, a.threshold)
                .map_err(|e| tracing::warn!(batch = %a.batch, metric = %a.metric, error = %e, "no plot for the summary"))
                .ok()
                .map(|png| crate::alerts::message::Plot {
                    filename: format!(
                        "{}_{}.png",
                        crate::file_names::file_stem(&a.batch),
                        crate::file_names::file_stem(&a.metric)
                    ),
                    png,
                })
        })
        .collect();
    let rows = summary
        .sections
        .iter()
        .flat_map(|(_, b)| b)
        .map(|b| b.num_rows())
        .sum();
    let mut report = NotifyReport::default();
    report.add(deliver(
        channels,
        methods,
        &Message::folder_summary(
            summary.sections.len(),
            summary.alerting.len(),
            text,
            rows,
            plots,
        ),
    ));
    report
}

pub fn summary(
    title: &str,
    methods: &[AlertMethod],
    batches: &[RecordBatch],
    channels: &Channels,
) -> NotifyReport {
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    // The batch's SQL results: each cell one line, so none breaks the table.
    let table = crate::escape::table(batches)
        .unwrap_or_else(|e| format!("(cannot format the summary: {e})"));
    let mut report = NotifyReport::default();
    report.add(deliver(
        channels,
        methods,
        &Message::summary(title, table, rows),
    ));
    report
}

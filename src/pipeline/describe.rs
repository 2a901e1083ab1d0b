//! What a job did, in words: the lines `sandstack <job>` prints and a
//! scheduled run keeps as its log.

use super::notify::NotifyReport;
use super::outcome::JobOutcome;
use crate::config::BatchSpec;
use crate::domain::{Judgement, JudgementFacts, MetricType};
use crate::jobs::llmalert::LlmAlertReport;

/// One line into `out`, escaped whole for a terminal: metric names,
/// skip reasons, a model's reasons and problems come from the batch, and
/// this text is printed, kept as the run's log and shown on the dashboard.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&crate::escape::terminal_line(&format!($($arg)*)));
        $out.push('\n');
    }};
}

/// What `outcome`, a run of a job of `spec`, did and sent.
pub fn describe(spec: &BatchSpec, outcome: &JobOutcome) -> String {
    let name = &spec.metric_batch;
    let mut out = String::new();
    match outcome {
        JobOutcome::Ingested(r, thresholds, _) => {
            say!(
                out,
                "batch {name}: stored {} rows in {}",
                r.stored,
                r.table_key
            );
            if !thresholds.is_empty() {
                say!(out, "batch {name}: {} threshold alerts", thresholds.len());
                judgements(&mut out, thresholds.iter());
            }
        }
        JobOutcome::Trained(r) => {
            say!(out, "batch {name}: trained {} models", r.trained.len());
            for (metric, tag, rows) in &r.trained {
                say!(out, "  {metric}: {tag} on {rows} feature rows");
            }
            for (metric, why) in &r.skipped {
                say!(out, "  {metric}: skipped ({why})");
            }
        }
        JobOutcome::Scored(r) => {
            say!(out, "batch {name}: stored {} scores", r.scored);
            for (metric, why) in &r.skipped {
                say!(out, "  {metric}: skipped ({why})");
            }
        }
        JobOutcome::Alerted(r, _) => {
            say!(
                out,
                "batch {name}: {} alerts, {} threshold alerts",
                r.alerts.len(),
                r.threshold_alerts.len()
            );
            judgements(&mut out, r.alerts.iter().chain(&r.threshold_alerts));
        }
        JobOutcome::Changed(r, _) => {
            say!(out, "batch {name}: {} changes", r.len());
            judgements(&mut out, r.iter());
        }
        JobOutcome::Deleted(n) => say!(
            out,
            "batch {name}: deleted {n} rows older than {} days",
            spec.delete.after_n_days
        ),
        JobOutcome::LlmAlerted(r, _) => llm_alerts(&mut out, name, r),
        JobOutcome::Plotted(_) | JobOutcome::Summarised(..) => {}
    }
    if let Some(sent) = outcome.sent() {
        sent_lines(&mut out, sent);
    }
    out
}

fn judgements<'a>(out: &mut String, js: impl Iterator<Item = &'a Judgement>) {
    for j in js {
        say!(
            out,
            "  {} {}: {}",
            j.timestamp_us,
            j.metric_name,
            j.metadata.clone().unwrap_or_default()
        );
    }
}

fn llm_alerts(out: &mut String, name: &str, r: &LlmAlertReport) {
    if r.dry_run {
        say!(out,
            "batch {name}: dry run with model {}: nothing asked, nothing stored; {} metrics would be asked",
            r.model,
            r.previews.len()
        );
        for p in &r.previews {
            say!(out,
                "  {}: {} points ({} may alert), about {} tokens to detect; as many again to verify what it finds",
                p.metric, p.points, p.open, p.estimated_tokens
            );
        }
        return;
    }
    say!(
        out,
        "batch {name}: {} LLM alerts; asked {} about {} metrics in {} calls, {} tokens",
        r.alerts.len(),
        r.model,
        r.metrics_asked,
        r.calls,
        r.tokens
    );
    for j in &r.alerts {
        let facts = JudgementFacts::read(MetricType::LlmAlert, j.metadata.as_ref());
        say!(
            out,
            "  {} {}: {}",
            crate::alerts::message::format_time(j.timestamp_us),
            j.metric_name,
            facts.reason.unwrap_or_default()
        );
    }
    for p in &r.problems {
        say!(out, "  problem: {p}");
    }
    if let Some(s) = &r.stopped {
        say!(out, "  {s}; the metrics after it wait for the next run");
    }
    if let Some(c) = &r.cassette {
        say!(out, "  cassette written to {}", c.display());
    }
}

/// What a round of sending did.
pub fn sent_lines(out: &mut String, r: &NotifyReport) {
    if r.messages == 0 {
        return;
    }
    say!(
        out,
        "  sent {} message(s): {} deliveries succeeded",
        r.messages,
        r.sent()
    );
    for p in r.problems() {
        say!(out, "  not delivered: {p}");
    }
}

//! The llmalert job, in two steps as Anomstack's anomaly agent: for each
//! metric of `llmalert_sql`, a chat model is shown its recent values (and,
//! with `llmalert_include_plot`, its plot) and names the anomalous points
//! with a reason; a second call verifies the candidates that could alert.
//! Confirmed points among the newest `llmalert_recent_n`, not stored and
//! not snoozed, become `llmalert` rows. One metric's failure (an HTTP
//! error, a malformed answer) is noted and the others go on; a spent
//! budget stops the run, keeping what it confirmed. Every exchange can be
//! recorded to a cassette and replayed with no server.

pub mod answer;
pub mod prompt;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::ingest::recording::{self, CassetteOptions, Plan};
use super::rows::{load_input, write, JobError};
use crate::config::BatchSpec;
use crate::domain::{Judgement, Series};
use crate::llm::{self, Budget, ChatRequest, Client, Endpoint, LlmError, Tape};
use crate::sandbox::cassette::{
    function_sha256, Cassette, ReplayBook, DEFAULT_MATCH_ON, FORMAT_VERSION,
};
use prompt::Point;

/// Answer tokens asked for per call (a budget nearly spent asks fewer).
const ANSWER_TOKENS: u64 = 2_048;

/// What the job needs besides the batch and the store.
pub struct LlmAlertOptions<'a> {
    /// The operator's environment: the endpoint's variables and key.
    pub env: &'a BTreeMap<String, String>,
    pub cassette: Option<CassetteOptions>,
    /// Renders a metric's points as a PNG (delivery owns the plots).
    pub plot: &'a dyn Fn(&str, &Series) -> Option<Vec<u8>>,
    /// Ask nothing: say what each metric's detection question would be.
    pub dry_run: bool,
}

/// A question a dry run would ask.
#[derive(Debug)]
pub struct Preview {
    pub metric: String,
    pub points: usize,
    /// Points that could still alert.
    pub open: usize,
    pub estimated_tokens: u64,
    pub system: &'static str,
    pub text: String,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct LlmAlertReport {
    /// The rows stored.
    pub alerts: Vec<Judgement>,
    pub model: String,
    /// Metrics the model was asked about.
    pub metrics_asked: usize,
    pub calls: u64,
    pub tokens: u64,
    /// Per metric: failures and parts of answers refused.
    pub problems: Vec<String>,
    /// Why the run stopped asking before the last metric.
    pub stopped: Option<String>,
    pub cassette: Option<PathBuf>,
    /// A dry run: nothing was asked or stored.
    pub dry_run: bool,
    /// With `dry_run`: the detection question of each metric that would be asked.
    pub previews: Vec<Preview>,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmAlertError {
    /// No endpoint is configured: the job is skipped.
    #[error("batch {batch}: llmalert skipped: {message}")]
    NotConfigured { batch: String, message: String },
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("batch {batch}: {message}")]
    Cassette { batch: String, message: String },
}

pub fn run(
    spec: &BatchSpec,
    store: &mut crate::store::Store,
    opts: &LlmAlertOptions<'_>,
) -> Result<LlmAlertReport, LlmAlertError> {
    let batch = spec.metric_batch.clone();
    let cassette_err = |message: String| LlmAlertError::Cassette {
        batch: batch.clone(),
        message,
    };
    let plan = match &opts.cassette {
        Some(c) => Some(recording::plan(c, Some("llmalert")).map_err(cassette_err)?),
        None => None,
    };
    // A replay calls the endpoint it recorded, keys scrubbed: it needs no
    // variable of this machine.
    let env = match &plan {
        Some(Plan::Replay { cassette, .. }) => cassette
            .env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect(),
        _ => llm::client::recorded_env(opts.env),
    };
    let endpoint =
        Endpoint::from_env(&env, &spec.llmalert.model).map_err(|e| LlmAlertError::NotConfigured {
            batch: batch.clone(),
            message: e.0,
        });
    let input = load_input(spec, store, "llmalert_sql", "llmalert", Some("llmalert"))
        .map_err(JobError::of(spec))?;
    if opts.dry_run {
        return Ok(preview(spec, &input, endpoint.ok()));
    }
    let endpoint = endpoint?;
    let tape = match &plan {
        None => Tape::Live,
        Some(Plan::Record) => Tape::Record,
        Some(Plan::Replay {
            cassette,
            allow_new,
        }) => {
            let match_on = opts
                .cassette
                .as_ref()
                .map(|c| c.match_on.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| DEFAULT_MATCH_ON.to_vec());
            Tape::Replay(ReplayBook::new(
                cassette.interactions.clone(),
                match_on,
                *allow_new,
            ))
        }
    };
    let budget = Budget {
        max_calls: spec.llmalert.max_calls,
        max_tokens: spec.llmalert.max_tokens,
        deadline: Instant::now() + Duration::from_secs_f64(spec.jobs.timeout_s),
    };
    let scrub = opts
        .cassette
        .as_ref()
        .map(|c| c.scrub.clone())
        .unwrap_or_default();
    let mut client = Client::new(endpoint, budget, tape, &env, &scrub).map_err(cassette_err)?;
    let mut report = LlmAlertReport {
        model: client.endpoint().model.clone(),
        ..Default::default()
    };
    let recorded_at = chrono::Utc::now();
    for (metric, series) in &input.series {
        if spec.llmalert.exclude_metrics.contains(metric) {
            continue;
        }
        let done = input.done.get(metric);
        match check_metric(spec, &mut client, metric, series, done, opts, &mut report) {
            Ok(found) => report.alerts.extend(found),
            // A replay that cannot answer is not the run recorded: it
            // stores nothing.
            Err(LlmError::NotInCassette(message)) => {
                return Err(cassette_err(format!("llmalert metric {metric}: {message}")))
            }
            Err(e) if e.stops_the_run() => {
                tracing::warn!("batch {batch}: llmalert stopped at metric {metric}: {e}");
                report.stopped = Some(format!("stopped at metric {metric}: {e}"));
                break;
            }
            Err(e) => {
                tracing::warn!("batch {batch}: llmalert metric {metric}: {e}");
                report.problems.push(format!("metric {metric}: {e}"));
            }
        }
    }
    report.calls = client.calls;
    report.tokens = client.tokens;
    if let (Some(plan), Some(c)) = (&plan, &opts.cassette) {
        report.cassette =
            save_cassette(spec, plan, c, &client, &env, recorded_at).map_err(cassette_err)?;
    }
    write(store, &spec.table_key, &batch, "llmalert", &report.alerts)
        .map_err(|e| JobError::of(spec)(e.into()))?;
    Ok(report)
}

/// What a run would ask, asking nothing (no key needed).
fn preview(
    spec: &BatchSpec,
    input: &super::rows::JobInput,
    endpoint: Option<Endpoint>,
) -> LlmAlertReport {
    let schema = prompt::schema();
    let mut report = LlmAlertReport {
        model: endpoint.map_or_else(|| "(no endpoint configured)".into(), |e| e.model),
        dry_run: true,
        ..Default::default()
    };
    for (metric, series) in &input.series {
        if spec.llmalert.exclude_metrics.contains(metric) {
            continue;
        }
        let points = prompt::points(series, &spec.llmalert);
        let open = eligible(&points, spec, input.done.get(metric)).len();
        if open == 0 {
            continue;
        }
        let image = spec.llmalert.include_plot.then(|| vec![0u8]);
        let req = ChatRequest {
            system: prompt::SYSTEM,
            text: prompt::detection_text(detection_prompt(spec), metric, &points),
            image_png: image.as_deref(),
            schema_name: "anomalies",
            schema: &schema,
            max_answer_tokens: ANSWER_TOKENS,
        };
        report.previews.push(Preview {
            metric: metric.clone(),
            points: points.len(),
            open,
            estimated_tokens: llm::client::estimate_tokens(&req),
            system: prompt::SYSTEM,
            text: req.text,
        });
    }
    report
}

/// The batch's detection instructions, or sandstack's.
fn detection_prompt(spec: &BatchSpec) -> &str {
    let s = &spec.llmalert;
    s.detection_prompt
        .as_deref()
        .or(s.system_prompt.as_deref())
        .filter(|p| !p.trim().is_empty())
        .unwrap_or(prompt::DETECTION)
}

/// The points that may still alert: among the newest `recent_n`, not
/// stored, and not within `snooze_n` observations after a stored one.
fn eligible(points: &[Point], spec: &BatchSpec, done: Option<&BTreeSet<i64>>) -> BTreeSet<i64> {
    let s = &spec.llmalert;
    let is_done = |t: &i64| done.is_some_and(|d| d.contains(t));
    let first = points.len().saturating_sub(s.recent_n as usize);
    (first..points.len())
        .filter(|&i| {
            let from = i.saturating_sub(s.snooze_n as usize);
            !points[from..=i].iter().any(|p| is_done(&p.timestamp_us))
        })
        .map(|i| points[i].timestamp_us)
        .collect()
}

/// Ask about one metric: detection, then verification of the candidates
/// that could alert. Returns the rows to store.
fn check_metric(
    spec: &BatchSpec,
    client: &mut Client,
    metric: &str,
    series: &Series,
    done: Option<&BTreeSet<i64>>,
    opts: &LlmAlertOptions<'_>,
    report: &mut LlmAlertReport,
) -> Result<Vec<Judgement>, LlmError> {
    let s = &spec.llmalert;
    let points = prompt::points(series, s);
    let open = eligible(&points, spec, done);
    if open.is_empty() {
        return Ok(Vec::new());
    }
    report.metrics_asked += 1;
    let image = if s.include_plot {
        let shown = Series {
            timestamps_us: points.iter().map(|p| p.timestamp_us).collect(),
            values: points.iter().map(|p| p.value).collect(),
            extra: BTreeMap::new(),
        };
        (opts.plot)(metric, &shown)
    } else {
        None
    };
    let schema = prompt::schema();
    let detection = detection_prompt(spec);
    let ask = |text: String| ChatRequest {
        system: prompt::SYSTEM,
        text,
        image_png: image.as_deref(),
        schema_name: "anomalies",
        schema: &schema,
        max_answer_tokens: ANSWER_TOKENS,
    };
    let found = client.chat(&ask(prompt::detection_text(detection, metric, &points)))?;
    let detected = answer::read(&found.json, &points).map_err(LlmError::Answer)?;
    note_refused(report, metric, "detection", &detected.refused);
    let candidates: Vec<&answer::Finding> = detected
        .findings
        .iter()
        .filter(|f| open.contains(&f.timestamp_us))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let verification = s
        .verification_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or(prompt::VERIFICATION);
    let listed: Vec<(String, String)> = candidates
        .iter()
        .map(|f| (f.label.clone(), f.reason.clone()))
        .collect();
    let verified = client.chat(&ask(prompt::verification_text(
        verification,
        metric,
        &points,
        &listed,
    )))?;
    let confirmed = answer::read(&verified.json, &points).map_err(LlmError::Answer)?;
    note_refused(report, metric, "verification", &confirmed.refused);
    let tokens =
        |a: &llm::ChatAnswer, b: &llm::ChatAnswer, f: fn(&llm::ChatAnswer) -> Option<u64>| {
            f(a).unwrap_or(0) + f(b).unwrap_or(0)
        };
    let value_at: BTreeMap<i64, f64> = points.iter().map(|p| (p.timestamp_us, p.value)).collect();
    let index_of: BTreeMap<i64, usize> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (p.timestamp_us, i))
        .collect();
    let mut out: Vec<Judgement> = Vec::new();
    let mut last: Option<usize> = None;
    let mut ordered: Vec<&answer::Finding> = confirmed.findings.iter().collect();
    ordered.sort_by_key(|f| f.timestamp_us);
    for f in ordered {
        let Some(detected) = candidates.iter().find(|c| c.timestamp_us == f.timestamp_us) else {
            report.problems.push(format!(
                "metric {metric}: verification confirmed {}, which was not a candidate; ignored",
                f.label
            ));
            continue;
        };
        let i = index_of[&f.timestamp_us];
        if last.is_some_and(|j| i - j <= s.snooze_n as usize) {
            continue;
        }
        last = Some(i);
        tracing::warn!(
            "LLMALERT batch {} metric {metric} at {}: {}",
            spec.metric_batch,
            f.label,
            f.reason
        );
        out.push(Judgement {
            timestamp_us: f.timestamp_us,
            metric_name: metric.to_string(),
            value: 1.0,
            metadata: Some(json!({
                "reason": f.reason,
                // Anomstack's name for the same text, for queries written for it.
                "anomaly_explanation": f.reason,
                "detection_reason": detected.reason,
                "value": value_at[&f.timestamp_us],
                "model": client.endpoint().model,
                "prompt_tokens": tokens(&found, &verified, |a| a.prompt_tokens),
                "answer_tokens": tokens(&found, &verified, |a| a.answer_tokens),
                "tags": spec.metric_tags.get(metric),
            })),
        });
    }
    Ok(out)
}

fn note_refused(report: &mut LlmAlertReport, metric: &str, step: &str, refused: &[String]) {
    for r in refused {
        tracing::warn!("llmalert metric {metric}: {step} answer: {r}");
        report
            .problems
            .push(format!("metric {metric}: {step} answer: {r}"));
    }
}

/// Write the run's cassette when the plan records.
fn save_cassette(
    spec: &BatchSpec,
    plan: &Plan,
    opts: &CassetteOptions,
    client: &Client,
    env: &BTreeMap<String, String>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<PathBuf>, String> {
    let mut interactions = match plan {
        Plan::Record => Vec::new(),
        Plan::Replay {
            allow_new: false, ..
        } => return Ok(None),
        Plan::Replay { cassette, .. } => cassette.interactions.clone(),
    };
    interactions.extend(client.interactions.iter().cloned());
    let what = format!(
        "{:?}\n{:?}\n{:?}\n{}",
        spec.llmalert,
        spec.sql.get("llmalert_sql"),
        client.endpoint().model,
        prompt::SYSTEM
    );
    let cassette = Cassette {
        version: FORMAT_VERSION,
        note: Some("the chat model's exchanges of one llmalert run".into()),
        job: Some("llmalert".into()),
        batch: spec.metric_batch.clone(),
        function_sha256: function_sha256(&what),
        clock_start_us: at.timestamp_micros(),
        recorded_at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        seed: String::new(),
        env: client.scrubber().env(env),
        interactions,
    };
    cassette.save(&opts.path).map_err(|e| e.to_string())?;
    Ok(Some(opts.path.clone()))
}

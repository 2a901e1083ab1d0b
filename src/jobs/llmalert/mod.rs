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
pub mod ask;
pub mod prompt;
pub mod recording;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::ingest::recording::{self as cassettes, CassetteOptions};
use super::rows::{load_input, write, JobError, JobInput};
use crate::config::{BatchSpec, Job};
use crate::domain::{Judgement, MetricType, Series};
use crate::llm::{self, Budget, Client, Endpoint, LlmError};

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
    /// `llmalert_sql` ran past `job_timeout_s`.
    #[error("batch {batch}: llmalert_sql ran past job_timeout_s and was stopped")]
    TimedOut { batch: String },
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
        Some(c) => Some(cassettes::plan(c, Some("llmalert")).map_err(cassette_err)?),
        None => None,
    };
    let env = recording::env_for(plan.as_ref(), opts.env);
    let endpoint =
        Endpoint::from_env(&env, &spec.llmalert.model).map_err(|e| LlmAlertError::NotConfigured {
            batch: batch.clone(),
            message: e.0,
        });
    let started = Instant::now();
    let limit = Duration::from_secs_f64(spec.jobs.timeout_s);
    // The SQL is the batch's: it is stopped at the job's limit, as every
    // job's is; the questions then have what is left of it.
    let input = match store.with_time_limit(limit, |s| {
        load_input(spec, s, Job::Llmalert, Some(MetricType::LlmAlert))
    }) {
        (Ok(input), _) => input,
        (Err(_), true) => return Err(LlmAlertError::TimedOut { batch }),
        (Err(e), false) => return Err(JobError::of(spec)(e).into()),
    };
    if opts.dry_run {
        return Ok(preview(spec, &input, endpoint.ok()));
    }
    let budget = Budget {
        max_calls: spec.llmalert.max_calls,
        max_tokens: spec.llmalert.max_tokens,
        deadline: started + limit,
    };
    let tape = crate::jobs::ingest::recording::tape(plan.as_ref(), opts.cassette.as_ref());
    let scrub = opts
        .cassette
        .as_ref()
        .map(|c| c.scrub.as_slice())
        .unwrap_or_default();
    let mut client = Client::new(endpoint?, budget, tape, &env, scrub).map_err(cassette_err)?;
    let mut report = LlmAlertReport {
        model: client.endpoint().model.clone(),
        ..Default::default()
    };
    let recorded_at = chrono::Utc::now();
    ask_each_metric(spec, &input, &mut client, opts, &mut report).map_err(cassette_err)?;
    report.calls = client.calls;
    report.tokens = client.tokens;
    if let (Some(plan), Some(c)) = (&plan, &opts.cassette) {
        report.cassette =
            recording::save(spec, plan, c, &client, &env, recorded_at).map_err(cassette_err)?;
    }
    write(
        store,
        &spec.table_key,
        &batch,
        MetricType::LlmAlert,
        &report.alerts,
    )
    .map_err(|e| JobError::of(spec)(e.into()))?;
    Ok(report)
}

/// Ask about each metric in turn: one metric's failure is noted and the
/// next is asked; a spent budget stops the run. Fails only when a replay
/// meets a question its cassette does not hold: that is not the run
/// recorded, and it stores nothing.
fn ask_each_metric(
    spec: &BatchSpec,
    input: &JobInput,
    client: &mut Client,
    opts: &LlmAlertOptions<'_>,
    report: &mut LlmAlertReport,
) -> Result<(), String> {
    let batch = &spec.metric_batch;
    let mut asking = ask::Asking {
        spec,
        client,
        opts,
        report,
    };
    for (metric, series) in &input.series {
        if spec.llmalert.exclude_metrics.contains(metric) {
            continue;
        }
        match asking.metric(metric, series, input.done.get(metric)) {
            Ok(found) => asking.report.alerts.extend(found),
            Err(LlmError::NotInCassette(message)) => {
                return Err(format!("llmalert metric {metric}: {message}"))
            }
            Err(e) if e.stops_the_run() => {
                tracing::warn!(batch = %batch, metric = %metric, error = %e, "llmalert stopped");
                asking.report.stopped = Some(format!("stopped at metric {metric}: {e}"));
                break;
            }
            Err(e) => {
                tracing::warn!(batch = %batch, metric = %metric, error = %e, "llmalert could not judge a metric");
                asking.report.problems.push(format!("metric {metric}: {e}"));
            }
        }
    }
    Ok(())
}

/// What a run would ask, asking nothing (no key needed).
fn preview(spec: &BatchSpec, input: &JobInput, endpoint: Option<Endpoint>) -> LlmAlertReport {
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
        let open = ask::eligible(&points, spec, input.done.get(metric)).len();
        if open == 0 {
            continue;
        }
        // Counted as an image; its bytes do not matter here.
        let image = spec.llmalert.include_plot.then_some(&[0u8][..]);
        let text = prompt::detection_text(ask::detection_prompt(spec), metric, &points);
        let req = ask::question(text, image, &schema);
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

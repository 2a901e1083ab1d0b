//! One place that runs any stored-data job of a batch (everything but
//! ingest, which takes its own options) and delivers what it produced: used
//! by the scheduler's runner and by the command line, which only differ in
//! what they do with the outcome. It sits with delivery, above the jobs, so
//! the jobs never import the channels that carry their results.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::record_batch::RecordBatch;

use super::notify::{self, NotifyReport};
use crate::alerts::Channels;
use crate::config::{BatchSpec, Job};
use crate::domain::Judgement;
use crate::drawing;
use crate::jobs::alert::AlertReport;
use crate::jobs::ingest::recording::CassetteOptions;
use crate::jobs::llmalert::{self, LlmAlertError, LlmAlertOptions, LlmAlertReport};
use crate::jobs::score::ScoreReport;
use crate::jobs::train::TrainReport;
use crate::jobs::{alert, change, maintenance, score, train};
use crate::store::Store;

/// Where a job's side effects go.
pub struct JobContext<'a> {
    /// What `local://` model paths are relative to.
    pub model_base: &'a Path,
    /// Where the plot job writes its PNGs.
    pub plot_dir: &'a Path,
    /// Alert channels; None sends nothing (backfills).
    pub channels: Option<&'a Channels>,
    /// The operator's environment: the chat model llmalert calls.
    pub env: &'a BTreeMap<String, String>,
    /// How llmalert runs.
    pub llmalert: LlmAlertMode,
}

/// How an llmalert run goes, beyond the batch's settings.
#[derive(Debug, Clone, Default)]
pub struct LlmAlertMode {
    /// Where it records or replays its exchanges.
    pub cassette: Option<CassetteOptions>,
    /// Ask nothing; preview the questions.
    pub dry_run: bool,
}

/// What a job did.
#[derive(Debug)]
pub enum JobOutcome {
    Trained(TrainReport),
    Scored(ScoreReport),
    Alerted(AlertReport, NotifyReport),
    Changed(Vec<Judgement>, NotifyReport),
    Plotted(Vec<std::path::PathBuf>),
    Deleted(u64),
    Summarised(Vec<RecordBatch>, NotifyReport),
    LlmAlerted(LlmAlertReport, NotifyReport),
}

impl JobOutcome {
    /// The rows (models, scores, judgements, files...) the job produced.
    pub fn rows(&self) -> u64 {
        match self {
            JobOutcome::Trained(r) => r.trained.len() as u64,
            JobOutcome::Scored(r) => r.scored as u64,
            JobOutcome::Alerted(r, _) => (r.alerts.len() + r.threshold_alerts.len()) as u64,
            JobOutcome::Changed(c, _) => c.len() as u64,
            JobOutcome::Plotted(files) => files.len() as u64,
            JobOutcome::Deleted(n) => *n,
            JobOutcome::Summarised(b, _) => b.iter().map(|b| b.num_rows() as u64).sum(),
            JobOutcome::LlmAlerted(r, _) => r.alerts.len() as u64,
        }
    }

    /// What was sent, for the jobs that send.
    pub fn sent(&self) -> Option<&NotifyReport> {
        match self {
            JobOutcome::Alerted(_, s)
            | JobOutcome::Changed(_, s)
            | JobOutcome::Summarised(_, s)
            | JobOutcome::LlmAlerted(_, s) => Some(s),
            _ => None,
        }
    }
}

/// A job's error, with its cause chain kept for the command line.
pub type DispatchError = Box<dyn std::error::Error + Send + Sync>;

/// A job stopped by `job_timeout_s`; whatever it was writing was rolled
/// back.
#[derive(Debug, thiserror::Error)]
#[error("batch {batch}: the {job} job ran past job_timeout_s={seconds} and was stopped; nothing it was writing was stored")]
pub struct TimedOut {
    pub batch: String,
    pub job: &'static str,
    pub seconds: f64,
}

/// Run `work` within the batch's `job_timeout_s`.
fn within_limit<T, E>(
    spec: &BatchSpec,
    job: Job,
    store: &mut Store,
    work: impl FnOnce(&mut Store) -> Result<T, E>,
) -> Result<T, DispatchError>
where
    E: Into<DispatchError>,
{
    let limit = std::time::Duration::from_secs_f64(spec.jobs.timeout_s);
    match store.with_time_limit(limit, work) {
        (Ok(v), _) => Ok(v),
        (Err(_), true) => Err(Box::new(TimedOut {
            batch: spec.metric_batch.clone(),
            job: job.name(),
            seconds: spec.jobs.timeout_s,
        })),
        (Err(e), false) => Err(e.into()),
    }
}

/// Run `job` of `spec` within its `job_timeout_s`, then deliver what it
/// produced (delivery has its own timeouts). Ingest is not run here.
/// llmalert keeps its own clock: its time goes to the chat model, not to
/// the database, and what it confirmed before the limit is kept.
pub fn run(
    spec: &BatchSpec,
    store: &mut Store,
    job: Job,
    ctx: &JobContext<'_>,
) -> Result<JobOutcome, DispatchError> {
    let send = |f: &dyn Fn(&Channels) -> NotifyReport| ctx.channels.map(f).unwrap_or_default();
    let base = ctx.model_base;
    match job {
        Job::Train => Ok(JobOutcome::Trained(within_limit(spec, job, store, |s| {
            train::run(spec, s, base)
        })?)),
        Job::Score => Ok(JobOutcome::Scored(within_limit(spec, job, store, |s| {
            score::run(spec, s, base)
        })?)),
        Job::Alert => {
            let r = within_limit(spec, job, store, |s| alert::run(spec, s))?;
            let sent = send(&|c| notify::alerts(spec, store, &r, c));
            Ok(JobOutcome::Alerted(r, sent))
        }
        Job::Change => {
            let r = within_limit(spec, job, store, |s| change::run(spec, s))?;
            let sent = send(&|c| notify::changes(spec, store, &r, c));
            Ok(JobOutcome::Changed(r, sent))
        }
        Job::Plot => Ok(JobOutcome::Plotted(within_limit(spec, job, store, |s| {
            notify::write_plots(spec, s, ctx.plot_dir)
        })?)),
        Job::Delete => Ok(JobOutcome::Deleted(within_limit(spec, job, store, |s| {
            maintenance::delete(spec, s)
        })?)),
        Job::Summary => {
            let b = within_limit(spec, job, store, |s| {
                maintenance::summary(std::iter::once(spec), s)
            })?;
            let sent = send(&|c| notify::summary(&spec.metric_batch, &spec.alert.methods, &b, c));
            Ok(JobOutcome::Summarised(b, sent))
        }
        Job::Llmalert => {
            let plot = |metric: &str, series: &crate::domain::Series| {
                drawing::render_png(&spec.metric_batch, metric, series, spec.alert.threshold)
                    .map_err(|e| tracing::warn!("batch {}: {e}", spec.metric_batch))
                    .ok()
            };
            let opts = LlmAlertOptions {
                env: ctx.env,
                cassette: ctx.llmalert.cassette.clone(),
                plot: &plot,
                dry_run: ctx.llmalert.dry_run,
            };
            let r = llmalert::run(spec, store, &opts).map_err(|e| -> DispatchError {
                match e {
                    LlmAlertError::TimedOut { batch } => Box::new(TimedOut {
                        batch,
                        job: job.name(),
                        seconds: spec.jobs.timeout_s,
                    }),
                    e => Box::new(e),
                }
            })?;
            let sent = send(&|c| notify::llm_alerts(spec, store, &r.alerts, c));
            Ok(JobOutcome::LlmAlerted(r, sent))
        }
        Job::Ingest => Err("the ingest job is not run here: it has its own entry point".into()),
    }
}

//! One place that runs any stored-data job of a batch (everything but
//! ingest, which takes its own options) and delivers what it produced: used
//! by the scheduler's runner and by the command line, which only differ in
//! what they do with the outcome. It sits with delivery, above the jobs, so
//! the jobs never import the channels that carry their results.

use super::context::JobContext;
use super::notify::{self, NotifyReport};
use super::outcome::JobOutcome;
use crate::alerts::Channels;
use crate::config::{BatchSpec, Job};
use crate::drawing;
use crate::jobs::llmalert::{self, LlmAlertError, LlmAlertOptions};
use crate::jobs::{alert, change, maintenance, score, train};
use crate::store::Store;

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

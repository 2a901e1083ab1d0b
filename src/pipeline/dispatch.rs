//! The one place that runs a job of a batch, ingest included, and delivers
//! what it produced: the scheduler's runner, the command line and backfill
//! all come here, and differ only in the context they give and what they do
//! with the outcome. It sits above the jobs and delivery, so the jobs never
//! import the channels that carry their results.

use super::context::JobContext;
use super::error::DispatchError;
use super::notify::{self, NotifyReport};
use super::outcome::JobOutcome;
use crate::alerts::Channels;
use crate::config::{BatchSpec, Job};
use crate::drawing;
use crate::jobs::ingest::{self, IngestOptions};
use crate::jobs::llmalert::{self, LlmAlertError, LlmAlertOptions};
use crate::jobs::{alert, change, maintenance, plot, score, train};
use crate::store::Store;

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
        (Err(_), true) => Err(timed_out(spec, job)),
        (Err(e), false) => Err(e.into()),
    }
}

fn timed_out(spec: &BatchSpec, job: Job) -> DispatchError {
    DispatchError::TimedOut {
        batch: spec.metric_batch.clone(),
        job: job.name(),
        seconds: spec.jobs.timeout_s,
    }
}

/// Threshold alerts right after a live ingest stored rows, as Anomstack
/// raises them (so a batch with only ingest scheduled, or `disable_alert`,
/// still gets them). Not for a dry run, nor for a run at a simulated time
/// (a backfill or a caught-up tick: history is not news), nor where there
/// is nothing to send them with (`sandstack ingest` by hand: the alert
/// job raises and sends them instead). The rows are stored whatever
/// happens here: a failed check is logged, and the alert job's next check
/// finds the breach.
fn thresholds_at_ingest(
    spec: &BatchSpec,
    store: &mut Store,
    ctx: &JobContext<'_>,
    ingested: &ingest::IngestReport,
) -> Vec<crate::domain::Judgement> {
    if !spec.tholdalert.checks_anything()
        || ctx.mode.dry_run
        || ctx.mode.simulated_now_us.is_some()
        || ctx.channels.is_none()
        || ingested.stored == 0
    {
        return Vec::new();
    }
    match within_limit(spec, Job::Alert, store, |s| alert::threshold_run(spec, s)) {
        Ok(raised) => raised,
        Err(e) => {
            tracing::error!(batch = %spec.metric_batch, error = %e, "threshold alerts after ingest failed; the alert job checks again");
            Vec::new()
        }
    }
}

/// Run `job` of `spec`, then deliver what it produced (delivery has its own
/// timeouts). Ingest is bounded by its own `ingest_timeout_s`, the jobs on
/// stored data by `job_timeout_s`; llmalert keeps its own clock: its time
/// goes to the chat model, not to the database, and what it confirmed
/// before the limit is kept.
pub fn run(
    spec: &BatchSpec,
    store: &mut Store,
    job: Job,
    ctx: &JobContext<'_>,
) -> Result<JobOutcome, DispatchError> {
    // The job's SQL reads the run's clock: the tick's time for a replayed or
    // caught-up run, the real one otherwise.
    let real = store.set_clock(ctx.mode.simulated_now_us);
    let out = run_job(spec, store, job, ctx);
    store.set_clock(real);
    out
}

fn run_job(
    spec: &BatchSpec,
    store: &mut Store,
    job: Job,
    ctx: &JobContext<'_>,
) -> Result<JobOutcome, DispatchError> {
    let send = |f: &dyn Fn(&Channels) -> NotifyReport| ctx.channels.map(f).unwrap_or_default();
    let base = ctx.model_base;
    match job {
        Job::Ingest => {
            let opts = IngestOptions {
                dry_run: ctx.mode.dry_run,
                cassette: ctx.mode.cassette.clone(),
                simulated_now_us: ctx.mode.simulated_now_us,
            };
            let r = ingest::run(spec, store, ctx.sandboxes, ctx.env, opts)
                .map_err(DispatchError::Ingest)?;
            let raised = alert::AlertReport {
                alerts: Vec::new(),
                threshold_alerts: thresholds_at_ingest(spec, store, ctx, &r),
            };
            let sent = if raised.threshold_alerts.is_empty() {
                NotifyReport::default()
            } else {
                send(&|c| notify::alerts(spec, store, &raised, c))
            };
            Ok(JobOutcome::Ingested(
                Box::new(r),
                raised.threshold_alerts,
                sent,
            ))
        }
        Job::Train => Ok(JobOutcome::Trained(within_limit(spec, job, store, |s| {
            train::run(spec, s, base, ctx.env)
        })?)),
        Job::Score => Ok(JobOutcome::Scored(within_limit(spec, job, store, |s| {
            score::run(spec, s, base, ctx.env)
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
            plot::write_plots(spec, s, ctx.plot_dir)
        })?)),
        Job::Delete => Ok(JobOutcome::Deleted(within_limit(spec, job, store, |s| {
            maintenance::delete(spec, s)
        })?)),
        // The scheduled summary: the folder's one, across every batch.
        Job::Summary if !ctx.peers.is_empty() => {
            let specs: Vec<&BatchSpec> = ctx.peers.iter().map(|p| p.as_ref()).collect();
            let now = store
                .clock()
                .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
            let s = within_limit(spec, job, store, |st| {
                Ok::<_, crate::store::StoreError>(maintenance::folder_summary(&specs, st, now))
            })?;
            let sent = send(&|c| notify::folder_summary(&spec.alert.methods, &s, c));
            Ok(JobOutcome::Summarised(s.rows(), sent))
        }
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
                    .map_err(|e| {
                        tracing::warn!(batch = %spec.metric_batch, error = %e, "no plot for the chat model")
                    })
                    .ok()
            };
            let opts = LlmAlertOptions {
                env: ctx.env,
                cassette: ctx.mode.cassette.clone(),
                plot: &plot,
                dry_run: ctx.mode.dry_run,
            };
            let r = llmalert::run(spec, store, &opts).map_err(|e| match e {
                LlmAlertError::TimedOut { .. } => timed_out(spec, job),
                e => DispatchError::LlmAlert(e),
            })?;
            let sent = send(&|c| notify::llm_alerts(spec, store, &r.alerts, c));
            Ok(JobOutcome::LlmAlerted(r, sent))
        }
    }
}

//! One place that runs any stored-data job of a batch (everything but
//! ingest, which takes its own options) and delivers what it produced: used
//! by the scheduler's runner and by the command line, which only differ in
//! what they do with the outcome. It sits with delivery, above the jobs, so
//! the jobs never import the channels that carry their results.

use std::path::Path;

use arrow::record_batch::RecordBatch;

use super::notify::{self, NotifyReport};
use super::Channels;
use crate::config::{BatchSpec, Job};
use crate::domain::Judgement;
use crate::jobs::alert::AlertReport;
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
        }
    }

    /// What was sent, for the jobs that send.
    pub fn sent(&self) -> Option<&NotifyReport> {
        match self {
            JobOutcome::Alerted(_, s)
            | JobOutcome::Changed(_, s)
            | JobOutcome::Summarised(_, s) => Some(s),
            _ => None,
        }
    }
}

/// A job's error, with its cause chain kept for the command line.
pub type DispatchError = Box<dyn std::error::Error + Send + Sync>;

/// Run `job` of `spec`. Ingest and llmalert are not run here.
pub fn run(
    spec: &BatchSpec,
    store: &mut Store,
    job: Job,
    ctx: &JobContext<'_>,
) -> Result<JobOutcome, DispatchError> {
    let send = |f: &dyn Fn(&Channels) -> NotifyReport| ctx.channels.map(f).unwrap_or_default();
    match job {
        Job::Train => Ok(JobOutcome::Trained(train::run(spec, store, ctx.model_base)?)),
        Job::Score => Ok(JobOutcome::Scored(score::run(spec, store, ctx.model_base)?)),
        Job::Alert => {
            let r = alert::run(spec, store)?;
            let sent = send(&|c| notify::alerts(spec, store, &r, c));
            Ok(JobOutcome::Alerted(r, sent))
        }
        Job::Change => {
            let r = change::run(spec, store)?;
            let sent = send(&|c| notify::changes(spec, store, &r, c));
            Ok(JobOutcome::Changed(r, sent))
        }
        Job::Plot => Ok(JobOutcome::Plotted(notify::write_plots(spec, store, ctx.plot_dir)?)),
        Job::Delete => Ok(JobOutcome::Deleted(maintenance::delete(spec, store)?)),
        Job::Summary => {
            let b = maintenance::summary(std::iter::once(spec), store)?;
            let sent = send(&|c| notify::summary(&spec.metric_batch, &spec.alert.methods, &b, c));
            Ok(JobOutcome::Summarised(b, sent))
        }
        Job::Ingest | Job::Llmalert => Err(format!(
            "the {} job is not run here (ingest has its own entry point; llmalert is not supported)",
            job.name()
        )
        .into()),
    }
}

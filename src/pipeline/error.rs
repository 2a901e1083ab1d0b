//! Why a job did not run to its end, typed, so the scheduler records the
//! right status and the command line says the whole chain of causes.

use crate::jobs::ingest::{IngestFailure, SandboxDetails};
use crate::jobs::llmalert::LlmAlertError;
use crate::jobs::plot::PlotError;
use crate::jobs::rows::JobError;
use crate::store::{RunStatus, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Stopped by `job_timeout_s`; whatever it was writing was rolled back.
    #[error("batch {batch}: the {job} job ran past job_timeout_s={seconds} and was stopped; nothing it was writing was stored")]
    TimedOut {
        batch: String,
        job: &'static str,
        seconds: f64,
    },
    /// An ingest, with what its Python printed and logged before it failed.
    #[error(transparent)]
    Ingest(Box<IngestFailure>),
    #[error(transparent)]
    Job(#[from] JobError),
    /// llmalert's own errors; without a configured chat model the job is
    /// skipped rather than failed.
    #[error(transparent)]
    LlmAlert(LlmAlertError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DispatchError {
    /// The status a scheduled run that ended this way is recorded with.
    pub fn status(&self) -> RunStatus {
        match self {
            DispatchError::TimedOut { .. } => RunStatus::TimedOut,
            DispatchError::Ingest(f) if f.error.is_timeout() => RunStatus::TimedOut,
            DispatchError::LlmAlert(LlmAlertError::NotConfigured { .. }) => RunStatus::Skipped,
            _ => RunStatus::Failed,
        }
    }

    /// Whether trying the tick again could pass (`ingest_retries`).
    pub fn can_pass(&self) -> bool {
        match self {
            DispatchError::Ingest(f) => f.error.can_pass(),
            _ => false,
        }
    }

    /// A Python ingest's figures, output and logs, up to its failure.
    pub fn sandbox(&self) -> Option<&SandboxDetails> {
        match self {
            DispatchError::Ingest(f) => f.sandbox.as_ref(),
            _ => None,
        }
    }
}

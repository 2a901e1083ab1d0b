//! What a job did: its report, and what it sent.

use arrow::record_batch::RecordBatch;

use super::notify::NotifyReport;
use crate::domain::Judgement;
use crate::jobs::alert::AlertReport;
use crate::jobs::ingest::{IngestReport, SandboxDetails};
use crate::jobs::llmalert::LlmAlertReport;
use crate::jobs::score::ScoreReport;
use crate::jobs::train::TrainReport;

/// What a job did.
#[derive(Debug)]
pub enum JobOutcome {
    /// The rows stored, and the threshold alerts raised on them and sent.
    Ingested(Box<IngestReport>, Vec<Judgement>, NotifyReport),
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
            JobOutcome::Ingested(r, ..) => r.stored as u64,
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

    /// A Python ingest's figures, output and logs.
    pub fn sandbox(&self) -> Option<&SandboxDetails> {
        match self {
            JobOutcome::Ingested(r, ..) => r.sandbox.as_ref(),
            _ => None,
        }
    }

    /// What was sent, for the jobs that send.
    pub fn sent(&self) -> Option<&NotifyReport> {
        match self {
            JobOutcome::Ingested(_, _, s)
            | JobOutcome::Alerted(_, s)
            | JobOutcome::Changed(_, s)
            | JobOutcome::Summarised(_, s)
            | JobOutcome::LlmAlerted(_, s) => Some(s),
            _ => None,
        }
    }
}

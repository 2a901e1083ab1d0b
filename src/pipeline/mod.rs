//! Running a batch's jobs: the one floor the scheduler, the command line
//! and backfill go through to run a job and deliver what it produced.
//! [`dispatch`] runs a job within its limits, [`notify`] turns its results
//! into messages for [`crate::alerts`], [`describe`] puts what it did into
//! words, and [`backfill`] ingests past periods.

pub mod backfill;
pub mod context;
pub mod describe;
pub mod dispatch;
pub mod notify;
pub mod outcome;

pub use context::{JobContext, LlmAlertMode};
pub use dispatch::{DispatchError, TimedOut};
pub use outcome::JobOutcome;

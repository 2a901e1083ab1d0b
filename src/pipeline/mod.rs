//! Running a batch's jobs: the one floor the scheduler, the command line
//! and backfill go through to run a job and deliver what it produced.
//! [`dispatch`] runs a job within its limits ([`error`] says why it did
//! not), [`notify`] turns its results
//! into messages for [`crate::alerts`], [`describe`] puts what it did into
//! words, and [`backfill`] ingests past periods.

pub mod backfill;
pub mod backtest;
pub mod context;
pub mod describe;
pub mod dispatch;
pub mod error;
pub mod notify;
pub mod outcome;

pub use context::{JobContext, RunMode};
pub use error::DispatchError;
pub use outcome::JobOutcome;

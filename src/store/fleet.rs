//! Several workers sharing one store: each tick of each (batch, job) is
//! claimed by one worker before it runs, the claim is a lease the worker
//! keeps renewing (its heartbeat), and a lease that runs out is taken over
//! by another worker, which records the run as interrupted. A store only
//! one process can open (DuckDB) has nothing to share: every tick is its
//! own.

use std::time::Duration;

use serde::Serialize;

use super::StoreError;

/// What claiming a tick found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This worker runs it.
    Mine,
    /// This worker has it, but an earlier tick of the same job is still
    /// running somewhere in the fleet: record it as skipped.
    Busy { worker: String },
    /// Another worker claimed it first.
    Taken { worker: String },
}

/// One worker of the fleet, as it registers.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub worker: String,
    pub host: String,
    pub pid: u32,
}

/// One worker as the fleet sees it. Instants are µs since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerRow {
    pub worker: String,
    pub host: String,
    pub pid: u32,
    pub started_us: i64,
    pub heartbeat_us: i64,
    /// Set when it shut down cleanly.
    pub stopped_us: Option<i64>,
    /// Ticks it holds a lease on now.
    pub running: i64,
}

/// A run taken over from a worker whose lease ran out.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenOver {
    pub batch: String,
    pub job: String,
    pub scheduled_us: i64,
    /// The worker that stopped renewing its lease.
    pub worker: String,
}

pub trait FleetStore {
    /// Whether several workers may share this store.
    fn shared(&self) -> bool;

    /// Announce (or re-announce) a worker.
    fn register_worker(&self, w: &WorkerInfo) -> Result<(), StoreError>;

    /// Claim a tick for `worker` with a lease of `lease`.
    fn claim_tick(
        &self,
        worker: &str,
        batch: &str,
        job: &str,
        scheduled_us: i64,
        lease: Duration,
    ) -> Result<Claim, StoreError>;

    /// Record a claimed tick's last run and end its claim, in one
    /// transaction, so a worker killed between the two cannot leave a run
    /// recorded and its claim open for another worker to record again.
    /// If another worker already took the run over (this worker outlived
    /// its lease), its `interrupted` record is replaced by this one.
    /// Returns the run's id.
    fn record_claimed_run(&self, run: &super::RunRecord) -> Result<i64, StoreError>;

    /// The tick's lease ends (no run to record with it). False when the
    /// lease had already run out and another worker took the run over.
    fn finish_tick(
        &self,
        worker: &str,
        batch: &str,
        job: &str,
        scheduled_us: i64,
    ) -> Result<bool, StoreError>;

    /// Renew `worker`'s heartbeat and the leases of the ticks it still
    /// runs, `held` (batch, job, tick µs): only those, so a claim the
    /// worker lost track of runs out and is taken over.
    fn heartbeat(
        &self,
        worker: &str,
        lease: Duration,
        held: &[(String, String, i64)],
    ) -> Result<(), StoreError>;

    /// Every running tick whose lease ran out, marked interrupted and
    /// recorded in the run history as such, in one transaction, by
    /// `worker` (so exactly one worker records each).
    fn take_over_expired(&self, worker: &str) -> Result<Vec<TakenOver>, StoreError>;

    /// `worker` shut down cleanly.
    fn worker_stopped(&self, worker: &str) -> Result<(), StoreError>;

    /// The workers that have heartbeated within `within`, and those that
    /// stopped in it, newest first.
    fn workers(&self, within: Duration) -> Result<Vec<WorkerRow>, StoreError>;

    /// Forget claims older than `max_age` (their runs are in the history).
    fn prune_ticks(&self, max_age: Duration) -> Result<u64, StoreError>;
}

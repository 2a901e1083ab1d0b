//! This worker's part in a fleet sharing one store (PostgreSQL): every
//! tick is claimed before it runs, so each runs on exactly one worker; a
//! heartbeat renews this worker's leases, takes over the runs of workers
//! whose leases ran out (recording them as interrupted), and reads the
//! fleet's paused batches. With a store only this process opens (DuckDB),
//! there is no fleet and the scheduler claims nothing.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use std::sync::Arc;

use tokio::sync::mpsc;

use super::attempts::unfinished;
use super::clock::Clock;
use super::controls::Paused;
use super::plan::JobKey;
use super::runner::RunLog;
use super::Done;
use crate::store::{Claim, RunStatus, Store, StoreError, WorkerInfo};

/// How long claims are kept after their tick (runs are in the history).
pub const KEEP_TICKS: Duration = Duration::from_secs(86_400);

/// How often a worker forgets the claims older than [`KEEP_TICKS`].
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Fleet {
    store: Mutex<Store>,
    pub worker: String,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    last_prune: Mutex<Option<Instant>>,
    /// The ticks this worker claimed and runs now: the heartbeat renews
    /// these only.
    held: Mutex<HashSet<(String, String, i64)>>,
}

/// What a heartbeat did.
#[derive(Debug, Default)]
pub struct Beat {
    /// Runs of silent workers this worker recorded as interrupted.
    pub taken_over: Vec<crate::store::TakenOver>,
    /// The fleet's paused batches.
    pub paused: std::collections::BTreeSet<String>,
}

/// `host:pid`, unless the operator names the worker.
pub fn default_worker_name() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Fleet {
    /// Join the fleet of `store`, or None when the store is not shared.
    pub fn join(
        store: Store,
        worker: String,
        lease: Duration,
    ) -> Result<Option<Fleet>, StoreError> {
        if !store.shared() {
            return Ok(None);
        }
        store.register_worker(&WorkerInfo {
            worker: worker.clone(),
            host: host_name(),
            pid: std::process::id(),
        })?;
        Ok(Some(Fleet {
            store: Mutex::new(store),
            worker,
            lease,
            last_prune: Mutex::new(None),
            held: Mutex::new(HashSet::new()),
        }))
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection of its own from the pool, so ticks due together are
    /// claimed at once rather than one after another on one connection.
    fn connection(&self) -> Result<Store, StoreError> {
        self.store().try_clone()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String, i64)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claim a tick (blocking); one won is held until [`Fleet::release`].
    pub fn claim(&self, key: &JobKey, tick: DateTime<Utc>) -> Result<Claim, StoreError> {
        let at = tick.timestamp_micros();
        let claim =
            self.connection()?
                .claim_tick(&self.worker, &key.0, key.1.name(), at, self.lease)?;
        if claim == Claim::Mine {
            self.held()
                .insert((key.0.clone(), key.1.name().to_string(), at));
        }
        Ok(claim)
    }

    /// This worker is done with a tick it claimed (its run is recorded,
    /// or it gave up on it): its lease is no longer renewed.
    pub fn release(&self, key: &JobKey, tick: DateTime<Utc>) {
        self.held().remove(&(
            key.0.clone(),
            key.1.name().to_string(),
            tick.timestamp_micros(),
        ));
    }

    /// A claimed tick's run is recorded (blocking).
    pub fn finish(&self, key: &JobKey, tick: DateTime<Utc>) {
        let finished = self.connection().and_then(|s| {
            s.finish_tick(&self.worker, &key.0, key.1.name(), tick.timestamp_micros())
        });
        match finished {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                batch = %key.0,
                job = key.1.name(),
                tick = %tick.format("%H:%M:%S"),
                lease_s = self.lease.as_secs(),
                "the run outlived this worker's lease (no heartbeat for lease_s); \
                 another worker has already recorded it as interrupted"
            ),
            Err(e) => {
                tracing::error!(batch = %key.0, job = key.1.name(), error = %e, "ending the claim failed")
            }
        }
    }

    /// Renew leases, take over expired ones, read the paused batches, and
    /// now and then forget old claims (blocking).
    pub fn beat(&self) -> Result<Beat, StoreError> {
        let held: Vec<(String, String, i64)> = self.held().iter().cloned().collect();
        let store = self.store();
        store.heartbeat(&self.worker, self.lease, &held)?;
        let taken_over = store.take_over_expired(&self.worker)?;
        let paused = store.paused_batches()?;
        let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            *last = Some(Instant::now());
            match store.prune_ticks(KEEP_TICKS) {
                Ok(0) => {}
                Ok(n) => tracing::info!(claims = n, "fleet: forgot claims older than a day"),
                Err(e) => tracing::warn!(error = %e, "fleet: forgetting old claims failed"),
            }
        }
        Ok(Beat { taken_over, paused })
    }

    /// This worker is leaving (blocking).
    pub fn leave(&self) {
        if let Err(e) = self.store().worker_stopped(&self.worker) {
            tracing::warn!(worker = %self.worker, error = %e, "fleet: could not record this worker leaving");
        }
    }
}

/// In a fleet, claim a tick before running it. Returns whether this
/// worker runs it; if not, the tick's end is reported here: recorded as
/// skipped (an earlier run of the job is going on another worker), or
/// nothing (another worker has it, or it could not be claimed).
pub(super) async fn claim_first(
    fleet: &Arc<Fleet>,
    key: &JobKey,
    scheduled: DateTime<Utc>,
    log: &Arc<dyn RunLog>,
    clock: &dyn Clock,
    done: &mpsc::UnboundedSender<Done>,
) -> bool {
    let (f, k) = (fleet.clone(), key.clone());
    let claimed = tokio::task::spawn_blocking(move || f.claim(&k, scheduled)).await;
    let busy = match claimed {
        Ok(Ok(Claim::Mine)) => return true,
        Ok(Ok(Claim::Busy { worker })) => worker,
        Ok(Ok(Claim::Taken { .. })) => {
            let _ = done.send((key.clone(), None));
            return false;
        }
        Ok(Err(e)) => {
            tracing::error!(
                batch = %key.0,
                job = key.1.name(),
                tick = %scheduled.format("%H:%M:%S"),
                error = %e,
                "tick not run: it could not be claimed"
            );
            let _ = done.send((key.clone(), None));
            return false;
        }
        Err(e) => {
            tracing::error!(batch = %key.0, job = key.1.name(), error = %e, "claiming panicked");
            let _ = done.send((key.clone(), None));
            return false;
        }
    };
    let mut r = unfinished(
        key,
        [scheduled, clock.now(), clock.now()],
        RunStatus::Skipped,
        format!("the previous run of this job was still going on worker {busy}"),
        Some(fleet.worker.clone()),
    );
    let (l, rec) = (log.clone(), r.clone());
    r.run_id = tokio::task::spawn_blocking(move || l.record_claimed(&rec))
        .await
        .unwrap_or(0);
    let _ = done.send((key.clone(), Some(r)));
    false
}

/// Every third of the lease: renew it, take over silent workers' runs,
/// and follow the fleet's pauses.
pub(super) async fn heartbeats(fleet: Arc<Fleet>, paused: Paused) {
    let every = (fleet.lease / 3).max(Duration::from_millis(100));
    loop {
        let f = fleet.clone();
        match tokio::task::spawn_blocking(move || f.beat()).await {
            Ok(Ok(beat)) => {
                for t in &beat.taken_over {
                    tracing::warn!(
                        batch = %t.batch,
                        job = %t.job,
                        worker = %t.worker,
                        tick = %chrono::DateTime::from_timestamp_micros(t.scheduled_us)
                            .map(|d| d.format("%H:%M:%S").to_string())
                            .unwrap_or_default(),
                        "a worker stopped renewing its lease on a run; recorded as interrupted"
                    );
                }
                if let Ok(mut p) = paused.write() {
                    *p = beat.paused;
                }
            }
            Ok(Err(e)) => {
                tracing::error!(worker = %fleet.worker, error = %e, "fleet heartbeat failed")
            }
            Err(e) => {
                tracing::error!(worker = %fleet.worker, error = %e, "fleet heartbeat panicked")
            }
        }
        tokio::time::sleep(every).await;
    }
}

//! What a scheduled tick does: [`StoreRunner`] runs the batch's job through
//! the pipeline (`pipeline::dispatch`, with a store connection of its own
//! per run) and turns the outcome into a [`RunResult`]; [`StoreRunLog`]
//! writes it to the run history (DuckDB or PostgreSQL). Both are behind
//! traits so scheduler tests can count, block and fail runs at will.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::alerts::message::{FailureFacts, Message, RunFailure};
use crate::alerts::{deliver, deliver_failure_email, Channels, Outcome};
use crate::cassette::RecordMode;
use crate::config::{BatchSpec, Job};
use crate::jobs::ingest::{recording::CassetteOptions, SandboxSource};
use crate::pipeline::describe::describe;
use crate::pipeline::{dispatch, DispatchError, JobContext, JobOutcome, RunMode};
use crate::scheduler::failures::{counts, FailureStreaks, Notice};
use crate::store::{Retention, RunRecord, RunStatus, Store, StoreError};

/// One tick of one job.
#[derive(Debug, Clone)]
pub struct RunTicket {
    pub spec: Arc<BatchSpec>,
    pub job: Job,
    pub scheduled: DateTime<Utc>,
    /// A tick missed while the process was down (`catch_up: true`):
    /// ingest runs with its clock at the tick.
    pub catch_up: bool,
    /// 1, or which retry of the tick this is (`ingest_retries`).
    pub attempt: u32,
    /// For the folder's summary (a scheduled summary job): every batch it
    /// covers; empty for any other run.
    pub peers: Vec<Arc<BatchSpec>>,
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: RunStatus,
    pub error: Option<String>,
    pub rows: u64,
    pub fuel: u64,
    pub cassette: Option<String>,
    /// What the run printed and logged, or what the job did.
    pub log: Option<String>,
    /// The failure could pass: the tick may be tried again (`ingest_retries`).
    pub can_pass: bool,
}

impl RunResult {
    pub fn ok(rows: u64) -> Self {
        RunResult {
            status: RunStatus::Succeeded,
            error: None,
            rows,
            fuel: 0,
            cassette: None,
            log: None,
            can_pass: false,
        }
    }

    pub fn failed(error: impl Into<String>) -> Self {
        RunResult {
            status: RunStatus::Failed,
            error: Some(error.into()),
            rows: 0,
            fuel: 0,
            cassette: None,
            log: None,
            can_pass: false,
        }
    }
}

/// Runs a ticket to completion (blocking; called on a worker thread).
pub trait JobRunner: Send + Sync + 'static {
    fn run(&self, ticket: &RunTicket) -> RunResult;

    /// A tick's last attempt is recorded (blocking; on a worker thread).
    fn finished(&self, _ticket: &RunTicket, _record: &RunRecord) {}
}

/// Where finished runs are written.
pub trait RunLog: Send + Sync + 'static {
    /// Store a run; returns its id (0 if it could not be stored).
    fn record(&self, record: &RunRecord) -> i64;
    /// Store a tick's last run and, when its worker claimed it in a shared
    /// store, end the claim in the same transaction.
    fn record_claimed(&self, record: &RunRecord) -> i64 {
        self.record(record)
    }
    /// Drop history beyond the retention setting.
    fn prune(&self, now: DateTime<Utc>);
}

/// The run history in the DuckDB file.
pub struct StoreRunLog {
    store: Mutex<Store>,
    retention: Retention,
}

impl StoreRunLog {
    pub fn new(store: Store, retention: Retention) -> Self {
        StoreRunLog {
            store: Mutex::new(store),
            retention,
        }
    }
}

impl StoreRunLog {
    /// Record `record`, ending its claim too when `claimed` and the store
    /// is shared.
    fn write(&self, record: &RunRecord, claimed: bool) -> i64 {
        let held = self.store.lock().unwrap_or_else(|p| p.into_inner());
        // A shared store's runs are recorded on connections of their own
        // (from its pool), at once; a file's on the one connection.
        let own = if held.shared() {
            held.try_clone().ok()
        } else {
            None
        };
        let recorded = match own {
            Some(store) => {
                drop(held);
                if claimed && record.worker.is_some() {
                    store.record_claimed_run(record)
                } else {
                    store.record_run(record)
                }
            }
            None => held.record_run(record),
        };
        match recorded {
            Ok(id) => {
                let worked = !matches!(record.status, RunStatus::Skipped | RunStatus::Interrupted);
                crate::telemetry::global().run_recorded(&crate::telemetry::RecordedRun {
                    batch: &record.batch,
                    job: &record.job,
                    status: record.status.as_str(),
                    worked,
                    seconds: record.wall_ms / 1e3,
                    lag_seconds: (record.started_us - record.scheduled_us) as f64 / 1e6,
                    rows: record.rows,
                    fuel: record.fuel,
                });
                id
            }
            Err(e) => {
                tracing::error!(
                    batch = %record.batch,
                    job = %record.job,
                    error = %e,
                    "could not record the run in the run history"
                );
                0
            }
        }
    }
}

impl RunLog for StoreRunLog {
    fn record(&self, record: &RunRecord) -> i64 {
        self.write(record, false)
    }

    fn record_claimed(&self, record: &RunRecord) -> i64 {
        self.write(record, true)
    }

    fn prune(&self, now: DateTime<Utc>) {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match store.prune_runs(self.retention, now.timestamp_micros()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, "run history: pruned old runs"),
            Err(e) => tracing::error!(error = %e, "run history: pruning failed"),
        }
    }
}

/// Runs jobs for real.
pub struct StoreRunner {
    /// Cloned into one connection per run.
    store: Mutex<Store>,
    pub sandboxes: Arc<dyn SandboxSource + Send + Sync>,
    /// The process environment (a batch's `ingest_env` picks from it).
    pub env: BTreeMap<String, String>,
    /// Where `record_runs` cassettes are written.
    pub cassette_dir: PathBuf,
    /// What `local://` model paths are relative to.
    pub model_base: PathBuf,
    /// Where the plot job writes its PNGs.
    pub plot_dir: PathBuf,
    /// Alert channels (from the environment).
    pub channels: Channels,
    /// DuckDB refuses concurrent CREATEs of one table from two connections
    /// (a catalog write-write conflict), so tables are made one at a time.
    schema_lock: Mutex<()>,
    /// Jobs failing in a row, for `alert_on_failure_n`.
    streaks: FailureStreaks,
}

impl StoreRunner {
    pub fn new(
        store: Store,
        sandboxes: Arc<dyn SandboxSource + Send + Sync>,
        env: BTreeMap<String, String>,
        cassette_dir: PathBuf,
        plot_dir: PathBuf,
    ) -> Self {
        StoreRunner {
            store: Mutex::new(store),
            sandboxes,
            channels: Channels::from_env(&env),
            env,
            cassette_dir,
            plot_dir,
            model_base: PathBuf::from("."),
            schema_lock: Mutex::new(()),
            streaks: FailureStreaks::default(),
        }
    }

    /// Failures in a row of a batch's job, newest first in the history.
    fn failures_in_history(&self, batch: &str, job: &str) -> u32 {
        let filter = crate::store::RunFilter {
            batch: Some(batch.to_string()),
            job: Some(job.to_string()),
            limit: 1_000,
            ..Default::default()
        };
        let runs = self
            .connection()
            .and_then(|s| s.list_runs(&filter))
            .unwrap_or_default();
        runs.iter()
            .filter_map(|r| counts(r.status))
            .take_while(|failed| *failed)
            .count() as u32
    }

    fn connection(&self) -> Result<Store, StoreError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store.try_clone()
    }

    /// With `record_runs`, where this run's cassette goes: the batch's
    /// folder, named by the tick (`prefix` tells jobs apart).
    fn cassette_of(&self, t: &RunTicket, prefix: &str) -> Option<CassetteOptions> {
        let spec = &t.spec;
        // The name is checked at load; checked again here because it
        // becomes a directory name.
        (spec.ingest_settings.record_runs
            && crate::config::check_batch_name(&spec.metric_batch).is_ok())
        .then(|| CassetteOptions {
            // A retry keeps its own: each attempt's is the one to replay.
            path: self.cassette_dir.join(&spec.metric_batch).join(format!(
                "{prefix}{}{}.yaml",
                t.scheduled.format("%Y%m%dT%H%M%S%.3fZ"),
                if t.attempt > 1 {
                    format!("-attempt{}", t.attempt)
                } else {
                    String::new()
                }
            )),
            mode: RecordMode::All,
            match_on: Vec::new(),
            scrub: Vec::new(),
        })
    }
}

impl JobRunner for StoreRunner {
    /// Tell Anomstack's failure e-mail of every failed run (when the
    /// operator set it up), and `alert_methods` when a job starts failing
    /// in a row and when it recovers.
    fn finished(&self, t: &RunTicket, record: &RunRecord) {
        let spec = &t.spec;
        let job = t.job.name();
        if counts(record.status) == Some(true) {
            let message = Message::failed_run(&RunFailure {
                batch: &spec.metric_batch,
                job,
                run_id: record.run_id,
                error: record.error.as_deref().unwrap_or("(no error recorded)"),
                cassette: record.cassette.as_deref(),
            });
            if let Some(d) = deliver_failure_email(&self.channels, &message) {
                if d.outcome != Outcome::Sent {
                    tracing::warn!(subject = %message.subject, outcome = ?d.outcome, "failure e-mail not delivered");
                }
            }
        }
        let threshold = spec.alert.on_failure_n.min(u32::MAX as u64) as u32;
        let notice = self.streaks.observe(
            (spec.metric_batch.clone(), job.to_string()),
            record.status,
            threshold,
            || self.failures_in_history(&spec.metric_batch, job),
        );
        let message = match notice {
            Some(Notice::Failing { failures }) => Message::failing(&FailureFacts {
                batch: &spec.metric_batch,
                job,
                failures,
                run_id: record.run_id,
                error: record.error.as_deref().unwrap_or("(no error recorded)"),
                cassette: record.cassette.as_deref(),
            }),
            Some(Notice::Recovered { failures }) => {
                Message::recovered(&spec.metric_batch, job, failures, record.run_id)
            }
            None => return,
        };
        tracing::warn!(subject = %message.subject, "failure alert");
        for d in deliver(&self.channels, &spec.alert.methods, &message) {
            if d.outcome != Outcome::Sent {
                tracing::warn!(
                    subject = %message.subject,
                    channel = %d.channel,
                    outcome = ?d.outcome,
                    "failure notice not delivered"
                );
            }
        }
    }

    fn run(&self, t: &RunTicket) -> RunResult {
        let mut store = match self.connection() {
            Ok(s) => s,
            Err(e) => return RunResult::failed(format!("database: {e}")),
        };
        let spec = &t.spec;
        {
            let _one_at_a_time = self.schema_lock.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = store.ensure_metrics_table(&spec.table_key) {
                return RunResult::failed(format!("batch {}: {e}", spec.metric_batch));
            }
        }
        let cassette = match t.job {
            // Only a Python ingest talks to the outside through the door.
            Job::Ingest => self
                .cassette_of(t, "")
                .filter(|_| matches!(spec.ingest, crate::config::IngestSource::Python(_))),
            Job::Llmalert => self.cassette_of(t, "llmalert-"),
            _ => None,
        };
        let cassette_path = cassette.as_ref().map(|c| c.path.display().to_string());
        let ctx = JobContext {
            model_base: &self.model_base,
            plot_dir: &self.plot_dir,
            channels: Some(&self.channels),
            env: &self.env,
            sandboxes: self.sandboxes.as_ref(),
            peers: &t.peers,
            mode: RunMode {
                cassette,
                dry_run: false,
                simulated_now_us: t.catch_up.then(|| t.scheduled.timestamp_micros()),
            },
        };
        match dispatch::run(spec, &mut store, t.job, &ctx) {
            Ok(out) => succeeded(spec, &out, cassette_path),
            Err(e) => failed(&e, cassette_path),
        }
    }
}

/// A run that did its work. A channel that could not deliver, or a metric
/// the chat model failed, is noted on the run, not a failure of it.
fn succeeded(spec: &BatchSpec, out: &JobOutcome, cassette_path: Option<String>) -> RunResult {
    let mut notes = Vec::new();
    if let JobOutcome::LlmAlerted(r, _) = out {
        notes.extend(r.stopped.clone());
        notes.extend(r.problems.iter().cloned());
    }
    let problems = out.sent().map(|s| s.problems()).unwrap_or_default();
    if !problems.is_empty() {
        notes.push(format!("alert delivery: {}", problems.join("; ")));
    }
    let (cassette, log) = match out {
        JobOutcome::Ingested(r, ..) => (cassette_path, r.sandbox.as_ref().and_then(|s| s.as_log())),
        JobOutcome::LlmAlerted(r, _) => (
            r.cassette.as_ref().map(|p| p.display().to_string()),
            Some(describe(spec, out)),
        ),
        _ => (None, Some(describe(spec, out))),
    };
    RunResult {
        error: (!notes.is_empty()).then(|| notes.join("\n")),
        cassette,
        fuel: out.sandbox().map_or(0, |s| s.stats.fuel_used),
        log,
        ..RunResult::ok(out.rows())
    }
}

/// A run that did not: its status says how (a timeout, an llmalert with no
/// chat model configured is skipped), a Python ingest keeps what it printed.
fn failed(e: &DispatchError, cassette_path: Option<String>) -> RunResult {
    let mut error = e.to_string();
    if let Some(s) = e.sandbox() {
        if !s.output.trim().is_empty() {
            error.push_str("\n--- output ---\n");
            error.push_str(s.output.trim_end());
        }
    }
    RunResult {
        status: e.status(),
        can_pass: e.can_pass(),
        fuel: e.sandbox().map_or(0, |s| s.stats.fuel_used),
        log: e.sandbox().and_then(|s| s.as_log()),
        // A failed ingest's cassette is the one worth replaying.
        cassette: match e {
            DispatchError::Ingest(_) => cassette_path.filter(|p| std::path::Path::new(p).exists()),
            _ => None,
        },
        ..RunResult::failed(error)
    }
}

//! The ingest job: a batch's rows come from its source (`ingest_sql`, run
//! by the store, or [`python`] in the sandbox), are checked and normalised
//! ([`normalize`]), and are stored in the batch's table in one transaction:
//! a failed ingest stores nothing.

pub mod normalize;
pub mod python;
pub mod recording;
mod warehouse;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use crate::config::{BatchSpec, IngestSource};
use crate::sandbox::{ExecError, ExecReport, ExecStats, LogLine, Sandbox, SetupError};
use crate::store::{ResultCaps, Store, StoreError};

pub use normalize::{describe_rows, InvalidResult};

/// Every way an ingest can fail; [`IngestFailure`] adds the batch.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("ingest_sql failed: {message}")]
    Sql { message: String },
    /// `ingest_sql` on the warehouse `db` names.
    #[error("ingest_sql failed: {0}")]
    Warehouse(#[from] crate::warehouse::WarehouseError),
    #[error("the batch has no ingest_fn or ingest_sql: its history comes from `sandstack import`")]
    NoSource,
    #[error(transparent)]
    Invalid(#[from] InvalidResult),
    #[error(transparent)]
    Run(#[from] ExecError),
    /// Storing the rows failed.
    #[error(transparent)]
    Store(StoreError),
    #[error("{message}")]
    Cassette { message: String },
    #[error("the Python sandbox is not available: {0}")]
    Setup(#[from] SetupError),
    /// `ingest_sql` ran past `ingest_timeout_s` and was stopped.
    #[error(
        "ingest exceeded ingest_timeout_s={seconds}: ingest_sql was stopped and nothing was stored"
    )]
    TimedOut { seconds: f64 },
}

impl IngestError {
    /// Whether the run was stopped by its time limit (SQL or Python).
    pub fn is_timeout(&self) -> bool {
        match self {
            IngestError::TimedOut { .. } => true,
            IngestError::Run(e) => e.is_timeout(),
            IngestError::Warehouse(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// Whether a later try could succeed (see [`ExecError::can_pass`]);
    /// SQL over the store never can, a warehouse that was unreachable can.
    pub fn can_pass(&self) -> bool {
        match self {
            IngestError::Run(e) => e.can_pass(),
            IngestError::Warehouse(e) => e.can_pass(),
            _ => false,
        }
    }
}

/// Where the Python sandbox comes from: opened lazily, so SQL-only runs
/// never set it up.
pub trait SandboxSource {
    fn sandbox(&self) -> Result<std::sync::Arc<Sandbox>, SetupError>;
}

/// The process-wide sandbox under [`crate::sandbox::home_dir`], with setup
/// progress on stderr.
pub struct DefaultSandbox;

impl SandboxSource for DefaultSandbox {
    fn sandbox(&self) -> Result<std::sync::Arc<Sandbox>, SetupError> {
        Sandbox::shared(&crate::sandbox::home_dir(), &|msg| {
            eprintln!("sandstack setup: {msg}")
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Run and validate, store nothing.
    pub dry_run: bool,
    /// Record or replay the run's cassette (Python batches).
    pub cassette: Option<recording::CassetteOptions>,
    /// Ingest as if it were this instant (µs since the epoch), for
    /// backfills: Python code sees it as its clock; SQL rows are stamped
    /// with it.
    pub simulated_now_us: Option<i64>,
}

/// What an ingest did.
#[derive(Debug)]
pub struct IngestReport {
    pub batch: String,
    pub table_key: crate::store::TableKey,
    /// The normalised rows (stored unless a dry run).
    pub rows: RecordBatch,
    pub stored: usize,
    pub dropped_nan: usize,
    pub source_time: Duration,
    pub store_time: Duration,
    pub total_time: Duration,
    /// For Python batches: the sandbox's figures, output and logs.
    pub sandbox: Option<SandboxDetails>,
}

#[derive(Debug)]
pub struct SandboxDetails {
    pub stats: ExecStats,
    pub output: String,
    pub logs: Vec<LogLine>,
}

impl SandboxDetails {
    /// The run's log records and what it printed, as one text (control
    /// characters escaped); None when it logged and printed nothing.
    pub fn as_log(&self) -> Option<String> {
        let mut out = String::new();
        for l in &self.logs {
            out.push_str(&format!("[{}] {}\n", l.level, l.message));
        }
        if !self.output.trim().is_empty() {
            out.push_str(self.output.trim_end());
            out.push('\n');
        }
        (!out.is_empty()).then(|| crate::escape::terminal_block(&out))
    }
}

/// A failed ingest, with what a Python run printed and logged before it
/// failed (for the user to see).
#[derive(Debug)]
pub struct IngestFailure {
    pub batch: String,
    pub error: IngestError,
    pub sandbox: Option<SandboxDetails>,
}

impl std::fmt::Display for IngestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {}: {}", self.batch, self.error)
    }
}

impl std::error::Error for IngestFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl IngestFailure {
    /// The batch is attached here, once, at the job's boundary.
    fn of(
        spec: &BatchSpec,
        sandbox: Option<SandboxDetails>,
    ) -> impl FnOnce(IngestError) -> Box<Self> + '_ {
        move |error| {
            Box::new(IngestFailure {
                batch: spec.metric_batch.clone(),
                error,
                sandbox,
            })
        }
    }
}

pub fn run(
    spec: &BatchSpec,
    store: &mut Store,
    sandboxes: &dyn SandboxSource,
    env: &BTreeMap<String, String>,
    opts: IngestOptions,
) -> Result<IngestReport, Box<IngestFailure>> {
    let started = Instant::now();
    match &spec.ingest {
        IngestSource::Sql(sql) if spec.db != crate::config::Db::DuckDb => {
            warehouse::run(spec, store, sql, env, opts, started)
                .map_err(IngestFailure::of(spec, None))
        }
        IngestSource::Sql(sql) => {
            run_sql(spec, store, sql, opts, started).map_err(IngestFailure::of(spec, None))
        }
        IngestSource::Python(source) => {
            let exec = execute_python(spec, source, sandboxes, env, &opts)?;
            finish_python(spec, store, exec, opts, started)
        }
        IngestSource::Imported => Err(Box::new(IngestFailure {
            batch: spec.metric_batch.clone(),
            error: IngestError::NoSource,
            sandbox: None,
        })),
    }
}

/// A Python ingest's sandbox run, before its rows are checked and stored.
pub struct PythonExec {
    pub report: ExecReport,
    pub details: SandboxDetails,
    pub source_time: Duration,
}

/// Run the batch's Python in the sandbox, recording or replaying its
/// cassette when asked.
fn execute_python(
    spec: &BatchSpec,
    source: &crate::config::PythonSource,
    sandboxes: &dyn SandboxSource,
    env: &BTreeMap<String, String>,
    opts: &IngestOptions,
) -> Result<PythonExec, Box<IngestFailure>> {
    let batch = spec.metric_batch.clone();
    let fail = |error: IngestError| IngestFailure::of(spec, None)(error);
    let sandbox = sandboxes.sandbox().map_err(|source| fail(source.into()))?;
    let mut req = python::request(spec, source, env);
    req.clock_start_us = opts.simulated_now_us;
    let plan = match &opts.cassette {
        Some(c) => {
            let plan = recording::plan(c, None)
                .map_err(|message| fail(IngestError::Cassette { message }))?;
            for w in recording::prepare(&mut req, &plan, c, source) {
                tracing::warn!(batch = %batch, "{w}");
            }
            Some((plan, c))
        }
        None => None,
    };
    let run_env = req.env.clone();
    let t = Instant::now();
    let mut report: ExecReport = sandbox.execute(req);
    report.outcome = report.outcome.map_err(|e| python::explain(spec, env, e));
    let source_time = t.elapsed();
    let stopped_for_a_secret = matches!(report.outcome, Err(crate::sandbox::ExecError::Secret(_)));
    if let Some((plan, c)) = plan.as_ref().filter(|_| !stopped_for_a_secret) {
        match recording::write_after(plan, c, spec, source, &run_env, &report) {
            Ok(Some(path)) => tracing::info!(
                batch = %batch,
                cassette = %path.display(),
                interactions = report.interactions.len(),
                "wrote cassette"
            ),
            Ok(None) => {
                tracing::info!(batch = %batch, cassette = %c.path.display(), "replayed cassette")
            }
            Err(message) => return Err(fail(IngestError::Cassette { message })),
        }
    }
    let details = SandboxDetails {
        stats: report.stats.clone(),
        output: report.output.clone(),
        logs: report.logs.clone(),
    };
    Ok(PythonExec {
        report,
        details,
        source_time,
    })
}

/// `ingest_sql` within `ingest_timeout_s`: past it DuckDB stops the query
/// and the transaction rolls back.
fn run_sql(
    spec: &BatchSpec,
    store: &mut Store,
    sql: &str,
    opts: IngestOptions,
    started: Instant,
) -> Result<IngestReport, IngestError> {
    let limit = Duration::from_secs_f64(spec.limits.timeout_s);
    match store.with_time_limit(limit, |store| {
        query_and_store(spec, store, sql, opts, started)
    }) {
        (Err(_), true) => Err(IngestError::TimedOut {
            seconds: spec.limits.timeout_s,
        }),
        (result, _) => result,
    }
}

/// The query (over the batch's own rows, in a scratch database: see
/// [`Store::query_batch_sql`]), the checks, and the append in one
/// transaction, so a failed ingest stores nothing. The result is read as
/// it streams and refused past `ingest_max_rows` / `ingest_max_result_kb`.
fn query_and_store(
    spec: &BatchSpec,
    store: &mut Store,
    sql: &str,
    opts: IngestOptions,
    started: Instant,
) -> Result<IngestReport, IngestError> {
    let batch = spec.metric_batch.clone();
    let table = spec.table_key.clone();
    if !opts.dry_run {
        store
            .ensure_metrics_table(&table)
            .map_err(IngestError::Store)?;
    }
    let t = Instant::now();
    let caps = ResultCaps {
        max_rows: Some(spec.limits.max_rows),
        max_bytes: Some(spec.limits.max_result_kb.saturating_mul(1024)),
        rows_key: "ingest_max_rows",
        bytes_key: "ingest_max_result_kb",
    };
    let raw = store
        .query_batch_sql(&table, &batch, sql, caps)
        .map_err(|e| IngestError::Sql {
            message: e.to_string(),
        })?;
    check_and_store(spec, store, &raw, opts, started, t.elapsed())
}

/// A SQL source's rows checked, normalised and stored (unless a dry run).
fn check_and_store(
    spec: &BatchSpec,
    store: &mut Store,
    raw: &[RecordBatch],
    opts: IngestOptions,
    started: Instant,
    query_time: Duration,
) -> Result<IngestReport, IngestError> {
    let batch = spec.metric_batch.clone();
    let table = spec.table_key.clone();
    let t = Instant::now();
    let mut normalized = normalize::normalize(
        raw,
        &batch,
        &spec.limits,
        spec.ingest_settings.metric_rounding,
    )?;
    if let Some(at) = opts.simulated_now_us {
        normalized.rows = normalize::restamp(&normalized.rows, at);
    }
    let source_time = query_time + t.elapsed();
    let t = Instant::now();
    let stored = if opts.dry_run {
        0
    } else {
        // append_metrics makes the table if it is missing (a warehouse
        // batch's first run).
        store
            .append_metrics(&table, std::slice::from_ref(&normalized.rows))
            .map_err(IngestError::Store)?
    };
    let store_time = t.elapsed();
    log_dropped(&batch, normalized.dropped_nan);
    Ok(IngestReport {
        batch,
        table_key: table,
        rows: normalized.rows,
        stored,
        dropped_nan: normalized.dropped_nan,
        source_time,
        store_time,
        total_time: started.elapsed(),
        sandbox: None,
    })
}

/// Normalise and store a Python run's result.
pub fn finish_python(
    spec: &BatchSpec,
    store: &mut Store,
    exec: PythonExec,
    opts: IngestOptions,
    started: Instant,
) -> Result<IngestReport, Box<IngestFailure>> {
    let PythonExec {
        report,
        details,
        source_time,
    } = exec;
    let batch = spec.metric_batch.clone();
    let checked = report.outcome.map_err(IngestError::from).and_then(|raw| {
        normalize::normalize(
            &[raw],
            &batch,
            &spec.limits,
            spec.ingest_settings.metric_rounding,
        )
        .map_err(IngestError::from)
    });
    let normalized = match checked {
        Ok(n) => n,
        Err(error) => return Err(IngestFailure::of(spec, Some(details))(error)),
    };
    log_dropped(&batch, normalized.dropped_nan);
    let t = Instant::now();
    let stored = if opts.dry_run {
        0
    } else {
        match store.append_metrics(&spec.table_key, std::slice::from_ref(&normalized.rows)) {
            Ok(n) => n,
            Err(e) => {
                return Err(IngestFailure::of(spec, Some(details))(IngestError::Store(
                    e,
                )))
            }
        }
    };
    Ok(IngestReport {
        batch,
        table_key: spec.table_key.clone(),
        rows: normalized.rows,
        stored,
        dropped_nan: normalized.dropped_nan,
        source_time,
        store_time: t.elapsed(),
        total_time: started.elapsed(),
        sandbox: Some(details),
    })
}

fn log_dropped(batch: &str, n: usize) {
    if n > 0 {
        tracing::warn!(
            batch = %batch,
            rows = n,
            "dropped rows whose metric_value was NaN, null or infinite"
        );
    }
}

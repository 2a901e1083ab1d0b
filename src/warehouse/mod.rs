//! The warehouses a batch's `ingest_sql` can read from (`db:` other than
//! `duckdb`): each runs the rendered query on the operator's server and
//! answers one Arrow record batch, which the ingest job checks and stores
//! in sandstack's own database (Anomstack stores into the same warehouse).
//!
//! Each source is one file with its settings, its wire format and its
//! tests: [`sqlite`] (a file, or Turso over HTTP), [`postgres`],
//! [`clickhouse`], [`bigquery`] and [`snowflake`]. Their credentials come
//! from the operator's environment under Anomstack's variable names, never
//! from the batch; every query has the batch's time limit, row cap and
//! result-size cap, and is held to one read-only statement where the
//! engine can say so. The HTTP sources go through the run's
//! [`Tape`](crate::cassette::tape::Tape), so a run can be recorded and
//! replayed like a Python ingest.

pub mod bigquery;
pub mod clickhouse;
pub mod columns;
mod jwt;
pub mod postgres;
pub mod snowflake;
pub mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::record_batch::RecordBatch;

use crate::cassette::tape::{Tape, TapeError};
use crate::cassette::Interaction;
use crate::config::Db;

/// What one query may take.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// `ingest_timeout_s`.
    pub timeout: Duration,
    /// `ingest_max_rows`.
    pub max_rows: usize,
    /// `ingest_max_result_kb`, in bytes.
    pub max_bytes: usize,
}

/// A warehouse the ingest reads from.
pub trait Source {
    /// Run `sql` (one read-only query) within `limits` and return its rows.
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError>;

    /// The exchanges kept for a cassette (HTTP sources that record).
    fn take_interactions(&mut self) -> Vec<Interaction> {
        Vec::new()
    }

    /// The settings a replay needs to ask the same URLs, as the variables
    /// that set them (none secret: a replay needs no credentials).
    fn replay_settings(&self) -> Env {
        Env::new()
    }
}

/// The operator's variables, as the ingest got them.
pub type Env = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("db: {db}: {variable} is not set in sandstack's environment: {what}")]
    Missing {
        db: &'static str,
        variable: &'static str,
        what: &'static str,
    },
    #[error("db: {db}: {variable}: {message}")]
    Setting {
        db: &'static str,
        variable: &'static str,
        message: String,
    },
    #[error("{db} refused the query: {message}")]
    Query { db: &'static str, message: String },
    #[error(
        "{db}: ingest_sql must be one read-only query, and this is {found}: a batch's SQL may only read"
    )]
    NotReadOnly { db: &'static str, found: String },
    #[error(
        "{db}: the result has more than {limit} rows (ingest_max_rows): nothing was stored; \
         narrow the query or raise ingest_max_rows"
    )]
    TooManyRows { db: &'static str, limit: usize },
    #[error(
        "{db}: the result is over {limit_kib} KiB (ingest_max_result_kb): nothing was stored; \
         narrow the query or raise ingest_max_result_kb"
    )]
    TooLarge { db: &'static str, limit_kib: usize },
    #[error("{db}: the query ran past ingest_timeout_s={seconds} and was stopped")]
    TimedOut { db: &'static str, seconds: f64 },
    /// The server could not be reached, or answered 429 or 5xx: a later
    /// try may pass.
    #[error("{db}: {message}")]
    Unavailable { db: &'static str, message: String },
    #[error("{db}: {0}", db = .1)]
    Tape(TapeError, &'static str),
    #[error("{db} answered something sandstack cannot read: {message}")]
    Answer { db: &'static str, message: String },
}

impl WarehouseError {
    /// The query ran past `ingest_timeout_s`.
    pub fn timed_out(db: &'static str, limits: &QueryLimits) -> WarehouseError {
        WarehouseError::TimedOut {
            db,
            seconds: limits.timeout.as_secs_f64(),
        }
    }

    /// The answer has more than `ingest_max_rows` rows.
    pub fn too_many_rows(db: &'static str, limits: &QueryLimits) -> WarehouseError {
        WarehouseError::TooManyRows {
            db,
            limit: limits.max_rows,
        }
    }

    /// The answer is over `ingest_max_result_kb`.
    pub fn too_large(db: &'static str, limits: &QueryLimits) -> WarehouseError {
        WarehouseError::TooLarge {
            db,
            limit_kib: limits.max_bytes >> 10,
        }
    }

    /// Whether a later try could succeed.
    pub fn can_pass(&self) -> bool {
        matches!(
            self,
            WarehouseError::Unavailable { .. } | WarehouseError::Tape(TapeError::Network(_), _)
        )
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            WarehouseError::TimedOut { .. } | WarehouseError::Tape(TapeError::TimedOut(_), _)
        )
    }
}

/// Whether `db`'s queries go over HTTP as `env` configures it, so a
/// cassette can record and replay them: not PostgreSQL's, nor a SQLite
/// file's (Turso's do; a Turso setting that does not read is left to
/// [`open`] to report).
pub fn reads_over_http(db: Db, env: &Env) -> bool {
    match db {
        Db::DuckDb | Db::Postgres => false,
        Db::Sqlite => !matches!(sqlite::Turso::from_env(env), Ok(None)),
        Db::ClickHouse | Db::BigQuery | Db::Snowflake => true,
    }
}

/// Connect to the warehouse `db` names, with the operator's `env`; None
/// for DuckDB, which runs over sandstack's own store. The tape is used by
/// the sources [`reads_over_http`] says go over HTTP.
/// `scrub` names more values to keep out of cassettes (`--scrub`).
pub fn open(
    db: Db,
    env: &Env,
    tape: Tape,
    scrub: &[String],
) -> Result<Option<Box<dyn Source>>, WarehouseError> {
    Ok(Some(match db {
        Db::DuckDb => return Ok(None),
        Db::Sqlite => match sqlite::Turso::from_env(env)? {
            Some(remote) => Box::new(remote.connect(tape, env, scrub)?),
            None => Box::new(sqlite::Sqlite::from_env(env)?),
        },
        Db::Postgres => Box::new(postgres::Postgres::from_env(env)?),
        Db::ClickHouse => Box::new(clickhouse::ClickHouse::from_env(env, tape, scrub)?),
        Db::BigQuery => Box::new(bigquery::BigQuery::from_env(env, tape, scrub)?),
        Db::Snowflake => Box::new(snowflake::Snowflake::from_env(env, tape, scrub)?),
    }))
}

/// A required variable's value, trimmed.
fn required(
    env: &Env,
    db: &'static str,
    variable: &'static str,
    what: &'static str,
) -> Result<String, WarehouseError> {
    match env.get(variable).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(WarehouseError::Missing { db, variable, what }),
    }
}

/// An optional variable's value, trimmed; empty counts as unset.
fn optional(env: &Env, variable: &str) -> Option<String> {
    env.get(variable)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An error body from a server, shortened and made one line for a message.
fn server_words(body: &[u8]) -> String {
    words(&String::from_utf8_lossy(body))
}

/// A server's or engine's words for a message: one line, at most 600
/// characters (an engine may echo a whole input value back).
fn words(text: &str) -> String {
    crate::escape::truncate(&crate::escape::log_line(text.trim()), 600)
}

/// The variables a replay of `db` may take from its cassette: those naming
/// the server, never a credential. None for the sources not read over
/// HTTP (a replay of them would run for real).
pub fn replay_setting_names(db: Db) -> &'static [&'static str] {
    match db {
        Db::DuckDb | Db::Postgres => &[],
        Db::Sqlite => sqlite::REPLAY_SETTINGS,
        Db::ClickHouse => clickhouse::REPLAY_SETTINGS,
        Db::BigQuery => bigquery::REPLAY_SETTINGS,
        Db::Snowflake => snowflake::REPLAY_SETTINGS,
    }
}

/// Whether the tape answers everything from a cassette, so nothing leaves
/// the process and no credentials are needed.
fn offline(tape: &Tape) -> bool {
    matches!(tape, Tape::Replay(book) if !book.allow_new)
}

/// Whether an HTTP status means the server may answer later.
fn passing_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// One request of a query through the run's tape, within the query's
/// deadline, its answer read to at most four times the result cap (a
/// page's JSON around its values); an answer bigger than that is the
/// result cap's error. `who` names the service in errors.
#[allow(clippy::too_many_arguments)]
fn send(
    http: &mut crate::cassette::tape::TapedHttp,
    db: &'static str,
    who: &str,
    method: reqwest::Method,
    url: &url::Url,
    headers: &[(String, String)],
    body: &[u8],
    deadline: std::time::Instant,
    limits: &QueryLimits,
) -> Result<crate::cassette::tape::Exchange, WarehouseError> {
    if std::time::Instant::now() >= deadline {
        return Err(WarehouseError::timed_out(db, limits));
    }
    let cap = limits.max_bytes.saturating_mul(4).max(1 << 20);
    http.send(who, method, url, headers, body, left(deadline), cap)
        .map_err(|e| match e {
            TapeError::TooBig { .. } => WarehouseError::too_large(db, limits),
            e => WarehouseError::Tape(e, db),
        })
}

/// The time left before `deadline`, at least a millisecond so a request
/// is still attempted (and fails on its own timeout).
fn left(deadline: std::time::Instant) -> Duration {
    deadline
        .saturating_duration_since(std::time::Instant::now())
        .max(Duration::from_millis(1))
}

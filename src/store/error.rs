//! What can go wrong in storage, whichever the engine.

use std::path::PathBuf;

type EngineError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open {engine} file {path}: {source} (is another process holding it open for writing?)")]
    Open {
        engine: &'static str,
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    /// A database server could not be reached or refused the login.
    #[error(
        "cannot connect to PostgreSQL at {url}: {source} (check that the server is up and that \
         the URL's host, port, user, password and database are right)"
    )]
    Connect {
        /// The URL with its password hidden.
        url: String,
        #[source]
        source: EngineError,
    },
    #[error(
        "{path} names a MotherDuck database: sandstack's DuckDB runs offline without extensions, \
         so it cannot reach MotherDuck. Point --db (or SANDSTACK_DB, ANOMSTACK_DUCKDB_PATH) at a \
         local DuckDB file, or share one database between machines through PostgreSQL (--db \
         postgres://...)"
    )]
    MotherDuck { path: String },
    #[error(transparent)]
    TableKey(#[from] crate::config::TableKeyError),
    /// The engine refused or failed; `context` says what was being done.
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: EngineError,
    },
    /// SQL refused before it reached the engine (more than one statement).
    #[error("{context}: {message}")]
    Sql { context: String, message: String },
    /// The metrics folder's own SQL failed; the caller says which key.
    #[error("{0}")]
    Template(String),
    /// A time limit ran out ([`super::Store::with_time_limit`]).
    #[error("stopped: its time limit ran out")]
    TimedOut,
    /// The metrics folder's SQL was refused or failed where it runs
    /// ([`super::confined`]).
    #[error(transparent)]
    Confined(#[from] super::confined::ConfinedError),
}

/// Wrap an engine error with what was being done.
pub(crate) fn db_err<E>(context: impl Into<String>) -> impl FnOnce(E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let context = context.into();
    move |source| StoreError::Db {
        context,
        source: Box::new(source),
    }
}

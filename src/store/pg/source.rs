//! A read-only query on a PostgreSQL server other than the store: how
//! `db: postgres` ingests (`warehouse::postgres` reads the operator's
//! settings and calls this). The query runs in a `READ ONLY` transaction
//! with `statement_timeout` set, through the extended protocol (which takes
//! one statement only), and its rows stream in until the cap.

use std::time::Duration;

use arrow::record_batch::RecordBatch;
use postgres::{Config, NoTls};

/// Where to connect.
pub struct SourceServer<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub dbname: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceQueryError {
    #[error("cannot connect to {host}:{port}: {message}")]
    Connect {
        host: String,
        port: u16,
        message: String,
    },
    #[error("{0}")]
    Query(String),
    /// The server refused a write in the read-only transaction.
    #[error("{0}")]
    ReadOnly(String),
    #[error("statement_timeout")]
    TimedOut,
    #[error("more rows than the cap")]
    TooManyRows,
    #[error("more bytes than the cap")]
    TooLarge,
}

/// SQLSTATEs told apart: a write in a read-only transaction, and a
/// statement stopped by `statement_timeout`.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";
const QUERY_CANCELED: &str = "57014";

fn query_error(e: postgres::Error) -> SourceQueryError {
    match e.code().map(|c| c.code()) {
        Some(READ_ONLY_SQL_TRANSACTION) => SourceQueryError::ReadOnly(super::engine_words(&e)),
        Some(QUERY_CANCELED) => SourceQueryError::TimedOut,
        _ => SourceQueryError::Query(super::engine_words(&e)),
    }
}

pub fn read_only_query(
    server: &SourceServer<'_>,
    sql: &str,
    timeout: Duration,
    max_rows: usize,
    max_bytes: usize,
) -> Result<RecordBatch, SourceQueryError> {
    let mut config = Config::new();
    config
        .host(server.host)
        .port(server.port)
        .user(server.user)
        .application_name("sandstack ingest")
        .connect_timeout(timeout.min(Duration::from_secs(30)))
        .options("-c TimeZone=UTC");
    if let Some(p) = server.password {
        config.password(p);
    }
    if let Some(d) = server.dbname {
        config.dbname(d);
    }
    let mut client = config
        .connect(NoTls)
        .map_err(|e| SourceQueryError::Connect {
            host: server.host.to_string(),
            port: server.port,
            message: super::engine_words(&e),
        })?;
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(query_error)?;
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {ms}"))
        .map_err(query_error)?;
    let statement = tx.prepare(sql).map_err(query_error)?;
    // Only a query: a statement with no result columns (COPY, a call run
    // for its effect, SET) is refused before it runs.
    if statement.columns().is_empty() {
        return Err(SourceQueryError::ReadOnly(
            "it returns no rows, so it is not a query".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut iter = tx
        .query_raw(&statement, std::iter::empty::<i32>())
        .map_err(query_error)?;
    use postgres::fallible_iterator::FallibleIterator;
    while let Some(row) = iter.next().map_err(query_error)? {
        if rows.len() >= max_rows {
            return Err(SourceQueryError::TooManyRows);
        }
        bytes += super::arrow_rows::row_bytes(&row);
        if bytes > max_bytes {
            return Err(SourceQueryError::TooLarge);
        }
        rows.push(row);
    }
    drop(iter);
    let batch =
        super::arrow_rows::to_batch(statement.columns(), &rows).map_err(SourceQueryError::Query)?;
    // Read-only: nothing to keep; rolling back ends it at once.
    tx.rollback().map_err(query_error)?;
    Ok(batch)
}

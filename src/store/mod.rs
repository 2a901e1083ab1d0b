//! Storage in one DuckDB file: one long metrics table per `table_key`,
//! created on first use; rows go in as Arrow record batches through DuckDB's
//! Arrow appender and queries come back as Arrow.

pub mod runs;
pub mod schema;
pub mod statements;

use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use duckdb::Connection;

pub use runs::{Retention, RunFilter, RunRecord, RunStatus};
pub use schema::metrics_schema;

/// Default database file, relative to the working directory.
pub const DEFAULT_DB: &str = "sandstack.duckdb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open DuckDB file {path}: {source} (is another process holding it open for writing?)")]
    Open {
        path: PathBuf,
        #[source]
        source: duckdb::Error,
    },
    #[error("invalid table_key `{key}`: {message}")]
    TableKey { key: String, message: String },
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: duckdb::Error,
    },
    #[error("{context}: {message}")]
    Sql { context: String, message: String },
}

/// Wrap a DuckDB error with what was being done.
pub(crate) fn db_err(context: impl Into<String>) -> impl FnOnce(duckdb::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Db { context, source }
}

/// A validated table key, split and quoted for SQL.
#[derive(Debug, Clone)]
pub struct TableKey {
    schema: Option<String>,
    table: String,
}

impl TableKey {
    pub fn parse(key: &str) -> Result<Self, StoreError> {
        crate::config::validate_table_key(key).map_err(|message| StoreError::TableKey {
            key: key.to_string(),
            message,
        })?;
        Ok(match key.split_once('.') {
            Some((s, t)) => TableKey {
                schema: Some(s.to_string()),
                table: t.to_string(),
            },
            None => TableKey {
                schema: None,
                table: key.to_string(),
            },
        })
    }

    /// `"schema"."table"` or `"table"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.table),
            None => format!("\"{}\"", self.table),
        }
    }
}

/// DuckDB may otherwise download extensions from the internet when a query
/// needs one: sandstack never lets it (no network surprises, no unverified
/// native code).
fn offline_config() -> duckdb::Result<duckdb::Config> {
    duckdb::Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A missing folder is DuckDB's error otherwise, which does not say which.
            let _ = std::fs::create_dir_all(parent);
        }
        let conn = offline_config()
            .and_then(|c| Connection::open_with_flags(path, c))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// An in-memory database, for tests and dry runs.
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = offline_config()
            .and_then(Connection::open_in_memory_with_flags)
            .map_err(|source| StoreError::Open {
                path: PathBuf::from(":memory:"),
                source,
            })?;
        Ok(Store {
            conn,
            path: PathBuf::from(":memory:"),
        })
    }

    /// Another connection to the same database, for work on another
    /// thread (DuckDB serialises conflicting writes itself).
    pub fn try_clone(&self) -> Result<Self, StoreError> {
        Ok(Store {
            conn: self
                .conn
                .try_clone()
                .map_err(db_err("opening another connection"))?,
            path: self.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Run `sql` (from the metrics folder) if it is exactly one statement;
    /// returns the rows it changed. `context` names it in errors.
    pub fn execute_one(&self, sql: &str, context: &str) -> Result<usize, StoreError> {
        let refuse = |message: String| StoreError::Sql {
            context: context.to_string(),
            message,
        };
        statements::require_one(sql).map_err(refuse)?;
        self.conn.execute(sql, []).map_err(db_err(context))
    }

    /// Create the metrics table (and its schema) if missing.
    pub fn ensure_metrics_table(&self, table_key: &str) -> Result<TableKey, StoreError> {
        let key = TableKey::parse(table_key)?;
        let mut sql = String::new();
        if let Some(schema) = &key.schema {
            sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"));
        }
        sql.push_str(&schema::create_table_sql(&key.quoted()));
        self.conn
            .execute_batch(&sql)
            .map_err(db_err(format!("creating metrics table {table_key}")))?;
        Ok(key)
    }

    /// Run a query and collect its result as Arrow.
    pub fn query_arrow(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        // duckdb-rs would run every statement but the last while preparing.
        statements::require_one(sql).map_err(|message| StoreError::Sql {
            context: "preparing query".into(),
            message,
        })?;
        let mut stmt = self.conn.prepare(sql).map_err(db_err("preparing query"))?;
        let batches = stmt
            .query_arrow([])
            .map_err(db_err("running query"))?
            .collect();
        Ok(batches)
    }

    /// Append metrics rows (in [`metrics_schema`]) inside one transaction.
    pub fn append_metrics(
        &mut self,
        table_key: &str,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        self.ensure_metrics_table(table_key)?;
        self.in_transaction(|tx| append_in(tx, table_key, batches))
    }

    /// Run `work` in a transaction: committed if it returns Ok, rolled back
    /// (nothing stored) if it returns Err.
    pub fn in_transaction<T, E>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.transact(true, work)
    }

    /// Like [`Self::in_transaction`], but with `commit: false` the work is
    /// rolled back even when it succeeds (dry runs).
    pub fn transact<T, E>(
        &mut self,
        commit: bool,
        work: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self
            .conn
            .transaction()
            .map_err(db_err("starting a transaction"))?;
        let out = work(&tx)?;
        if commit {
            tx.commit().map_err(db_err("committing"))?;
        } else {
            tx.rollback().map_err(db_err("rolling back"))?;
        }
        Ok(out)
    }

    /// Number of rows in a table; 0 if it does not exist.
    pub fn count_rows(&self, table_key: &str) -> Result<u64, StoreError> {
        let key = TableKey::parse(table_key)?;
        let exists: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = ?",
                duckdb::params![key.table, key.schema.clone().unwrap_or_else(|| "main".into())],
                |r| r.get(0),
            )
            .map_err(db_err("looking up table"))?;
        if exists == 0 {
            return Ok(0);
        }
        let n: i64 = self
            .conn
            .query_row(&format!("SELECT count(*) FROM {}", key.quoted()), [], |r| {
                r.get(0)
            })
            .map_err(db_err(format!("counting rows of {table_key}")))?;
        Ok(n.max(0) as u64)
    }
}

/// Append rows through the Arrow appender on a connection (or transaction).
pub fn append_in(
    conn: &Connection,
    table_key: &str,
    batches: &[RecordBatch],
) -> Result<usize, StoreError> {
    let key = TableKey::parse(table_key)?;
    let mut appender = match &key.schema {
        Some(s) => conn.appender_to_db(&key.table, s),
        None => conn.appender(&key.table),
    }
    .map_err(db_err(format!("opening an appender on {table_key}")))?;
    let mut rows = 0;
    for b in batches {
        rows += b.num_rows();
        appender
            .append_record_batch(b.clone())
            .map_err(db_err(format!("appending to {table_key}")))?;
    }
    appender
        .flush()
        .map_err(db_err(format!("flushing rows to {table_key}")))?;
    Ok(rows)
}

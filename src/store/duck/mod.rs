//! The DuckDB backend: one database file, one long metrics table per
//! `table_key` created on first use, rows appended as Arrow record batches
//! through DuckDB's Arrow appender, queries read back as Arrow. The
//! database is opened confined ([`raw`]): no host files, no extensions,
//! configuration locked. SQL from the metrics folder never runs here: it
//! runs in a scratch database of its own ([`crate::store::confined`]),
//! which this module also opens (one query of the right kind, checked by
//! preparing it before it runs).

#[cfg(test)]
mod contract_tests;
mod dashboard;
mod generated;
mod metrics;
pub(in crate::store) mod raw;
mod runs;
pub mod statements;

pub(in crate::store) use metrics::create_table_sql;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raw::RawDatabase;
pub use raw::StatementKind;

use duckdb::Connection;

use super::error::db_err;
use super::{Backend, EngineLimits, StoreError};

pub struct DuckStore {
    /// Declared before `db`: a connection must close before its database.
    conn: Connection,
    db: Arc<RawDatabase>,
    path: PathBuf,
}

impl DuckStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_limited(path, EngineLimits::default())
    }

    pub fn open_limited(path: &Path, limits: EngineLimits) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A missing folder is DuckDB's error otherwise, which does not say which.
            let _ = std::fs::create_dir_all(parent);
        }
        Self::from_raw(RawDatabase::open(Some(path), limits), path.to_path_buf())
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_raw(
            RawDatabase::open(None, EngineLimits::default()),
            PathBuf::from(":memory:"),
        )
    }

    fn from_raw(db: Result<RawDatabase, String>, path: PathBuf) -> Result<Self, StoreError> {
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            engine: "DuckDB",
            path: path.clone(),
            source,
        };
        let db = Arc::new(db.map_err(|m| open_error(m.into()))?);
        let conn = db.connection().map_err(|e| open_error(Box::new(e)))?;
        Ok(DuckStore { conn, db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for this backend's own code and its tests.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// A template that is one statement of the wrong kind, or does not
/// prepare, is refused before it runs.
pub(in crate::store) fn require_kind(
    db: &RawDatabase,
    sql: &str,
    expected: StatementKind,
) -> Result<(), String> {
    statements::require_one(sql)?;
    let found = db.statement_kind(sql)?;
    if found == expected {
        return Ok(());
    }
    Err(match expected {
        StatementKind::Select => format!(
            "it is {}; this template must be one read-only query",
            found.describe()
        ),
        _ => format!(
            "it is {}; this template must be {}",
            found.describe(),
            expected.describe()
        ),
    })
}

impl Backend for DuckStore {
    /// DuckDB serialises conflicting writes of its connections itself.
    fn try_clone(&self) -> Result<Box<dyn Backend>, StoreError> {
        Ok(Box::new(DuckStore {
            conn: self
                .conn
                .try_clone()
                .map_err(db_err("opening another connection"))?,
            db: self.db.clone(),
            path: self.path.clone(),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync> {
        let handle = self.conn.interrupt_handle();
        Arc::new(move || handle.interrupt())
    }

    /// The file and its write-ahead log.
    fn size_bytes(&self) -> Option<u64> {
        let file = std::fs::metadata(&self.path).ok()?.len();
        let mut wal = self.path.clone().into_os_string();
        wal.push(".wal");
        Some(file + std::fs::metadata(wal).map_or(0, |m| m.len()))
    }

    /// A table made and rolled back: needs a write transaction, leaves
    /// nothing.
    fn check_writable(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "BEGIN TRANSACTION; CREATE TABLE sandstack_ready_probe (x INTEGER); ROLLBACK;",
            )
            .map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                db_err("checking that the database takes writes")(e)
            })
    }
}

/// One process holds a DuckDB file: there is no fleet, every tick is this
/// process's own.
impl super::fleet::FleetStore for DuckStore {
    fn shared(&self) -> bool {
        false
    }

    fn register_worker(&self, _: &super::fleet::WorkerInfo) -> Result<(), StoreError> {
        Ok(())
    }

    fn claim_tick(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
        _: std::time::Duration,
    ) -> Result<super::fleet::Claim, StoreError> {
        Ok(super::fleet::Claim::Mine)
    }

    fn record_claimed_run(&self, run: &super::RunRecord) -> Result<i64, StoreError> {
        super::RunHistory::record_run(self, run)
    }

    fn finish_tick(&self, _: &str, _: &str, _: &str, _: i64) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn heartbeat(
        &self,
        _: &str,
        _: std::time::Duration,
        _: &[(String, String, i64)],
    ) -> Result<(), StoreError> {
        Ok(())
    }

    fn take_over_expired(&self, _: &str) -> Result<Vec<super::fleet::TakenOver>, StoreError> {
        Ok(Vec::new())
    }

    fn worker_stopped(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    fn workers(&self, _: std::time::Duration) -> Result<Vec<super::fleet::WorkerRow>, StoreError> {
        Ok(Vec::new())
    }

    fn prune_ticks(&self, _: std::time::Duration) -> Result<u64, StoreError> {
        Ok(0)
    }
}

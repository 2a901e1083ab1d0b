//! The DuckDB backend: one database file, one long metrics table per
//! `table_key` created on first use, rows appended as Arrow record batches
//! through DuckDB's Arrow appender, queries read back as Arrow.

mod dashboard;
mod metrics;
mod runs;
pub mod statements;

use std::any::Any;
use std::path::{Path, PathBuf};

use duckdb::Connection;

use super::error::db_err;
use super::{Backend, StoreError};

/// DuckDB may otherwise download extensions from the internet when a query
/// needs one: sandstack never lets it (no network surprises, no unverified
/// native code).
fn offline_config() -> duckdb::Result<duckdb::Config> {
    duckdb::Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")
}

fn open_error(path: &Path) -> impl FnOnce(duckdb::Error) -> StoreError + '_ {
    move |source| StoreError::Open {
        engine: "DuckDB",
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

pub struct DuckStore {
    conn: Connection,
    path: PathBuf,
}

impl DuckStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A missing folder is DuckDB's error otherwise, which does not say which.
            let _ = std::fs::create_dir_all(parent);
        }
        let conn = offline_config()
            .and_then(|c| Connection::open_with_flags(path, c))
            .map_err(open_error(path))?;
        Ok(DuckStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = offline_config()
            .and_then(Connection::open_in_memory_with_flags)
            .map_err(open_error(&path))?;
        Ok(DuckStore { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw connection, for this backend's own code and its tests.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Backend for DuckStore {
    /// DuckDB serialises conflicting writes of its connections itself.
    fn try_clone(&self) -> Result<Box<dyn Backend>, StoreError> {
        Ok(Box::new(DuckStore {
            conn: self
                .conn
                .try_clone()
                .map_err(db_err("opening another connection"))?,
            path: self.path.clone(),
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

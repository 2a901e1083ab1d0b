//! DuckDB opened through its C API, so sandstack holds the database handle.
//! duckdb-rs hides it, and two things need it: the database is opened with
//! external access off and its configuration locked (so SQL from the
//! metrics folder can neither read host files nor turn that back on), and
//! a template's kind is read by preparing it, never running it, on a
//! connection of its own to the real catalog (duckdb-rs does not expose a
//! prepared statement's type). Hand-written for want of either in
//! duckdb-rs; each unsafe block says what it relies on.

use std::ffi::{CStr, CString};
use std::path::Path;

use duckdb::{ffi, Connection};

use crate::store::EngineLimits;

/// What a statement does, as DuckDB's planner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Delete,
    /// Anything else, by DuckDB's name for it.
    Other(&'static str),
}

impl StatementKind {
    fn from_ffi(t: ffi::duckdb_statement_type) -> StatementKind {
        match t {
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_SELECT => StatementKind::Select,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DELETE => StatementKind::Delete,
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_INSERT => {
                StatementKind::Other("INSERT")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_UPDATE => {
                StatementKind::Other("UPDATE")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_EXPLAIN => {
                StatementKind::Other("EXPLAIN")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_CREATE => {
                StatementKind::Other("CREATE")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DROP => StatementKind::Other("DROP"),
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_ALTER => StatementKind::Other("ALTER"),
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_COPY => StatementKind::Other("COPY"),
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_ATTACH => {
                StatementKind::Other("ATTACH")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_DETACH => {
                StatementKind::Other("DETACH")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_LOAD => {
                StatementKind::Other("LOAD/INSTALL")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_SET => StatementKind::Other("SET"),
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_PRAGMA => {
                StatementKind::Other("PRAGMA")
            }
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_CALL => StatementKind::Other("CALL"),
            ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_TRANSACTION => {
                StatementKind::Other("a transaction statement")
            }
            _ => StatementKind::Other("a statement that is not a query"),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            StatementKind::Select => "a query",
            StatementKind::Delete => "a DELETE",
            StatementKind::Other(name) => name,
        }
    }
}

/// Settings every database is opened with: no host files, no extensions
/// fetched or loaded from disk, and no SQL that changes any of it.
const LOCKED_SETTINGS: &[(&str, &str)] = &[
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("lock_configuration", "true"),
];

extern "C" {
    /// From `native/duckdb_icu.c`: registers the ICU extension compiled in by
    /// build.rs with DuckDB's static extension registry; 0 on success.
    fn sandstack_register_icu() -> i32;
}

/// Register ICU (time zones, `TIMESTAMP WITH TIME ZONE` arithmetic) once,
/// before the first database opens; every database opened after loads it.
fn register_icu() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: takes no arguments and only touches DuckDB's registry, which
    // is made for registration before databases open.
    let ok = *REGISTERED.get_or_init(|| unsafe { sandstack_register_icu() } == 0);
    if ok {
        Ok(())
    } else {
        Err("DuckDB refused sandstack's built-in ICU extension (a build mismatch: rebuild sandstack)".into())
    }
}

/// A DuckDB database this process opened; closed when the last handle
/// (and every duckdb-rs connection made from it, which must go first)
/// is dropped.
pub(in crate::store) struct RawDatabase {
    db: ffi::duckdb_database,
}

// SAFETY: a duckdb_database may be used from any thread; DuckDB
// synchronises access to it internally.
unsafe impl Send for RawDatabase {}
unsafe impl Sync for RawDatabase {}

impl RawDatabase {
    /// Open `path` (None: in memory) with [`LOCKED_SETTINGS`] and the
    /// operator's engine limits.
    pub fn open(path: Option<&Path>, limits: EngineLimits) -> Result<RawDatabase, String> {
        let mut settings = Vec::new();
        if let Some(mb) = limits.memory_mb {
            settings.push(("memory_limit".into(), format!("{mb}MB")));
        }
        if let Some(n) = limits.threads {
            settings.push(("threads".into(), n.to_string()));
        }
        Self::open_with(path, settings)
    }

    /// A scratch database in memory for a batch's SQL: [`LOCKED_SETTINGS`],
    /// `memory_mb` and `threads`, and no temporary files (what does not fit
    /// in memory fails instead of spilling to the host's disk).
    pub fn open_scratch(memory_mb: u64, threads: u64) -> Result<RawDatabase, String> {
        Self::open_with(
            None,
            vec![
                ("memory_limit".into(), format!("{memory_mb}MB")),
                ("threads".into(), threads.max(1).to_string()),
                ("temp_directory".into(), String::new()),
            ],
        )
    }

    fn open_with(path: Option<&Path>, extra: Vec<(String, String)>) -> Result<RawDatabase, String> {
        register_icu()?;
        let mut settings: Vec<(String, String)> = extra;
        // Last: lock_configuration must follow every setting it locks.
        settings.extend(
            LOCKED_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let path = match path {
            Some(p) => Some(
                CString::new(p.as_os_str().as_encoded_bytes())
                    .map_err(|_| "the path holds a NUL character".to_string())?,
            ),
            None => None,
        };
        let mut config: ffi::duckdb_config = std::ptr::null_mut();
        let mut db: ffi::duckdb_database = std::ptr::null_mut();
        let mut error: *mut std::os::raw::c_char = std::ptr::null_mut();
        // SAFETY: every out-pointer is valid; the config is destroyed on
        // every path; `error` is freed with duckdb_free once read.
        unsafe {
            if ffi::duckdb_create_config(&mut config) != ffi::DuckDBSuccess {
                return Err("cannot create a DuckDB configuration".into());
            }
            for (name, value) in &settings {
                let (n, v) = (c(name), c(value));
                if ffi::duckdb_set_config(config, n.as_ptr(), v.as_ptr()) != ffi::DuckDBSuccess {
                    ffi::duckdb_destroy_config(&mut config);
                    return Err(format!("DuckDB refused the setting {name}={value}"));
                }
            }
            let state = ffi::duckdb_open_ext(
                path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()),
                &mut db,
                config,
                &mut error,
            );
            ffi::duckdb_destroy_config(&mut config);
            if state != ffi::DuckDBSuccess {
                let message = if error.is_null() {
                    "unknown error".to_string()
                } else {
                    let m = CStr::from_ptr(error).to_string_lossy().into_owned();
                    ffi::duckdb_free(error.cast());
                    m
                };
                return Err(message);
            }
        }
        Ok(RawDatabase { db })
    }

    /// A duckdb-rs connection to this database.
    pub fn connection(&self) -> duckdb::Result<Connection> {
        // SAFETY: `db` is open for as long as self lives; duckdb-rs does
        // not close it (it was not opened by duckdb-rs), and DuckStore
        // drops its connection before its RawDatabase.
        unsafe { Connection::open_from_raw(self.db) }
    }

    /// The kind of the one statement in `sql`, found by preparing it on a
    /// connection of its own: it is bound against the real catalog and
    /// never run.
    pub fn statement_kind(&self, sql: &str) -> Result<StatementKind, String> {
        let text = CString::new(sql).map_err(|_| "the SQL holds a NUL character".to_string())?;
        let mut con: ffi::duckdb_connection = std::ptr::null_mut();
        let mut extracted: ffi::duckdb_extracted_statements = std::ptr::null_mut();
        let mut prepared: ffi::duckdb_prepared_statement = std::ptr::null_mut();
        // SAFETY: `db` is open; the connection, the extracted statements
        // and the prepared statement are each released before returning.
        unsafe {
            if ffi::duckdb_connect(self.db, &mut con) != ffi::DuckDBSuccess {
                return Err("cannot connect to check the statement".into());
            }
            let n = ffi::duckdb_extract_statements(con, text.as_ptr(), &mut extracted);
            let result = if n != 1 {
                let e = ffi::duckdb_extract_statements_error(extracted);
                Err(if n == 0 && !e.is_null() {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                } else {
                    format!(
                        "it holds {n} statements; SQL from the metrics folder must be exactly one"
                    )
                })
            } else if ffi::duckdb_prepare_extracted_statement(con, extracted, 0, &mut prepared)
                != ffi::DuckDBSuccess
            {
                let e = ffi::duckdb_prepare_error(prepared);
                Err(if e.is_null() {
                    "it does not prepare".to_string()
                } else {
                    CStr::from_ptr(e).to_string_lossy().into_owned()
                })
            } else {
                Ok(StatementKind::from_ffi(
                    ffi::duckdb_prepared_statement_type(prepared),
                ))
            };
            ffi::duckdb_destroy_prepare(&mut prepared);
            ffi::duckdb_destroy_extracted(&mut extracted);
            ffi::duckdb_disconnect(&mut con);
            result
        }
    }
}

impl Drop for RawDatabase {
    fn drop(&mut self) {
        // SAFETY: opened by `open`, closed once, after every connection
        // (DuckStore's field order drops its connection first).
        unsafe { ffi::duckdb_close(&mut self.db) }
    }
}

fn c(text: &str) -> CString {
    // The names and values above hold no NUL.
    CString::new(text).unwrap_or_default()
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn the_operators_engine_limits_hold_and_sql_cannot_raise_them() {
        let limits = EngineLimits {
            memory_mb: Some(256),
            threads: Some(1),
        };
        let db = RawDatabase::open(None, limits).expect("open");
        let conn = db.connection().expect("conn");
        let (mem, threads): (String, i64) = conn
            .query_row(
                "SELECT current_setting('memory_limit'), current_setting('threads')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("settings");
        assert!(mem.contains("MiB") || mem.contains("MB"), "{mem}");
        assert_eq!(threads, 1);
        assert!(conn.execute_batch("SET memory_limit = '64GB'").is_err());
        assert!(conn.execute_batch("SET threads = 64").is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_planner_without_running() {
        let db = RawDatabase::open(None, EngineLimits::default()).expect("open");
        let conn = db.connection().expect("conn");
        conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1)")
            .expect("seed");
        assert_eq!(
            db.statement_kind("SELECT * FROM t"),
            Ok(StatementKind::Select)
        );
        assert_eq!(
            db.statement_kind("WITH x AS (SELECT 1) FROM t"),
            Ok(StatementKind::Select)
        );
        assert_eq!(
            db.statement_kind("DELETE FROM t"),
            Ok(StatementKind::Delete)
        );
        assert_eq!(
            db.statement_kind("DROP TABLE t"),
            Ok(StatementKind::Other("DROP"))
        );
        assert_eq!(
            db.statement_kind("INSERT INTO t VALUES (2)"),
            Ok(StatementKind::Other("INSERT"))
        );
        // A host path is refused as early as binding.
        let copy = db.statement_kind("COPY t TO '/tmp/x.csv'").unwrap_err();
        assert!(copy.contains("disabled by configuration"), "{copy}");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1, "nothing ran");
        assert!(db.statement_kind("SELECT 1; SELECT 2").is_err());
    }

    #[test]
    fn host_files_and_settings_are_out_of_reach() {
        let db = RawDatabase::open(None, EngineLimits::default()).expect("open");
        let conn = db.connection().expect("conn");
        for sql in [
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM read_text('/etc/hostname')",
            "SELECT * FROM glob('/etc/*')",
            "COPY (SELECT 1) TO '/tmp/sandstack-escape.csv'",
            "ATTACH '/tmp/sandstack-escape.duckdb' AS x",
            "SET enable_external_access = true",
            "INSTALL httpfs",
            "LOAD httpfs",
        ] {
            assert!(conn.execute_batch(sql).is_err(), "{sql} should fail");
        }
        assert!(!Path::new("/tmp/sandstack-escape.csv").exists());
    }
}

#[cfg(test)]
mod icu_tests {
    use super::*;

    #[test]
    fn time_zone_sql_works_as_in_other_duckdb_distributions() {
        let db = RawDatabase::open(None, EngineLimits::default()).expect("open");
        let conn = db.connection().expect("conn");
        // Anomstack's own default SQL: TIMESTAMPTZ minus an interval.
        let recent: bool = conn
            .query_row(
                "SELECT current_timestamp - interval '90' day < current_timestamp",
                [],
                |r| r.get(0),
            )
            .expect("timestamptz arithmetic");
        assert!(recent);
        let day: String = conn
            .query_row(
                "SELECT CAST(date_trunc('day', get_current_timestamp()) AS VARCHAR)",
                [],
                |r| r.get(0),
            )
            .expect("date_trunc on timestamptz");
        assert!(day.contains("00:00:00"), "{day}");
        let tokyo: String = conn
            .query_row(
                "SELECT CAST(TIMESTAMPTZ '2026-01-01 00:00:00+00' AT TIME ZONE 'Asia/Tokyo' AS VARCHAR)",
                [],
                |r| r.get(0),
            )
            .expect("AT TIME ZONE");
        assert_eq!(tokyo, "2026-01-01 09:00:00");
    }
}

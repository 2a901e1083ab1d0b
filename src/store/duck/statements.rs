//! How many SQL statements a text holds, counted by DuckDB's own parser
//! without running any of them.
//!
//! duckdb-rs's `prepare` runs every statement of a text but the last before
//! it returns, so `execute("DELETE ...; DROP TABLE metrics", [])` drops the
//! table. SQL from the metrics folder is untrusted: before it runs, its
//! statements are counted here, on a private in-memory database that holds
//! nothing and is only ever asked to parse. duckdb-rs has no call that
//! parses without executing, hence the few lines of FFI.

use std::ffi::CString;
use std::sync::{Mutex, OnceLock};

use duckdb::ffi;

/// A private in-memory database and connection, used only to parse.
struct Parser {
    db: ffi::duckdb_database,
    con: ffi::duckdb_connection,
}

// The handles are used under the mutex below, one thread at a time.
unsafe impl Send for Parser {}

impl Parser {
    fn open() -> Result<Parser, String> {
        let mut db: ffi::duckdb_database = std::ptr::null_mut();
        let mut con: ffi::duckdb_connection = std::ptr::null_mut();
        // SAFETY: null path opens an in-memory database; both out-pointers
        // are valid, and each handle is released in Drop if it was made.
        unsafe {
            if ffi::duckdb_open(std::ptr::null(), &mut db) != ffi::DuckDBSuccess {
                return Err("cannot open DuckDB's parser".into());
            }
            if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
                ffi::duckdb_close(&mut db);
                return Err("cannot connect to DuckDB's parser".into());
            }
        }
        Ok(Parser { db, con })
    }

    fn count(&self, sql: &str) -> Result<usize, String> {
        let text = CString::new(sql).map_err(|_| "the SQL holds a NUL character".to_string())?;
        let mut extracted: ffi::duckdb_extracted_statements = std::ptr::null_mut();
        // SAFETY: the connection is open and owned by self; `text` outlives
        // the call; `extracted` is destroyed before returning.
        unsafe {
            let n = ffi::duckdb_extract_statements(self.con, text.as_ptr(), &mut extracted);
            let error = if n == 0 {
                let e = ffi::duckdb_extract_statements_error(extracted);
                Some(if e.is_null() {
                    "the SQL holds no statement".to_string()
                } else {
                    std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
                })
            } else {
                None
            };
            ffi::duckdb_destroy_extracted(&mut extracted);
            match error {
                Some(e) => Err(e),
                None => Ok(n as usize),
            }
        }
    }
}

impl Drop for Parser {
    fn drop(&mut self) {
        // SAFETY: both handles were made by `open` and are released once.
        unsafe {
            ffi::duckdb_disconnect(&mut self.con);
            ffi::duckdb_close(&mut self.db);
        }
    }
}

/// `sql` is exactly one statement, or why not.
pub fn require_one(sql: &str) -> Result<(), String> {
    match count(sql)? {
        1 => Ok(()),
        n => Err(format!(
            "it holds {n} statements; SQL from the metrics folder must be exactly one"
        )),
    }
}

/// The number of statements in `sql`, or why it does not parse.
pub fn count(sql: &str) -> Result<usize, String> {
    static PARSER: OnceLock<Result<Mutex<Parser>, String>> = OnceLock::new();
    let parser = PARSER
        .get_or_init(|| Parser::open().map(Mutex::new))
        .as_ref()
        .map_err(Clone::clone)?;
    parser.lock().unwrap_or_else(|p| p.into_inner()).count(sql)
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_statements_without_running_them() {
        assert_eq!(count("SELECT 1"), Ok(1));
        assert_eq!(count("SELECT ';'; -- a comment; with semicolons"), Ok(1));
        assert_eq!(count("DELETE FROM t WHERE a = 1; DROP TABLE t"), Ok(2));
        assert!(count("SELEC nonsense").is_err());
    }
}

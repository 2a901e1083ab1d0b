//! `db: sqlite` (or `turso`): a SQLite file, opened read-only (Anomstack's
//! `ANOMSTACK_SQLITE_PATH`), or a Turso database over its HTTP API
//! (`ANOMSTACK_TURSO_DATABASE_URL` and `..._AUTH_TOKEN`, or a
//! `libsql://` or `*.turso.io` path). Either way the statement must be one
//! that SQLite itself calls read-only and that returns rows: locally,
//! `sqlite3_stmt_readonly`; on Turso, the same answer from a `describe`
//! request before anything runs.
//!
//! SQLite types values, not columns: a column whose values are all numbers
//! is read as numbers, any other as text (`normalize` reads timestamps
//! and numbers from text as it does a Python batch's).

#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use super::columns::{Budget, Cell, Columns, Kind};
use super::{optional, passing_status, server_words, Env, QueryLimits, WarehouseError};
use crate::cassette::tape::{Tape, TapedHttp};
use crate::cassette::{Interaction, Scrubber};

pub const NAME: &str = "sqlite";
const PATH_ENV: &str = "ANOMSTACK_SQLITE_PATH";
const TURSO_URL_ENV: &str = "ANOMSTACK_TURSO_DATABASE_URL";
const TURSO_TOKEN_ENV: &str = "ANOMSTACK_TURSO_AUTH_TOKEN";
/// What a replay may take from its cassette (Turso's address).
pub const REPLAY_SETTINGS: &[&str] = &[TURSO_URL_ENV];
/// Anomstack's default path.
const DEFAULT_PATH: &str = "tmpdata/anomstack-sqlite.db";
/// SQLite's own heap, process-wide (only these queries use SQLite): a
/// batch's query cannot take the process's memory with it.
const HEAP_LIMIT_BYTES: i64 = 512 << 20;

/// One value as SQLite holds it.
#[derive(Debug, Clone, PartialEq)]
enum Dyn {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(usize),
}

impl Dyn {
    fn size(&self) -> usize {
        match self {
            Dyn::Text(t) => t.len(),
            Dyn::Blob(n) => *n,
            _ => 8,
        }
    }
}

/// Rows read so far, held to the caps as they arrive.
struct Rows {
    names: Vec<String>,
    rows: Vec<Vec<Dyn>>,
    budget: Budget,
}

impl Rows {
    fn new(names: Vec<String>, limits: &QueryLimits) -> Rows {
        Rows {
            names,
            rows: Vec::new(),
            budget: Budget::new(NAME, limits),
        }
    }

    fn push(&mut self, row: Vec<Dyn>) -> Result<(), WarehouseError> {
        self.budget.next_row()?;
        self.budget.add_bytes(row.iter().map(Dyn::size).sum())?;
        self.rows.push(row);
        Ok(())
    }

    /// Columns of numbers as numbers, any other as text.
    fn finish(self, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        let n = self.names.len();
        let mut kinds = vec![Kind::Float; n];
        for row in &self.rows {
            for (i, v) in row.iter().enumerate().take(n) {
                match v {
                    Dyn::Text(_) => kinds[i] = Kind::Text,
                    Dyn::Blob(_) => {
                        return Err(WarehouseError::Answer {
                            db: NAME,
                            message: format!(
                            "column `{}` holds a BLOB: cast it to text or a number in the query",
                            crate::escape::log_line(&self.names[i])
                        ),
                        })
                    }
                    _ => {}
                }
            }
        }
        let mut columns = Columns::new(
            NAME,
            self.names.into_iter().zip(kinds.clone()).collect(),
            limits,
        );
        for row in self.rows {
            let cells = row
                .into_iter()
                .zip(&kinds)
                .map(|(v, k)| match (v, k) {
                    (Dyn::Null, _) => Cell::Null,
                    (Dyn::Int(i), Kind::Float) => Cell::Float(i as f64),
                    (Dyn::Real(f), Kind::Float) => Cell::Float(f),
                    (Dyn::Int(i), _) => Cell::Text(i.to_string()),
                    (Dyn::Real(f), _) => Cell::Text(f.to_string()),
                    (Dyn::Text(t), _) => Cell::Text(t),
                    (Dyn::Blob(_), _) => Cell::Null,
                })
                .collect();
            columns.push(cells)?;
        }
        columns.finish()
    }
}

/// SQLite's heap ceiling, set once for the process: only these queries
/// use SQLite, and a query cannot change it (PRAGMA is denied).
fn set_heap_limit() {
    static SET: std::sync::Once = std::sync::Once::new();
    // SAFETY: sqlite3_hard_heap_limit64 takes any value and may be called at any time.
    SET.call_once(|| unsafe {
        rusqlite::ffi::sqlite3_hard_heap_limit64(HEAP_LIMIT_BYTES);
    });
}

/// A local SQLite file.
pub struct Sqlite {
    path: std::path::PathBuf,
}

impl Sqlite {
    pub fn from_env(env: &Env) -> Result<Sqlite, WarehouseError> {
        let path = optional(env, PATH_ENV).unwrap_or_else(|| DEFAULT_PATH.into());
        Ok(Sqlite { path: path.into() })
    }

    fn open(&self) -> Result<rusqlite::Connection, WarehouseError> {
        if !self.path.is_file() {
            return Err(WarehouseError::Setting {
                db: NAME,
                variable: PATH_ENV,
                message: format!(
                    "there is no SQLite file at {}: set ANOMSTACK_SQLITE_PATH to the database file",
                    self.path.display()
                ),
            });
        }
        // Read-only, and no `file:` URIs (their parameters could change how it opens).
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags).map_err(|e| {
            WarehouseError::Setting {
                db: NAME,
                variable: PATH_ENV,
                message: format!("cannot open {} ({e})", self.path.display()),
            }
        })?;
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| WarehouseError::Answer {
                db: NAME,
                message: format!("cannot limit the connection ({e})"),
            })?;
        set_heap_limit();
        // By construction: a statement may only select, read and call
        // functions. PRAGMA (the heap limit is one, and process-wide),
        // ATTACH and every write are denied while it is prepared.
        conn.authorizer(Some(|ctx: rusqlite::hooks::AuthContext<'_>| {
            use rusqlite::hooks::{AuthAction, Authorization};
            match ctx.action {
                AuthAction::Select
                | AuthAction::Read { .. }
                | AuthAction::Function { .. }
                | AuthAction::Recursive => Authorization::Allow,
                _ => Authorization::Deny,
            }
        }));
        Ok(conn)
    }
}

impl super::Source for Sqlite {
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        let conn = self.open()?;
        let sql_error = |e: rusqlite::Error| WarehouseError::Query {
            db: NAME,
            message: super::words(&e.to_string()),
        };
        // rusqlite refuses a text with a second statement after the first;
        // the authorizer, anything but reading.
        let mut stmt = conn.prepare(sql).map_err(|e| {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::AuthorizationForStatementDenied) {
                WarehouseError::NotReadOnly {
                    db: NAME,
                    found: "a statement that does more than read (SQLite's authorizer denied it)"
                        .into(),
                }
            } else {
                sql_error(e)
            }
        })?;
        if !stmt.readonly() || stmt.column_count() == 0 {
            return Err(WarehouseError::NotReadOnly {
                db: NAME,
                found: if stmt.column_count() == 0 {
                    "a statement that returns no rows".into()
                } else {
                    "a statement that writes".into()
                },
            });
        }
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let n = names.len();
        // The time limit: SQLite is interrupted from a timer thread.
        let interrupt = conn.get_interrupt_handle();
        let (done, stop) = std::sync::mpsc::channel::<()>();
        let timeout = limits.timeout;
        let timer = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(timeout) {
                interrupt.interrupt();
                return true;
            }
            false
        });
        let read = (|| {
            let mut rows = Rows::new(names, limits);
            let mut cursor = stmt.query([]).map_err(sql_error)?;
            while let Some(row) = cursor.next().map_err(sql_error)? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    use rusqlite::types::ValueRef;
                    values.push(match row.get_ref(i).map_err(sql_error)? {
                        ValueRef::Null => Dyn::Null,
                        ValueRef::Integer(v) => Dyn::Int(v),
                        ValueRef::Real(v) => Dyn::Real(v),
                        // Sized before it is copied.
                        ValueRef::Text(t) if t.len() > limits.max_bytes => {
                            return Err(WarehouseError::too_large(NAME, limits))
                        }
                        ValueRef::Text(t) => Dyn::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Dyn::Blob(b.len()),
                    });
                }
                rows.push(values)?;
            }
            Ok(rows)
        })();
        let _ = done.send(());
        let interrupted = timer.join().unwrap_or(false);
        match read {
            Err(_) if interrupted => Err(WarehouseError::timed_out(NAME, limits)),
            Err(e) => Err(e),
            Ok(rows) => rows.finish(limits),
        }
    }
}

/// A Turso (libSQL) database over HTTP (the "Hrana over HTTP" pipeline).
pub struct Turso {
    url: url::Url,
    token: Option<String>,
}

impl Turso {
    /// Turso, when the operator's variables name it.
    pub fn from_env(env: &Env) -> Result<Option<Turso>, WarehouseError> {
        let path = optional(env, PATH_ENV);
        let remote_path = path.as_deref().filter(|p| {
            p.starts_with("libsql://") || p.starts_with("https://") || p.ends_with("turso.io")
        });
        let url = match (optional(env, TURSO_URL_ENV), remote_path) {
            (Some(u), _) if path.is_none() || remote_path.is_some() => u,
            (_, Some(p)) => p.to_string(),
            _ => return Ok(None),
        };
        let https = match url.split_once("://") {
            Some(("libsql" | "wss" | "https", rest)) => format!("https://{rest}"),
            Some(("http" | "ws", rest)) => format!("http://{rest}"),
            _ => format!("https://{url}"),
        };
        let url = url::Url::parse(&https).map_err(|e| WarehouseError::Setting {
            db: NAME,
            variable: TURSO_URL_ENV,
            message: format!("`{url}` is not a URL ({e})"),
        })?;
        Ok(Some(Turso {
            url,
            token: optional(env, TURSO_TOKEN_ENV),
        }))
    }

    pub fn connect(
        self,
        tape: Tape,
        env: &Env,
        scrub: &[String],
    ) -> Result<TursoSource, WarehouseError> {
        let mut scrubber = Scrubber::new(env, scrub);
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(t) = &self.token {
            headers.push(("authorization".into(), format!("Bearer {t}")));
        }
        scrubber.learn_headers(&headers);
        let http = TapedHttp::new(tape, scrubber)
            .map_err(|message| WarehouseError::Unavailable { db: NAME, message })?;
        let pipeline = self
            .url
            .join("/v2/pipeline")
            .map_err(|e| WarehouseError::Setting {
                db: NAME,
                variable: TURSO_URL_ENV,
                message: e.to_string(),
            })?;
        Ok(TursoSource {
            http,
            pipeline,
            headers,
        })
    }
}

pub struct TursoSource {
    http: TapedHttp,
    pipeline: url::Url,
    headers: Vec<(String, String)>,
}

impl TursoSource {
    /// One request and a close, in one pipeline; the request's result.
    fn request(
        &mut self,
        request: Value,
        deadline: Instant,
        limits: &QueryLimits,
    ) -> Result<Value, WarehouseError> {
        let body = json!({"requests": [request, {"type": "close"}]}).to_string();
        let answer = super::send(
            &mut self.http,
            NAME,
            "Turso",
            Method::POST,
            &self.pipeline,
            &self.headers,
            body.as_bytes(),
            deadline,
            limits,
        )?;
        if answer.status != 200 {
            let message = format!("HTTP {}: {}", answer.status, server_words(&answer.body));
            return Err(if passing_status(answer.status) {
                WarehouseError::Unavailable { db: NAME, message }
            } else if answer.status == 401 || answer.status == 403 {
                WarehouseError::Setting {
                    db: NAME,
                    variable: TURSO_TOKEN_ENV,
                    message,
                }
            } else {
                WarehouseError::Query { db: NAME, message }
            });
        }
        let value: Value =
            serde_json::from_slice(&answer.body).map_err(|_| WarehouseError::Answer {
                db: NAME,
                message: format!("not JSON: {}", server_words(&answer.body)),
            })?;
        let first = value.pointer("/results/0").cloned().unwrap_or(Value::Null);
        match first.get("type").and_then(Value::as_str) {
            Some("ok") => Ok(first
                .pointer("/response/result")
                .cloned()
                .unwrap_or(Value::Null)),
            Some("error") => Err(WarehouseError::Query {
                db: NAME,
                message: first
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(super::words)
                    .unwrap_or_else(|| "an error without a message".into()),
            }),
            _ => Err(WarehouseError::Answer {
                db: NAME,
                message: "the pipeline's answer has no result".into(),
            }),
        }
    }
}

fn turso_value(v: &Value) -> Result<Dyn, WarehouseError> {
    let bad = || WarehouseError::Answer {
        db: NAME,
        message: format!(
            "`{}` is not a libSQL value",
            crate::escape::truncate(&v.to_string(), 60)
        ),
    };
    let text = v.get("value");
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("null") => Dyn::Null,
        Some("integer") => Dyn::Int(
            text.and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?,
        ),
        Some("float") => Dyn::Real(text.and_then(Value::as_f64).ok_or_else(bad)?),
        Some("text") => Dyn::Text(text.and_then(Value::as_str).ok_or_else(bad)?.to_string()),
        Some("blob") => Dyn::Blob(
            v.get("base64")
                .and_then(Value::as_str)
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(b.trim_end_matches('='))
                        .ok()
                })
                .map_or(0, |b| b.len()),
        ),
        _ => return Err(bad()),
    })
}

impl super::Source for TursoSource {
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        let deadline = Instant::now() + limits.timeout;
        let described = self.request(json!({"type": "describe", "sql": sql}), deadline, limits)?;
        let readonly = described.get("is_readonly").and_then(Value::as_bool) == Some(true);
        let has_columns = described
            .get("cols")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if !readonly || !has_columns {
            return Err(WarehouseError::NotReadOnly {
                db: NAME,
                found: if readonly {
                    "a statement that returns no rows".into()
                } else {
                    "a statement that writes (Turso's describe)".into()
                },
            });
        }
        let result = self.request(
            json!({"type": "execute", "stmt": {"sql": sql, "want_rows": true}}),
            deadline,
            limits,
        )?;
        let names: Vec<String> = result
            .get("cols")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let n = names.len();
        let mut rows = Rows::new(names, limits);
        for row in result
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let values = row.as_array().ok_or_else(|| WarehouseError::Answer {
                db: NAME,
                message: "a row is not an array".into(),
            })?;
            if values.len() != n {
                return Err(WarehouseError::Answer {
                    db: NAME,
                    message: format!("a row has {} values for {n} columns", values.len()),
                });
            }
            rows.push(values.iter().map(turso_value).collect::<Result<_, _>>()?)?;
        }
        rows.finish(limits)
    }

    fn replay_settings(&self) -> Env {
        let base = self
            .pipeline
            .join("/")
            .map(|u| u.to_string())
            .unwrap_or_default();
        Env::from([(TURSO_URL_ENV.to_string(), base)])
    }

    fn take_interactions(&mut self) -> Vec<Interaction> {
        self.http.take_interactions()
    }
}

/// How long the tests give a query that never ends.
#[cfg(test)]
const SHORT: Duration = Duration::from_millis(300);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warehouse::Source;

    fn limits() -> QueryLimits {
        QueryLimits {
            timeout: Duration::from_secs(10),
            max_rows: 1000,
            max_bytes: 1 << 20,
        }
    }

    fn file_with_rows() -> (tempfile::TempDir, Env) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("m.db");
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(
            "create table m (ts text, name text, v real);
             insert into m values ('2026-01-01 00:00:00', 'a', 1.5), ('2026-01-01 00:01:00', 'b', 2);",
        )
        .expect("rows");
        let env = Env::from([(PATH_ENV.to_string(), path.display().to_string())]);
        (dir, env)
    }

    #[test]
    fn a_query_reads_numbers_as_numbers_and_the_rest_as_text() {
        let (_dir, env) = file_with_rows();
        let mut s = Sqlite::from_env(&env).expect("source");
        let batch = s
            .query(
                "select ts as metric_timestamp, name as metric_name, v as metric_value, datetime('now') as now from m",
                &limits(),
            )
            .expect("rows");
        assert_eq!(batch.num_rows(), 2);
        let types: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(types, ["Utf8", "Utf8", "Float64", "Utf8"]);
    }

    #[test]
    fn writes_second_statements_and_attach_are_refused_and_the_file_is_unchanged() {
        let (_dir, env) = file_with_rows();
        let mut s = Sqlite::from_env(&env).expect("source");
        for sql in [
            "delete from m",
            "insert into m values ('x', 'y', 1) returning *",
            "select 1; delete from m",
            "attach database 'other.db' as o",
            "create table t as select * from m",
            "pragma hard_heap_limit = 100000",
            "vacuum into 'copy.db'",
            "pragma table_info(m)",
        ] {
            let e = s.query(sql, &limits()).expect_err(sql);
            let text = e.to_string();
            // A second statement is refused whichever check meets it first;
            // everything else is denied as more than a read.
            let refused = if sql.contains(';') {
                matches!(
                    e,
                    WarehouseError::Query { .. } | WarehouseError::NotReadOnly { .. }
                )
            } else {
                matches!(e, WarehouseError::NotReadOnly { .. })
            };
            assert!(refused, "{sql}: {text}");
        }
        let batch = s
            .query("select count(*) as n from m", &limits())
            .expect("count");
        let n = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .expect("f64")
            .value(0);
        assert_eq!(n, 2.0);
    }

    #[test]
    fn a_query_past_its_time_is_interrupted() {
        let (_dir, env) = file_with_rows();
        let mut s = Sqlite::from_env(&env).expect("source");
        let forever =
            "with recursive c(x) as (select 1 union all select x + 1 from c) select max(x) from c";
        let started = Instant::now();
        let e = s
            .query(
                forever,
                &QueryLimits {
                    timeout: SHORT,
                    ..limits()
                },
            )
            .expect_err("stopped");
        assert!(e.is_timeout(), "{e}");
        // Unstopped, the query never ends; the bound leaves a loaded
        // machine all the time it needs past SHORT.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn rows_past_the_cap_are_refused() {
        let (_dir, env) = file_with_rows();
        let mut s = Sqlite::from_env(&env).expect("source");
        let many = "with recursive c(x) as (select 1 union all select x + 1 from c limit 5000) select x from c";
        let e = s.query(many, &limits()).expect_err("capped");
        assert!(e.to_string().contains("more than 1000 rows"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_variable() {
        let env = Env::from([(PATH_ENV.to_string(), "/nonexistent/x.db".to_string())]);
        let e = Sqlite::from_env(&env)
            .expect("source")
            .query("select 1", &limits())
            .unwrap_err();
        assert!(e.to_string().contains("ANOMSTACK_SQLITE_PATH"), "{e}");
    }

    #[test]
    fn turso_is_chosen_by_its_url_or_a_remote_path() {
        let env = Env::from([(
            TURSO_URL_ENV.to_string(),
            "libsql://db-me.turso.io".to_string(),
        )]);
        let t = Turso::from_env(&env).expect("ok").expect("turso");
        assert_eq!(t.url.as_str(), "https://db-me.turso.io/");
        let env = Env::from([(PATH_ENV.to_string(), "x.db".to_string())]);
        assert!(Turso::from_env(&env).expect("ok").is_none());
        assert_eq!(
            turso_value(&json!({"type": "integer", "value": "42"})).expect("i"),
            Dyn::Int(42)
        );
        assert_eq!(turso_value(&json!({"type": "null"})).expect("n"), Dyn::Null);
        assert!(turso_value(&json!({"type": "integer", "value": 42})).is_err());
    }
}

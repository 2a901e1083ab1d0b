//! The helper process's side (`sandstack __child sql`): read the statement
//! and the rows, make the scratch database, run the statement once, and
//! stream back what it produced. Any refusal is one ERROR frame with
//! DuckDB's words; the parent explains a death.

use std::io::{Read, Write};

use arrow::record_batch::RecordBatch;
use duckdb::Connection;

use super::{decode, encode, tag, Header, Mode};
use crate::child;
use crate::store::duck::raw::{RawDatabase, StatementKind};
use crate::store::TableKey;

/// Positions per POSITIONS frame.
const POSITIONS_PER_FRAME: usize = 1 << 16;

/// The helper's main: answers on stdout, always exits 0 (a refusal is an
/// answer; a crash is the parent's to read from the exit status).
pub fn serve() -> u8 {
    let (mut input, mut output) = match child::stdio() {
        Ok(io) => io,
        Err(e) => {
            eprintln!("sandstack sql helper: {e}");
            return 1;
        }
    };
    if let Err(message) = serve_on(&mut input, &mut output) {
        let message = crate::store::runs::capped_error(&message);
        let _ = child::write_frame(&mut output, tag::ERROR, message.as_bytes());
    }
    let _ = output.flush();
    0
}

fn serve_on(input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    let header: Header = match child::read_frame(input).map_err(|e| e.to_string())? {
        Some((tag::HEADER, bytes)) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("a bad request: {e}"))?
        }
        _ => return Err("a request without its header".into()),
    };
    let table = TableKey {
        schema: header.schema.clone(),
        table: header.table.clone(),
    };
    let db = RawDatabase::open_scratch(header.memory_mb, header.threads)?;
    let conn = db.connection().map_err(|e| e.to_string())?;
    create_table(&conn, &table)?;
    if let Some(us) = header.now_us {
        set_clock(&conn, us)?;
    }
    sqlite_functions(&conn)?;
    let expected = match header.mode {
        Mode::Query => StatementKind::Select,
        Mode::Delete => StatementKind::Delete,
    };
    crate::store::duck::require_kind(&db, &header.sql, expected)
        .map_err(|e| with_hint(e, &table))?;
    let loaded = load_rows(input, &conn, &table)?;
    match header.mode {
        Mode::Query => stream_result(&conn, &header.sql, output, &table)?,
        Mode::Delete => removed_positions(&conn, &header.sql, loaded, output, &table)?,
    }
    child::write_frame(output, tag::DONE, &[]).map_err(|e| e.to_string())
}

/// Run the SQL at `now_us`: DuckDB resolves a macro of the database's own
/// before the built-in function of the same name, so these stand in for
/// the clock's functions in this scratch database (and nowhere else).
fn set_clock(conn: &Connection, now_us: i64) -> Result<(), String> {
    let t = chrono::DateTime::from_timestamp_micros(now_us)
        .ok_or_else(|| format!("the clock's time ({now_us} µs from 1970) is out of range"))?;
    let at = format!("TIMESTAMPTZ '{}'", t.format("%Y-%m-%d %H:%M:%S%.6f+00"));
    let mut sql = String::new();
    for (names, cast) in CLOCK_FUNCTIONS {
        for f in names {
            let value = match cast {
                Some(to) => format!("CAST({at} AS {to})"),
                None => at.clone(),
            };
            sql.push_str(&format!("CREATE MACRO {f}() AS {value};\n"));
        }
    }
    conn.execute_batch(&sql)
        .map_err(|e| format!("setting the clock: {e}"))
}

/// SQLite's functions that Anomstack's examples call and DuckDB lacks, as
/// macros of this scratch database (after the clock's, so they read it):
/// `DATETIME('now')` is the clock's time in UTC, `DATETIME(text)` that
/// text as a timestamp (NULL if it is not one, which ingest then refuses
/// naming the column). Anomstack's `example_simple` uses the first; its
/// own translation to DuckDB fails on it.
fn sqlite_functions(conn: &Connection) -> Result<(), String> {
    conn.execute_batch(
        "CREATE MACRO datetime(t) AS CASE WHEN lower(CAST(t AS VARCHAR)) = 'now' \
         THEN make_timestamp(epoch_us(now())) ELSE TRY_CAST(t AS TIMESTAMP) END;",
    )
    .map_err(|e| format!("defining SQLite's functions: {e}"))
}

/// DuckDB's functions that read the clock, and what each returns (a cast
/// from the instant, made in the session's time zone as the real ones are).
const CLOCK_FUNCTIONS: [(&[&str], Option<&str>); 4] = [
    (
        &[
            "now",
            "get_current_timestamp",
            "transaction_timestamp",
            "current_timestamp",
        ],
        None,
    ),
    (
        &["current_localtimestamp", "localtimestamp"],
        Some("TIMESTAMP"),
    ),
    (&["current_date", "today", "get_current_date"], Some("DATE")),
    (&["current_time", "get_current_time"], Some("TIMETZ")),
];

fn create_table(conn: &Connection, table: &TableKey) -> Result<(), String> {
    let mut sql = String::new();
    if let Some(schema) = &table.schema {
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"));
    }
    sql.push_str(&crate::store::duck::create_table_sql(&table.quoted()));
    conn.execute_batch(&sql).map_err(|e| e.to_string())
}

/// Append every ROWS frame until END; how many rows.
fn load_rows(input: &mut impl Read, conn: &Connection, table: &TableKey) -> Result<usize, String> {
    let mut appender = match &table.schema {
        Some(s) => conn.appender_to_db(&table.table, s),
        None => conn.appender(&table.table),
    }
    .map_err(|e| e.to_string())?;
    let mut loaded = 0;
    loop {
        match child::read_frame(input).map_err(|e| e.to_string())? {
            Some((tag::ROWS, bytes)) => {
                let batch = decode(&bytes).map_err(|e| e.to_string())?;
                loaded += batch.num_rows();
                appender
                    .append_record_batch(batch)
                    .map_err(|e| format!("loading the batch's rows: {e}"))?;
            }
            Some((tag::END, _)) => break,
            _ => return Err("the rows ended early".into()),
        }
    }
    appender
        .flush()
        .map_err(|e| format!("loading the batch's rows: {e}"))?;
    Ok(loaded)
}

fn stream_result(
    conn: &Connection,
    sql: &str,
    output: &mut impl Write,
    table: &TableKey,
) -> Result<(), String> {
    let mut stmt = conn
        .prepare(sql)
        .map_err(|e| with_hint(e.to_string(), table))?;
    let stream = stmt
        .stream_arrow([])
        .map_err(|e| with_hint(e.to_string(), table))?;
    for batch in stream {
        let batch: RecordBatch = batch.map_err(|e| e.to_string())?;
        let bytes = encode(&batch).map_err(|e| e.to_string())?;
        // The parent stops reading past its caps: then this write fails.
        child::write_frame(output, tag::BATCH, &bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Run the DELETE; send the positions (in load order) of the rows it
/// removed.
fn removed_positions(
    conn: &Connection,
    sql: &str,
    loaded: usize,
    output: &mut impl Write,
    table: &TableKey,
) -> Result<(), String> {
    let t = table.quoted();
    // A table filled by one appender numbers its rows 0.. in load order.
    let (n, max): (i64, Option<i64>) = conn
        .query_row(&format!("SELECT count(*), max(rowid) FROM {t}"), [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| e.to_string())?;
    if n as usize != loaded || max.unwrap_or(-1) != n - 1 {
        return Err(format!(
            "the scratch table numbered its {n} rows unexpectedly (last row id {max:?})"
        ));
    }
    conn.execute(sql, [])
        .map_err(|e| with_hint(e.to_string(), table))?;
    let mut kept = vec![false; loaded];
    let mut stmt = conn
        .prepare(&format!("SELECT rowid FROM {t}"))
        .map_err(|e| e.to_string())?;
    let ids = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string())?;
    for id in ids {
        let id = id.map_err(|e| e.to_string())?;
        if let Some(k) = usize::try_from(id).ok().and_then(|i| kept.get_mut(i)) {
            *k = true;
        }
    }
    let removed: Vec<u64> = kept
        .iter()
        .enumerate()
        .filter(|(_, k)| !**k)
        .map(|(i, _)| i as u64)
        .collect();
    for chunk in removed.chunks(POSITIONS_PER_FRAME) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|p| p.to_le_bytes()).collect();
        child::write_frame(output, tag::POSITIONS, &bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A statement that names a table the scratch database lacks: say what it
/// holds.
fn with_hint(message: String, table: &TableKey) -> String {
    if message.contains("Catalog Error") && message.contains("does not exist") {
        let name = match &table.schema {
            Some(s) => format!("{s}.{}", table.table),
            None => table.table.clone(),
        };
        return format!(
            "{message}\n(a batch's SQL sees one table, {name}, with the batch's own rows: \
             no other table, batch or database; see the README's security model)"
        );
    }
    message
}

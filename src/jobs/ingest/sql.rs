//! `ingest_sql`: the batch's rendered SQL, run natively in DuckDB.

use arrow::record_batch::RecordBatch;
use duckdb::Connection;

pub fn query(conn: &Connection, sql: &str) -> Result<Vec<RecordBatch>, String> {
    // duckdb-rs would run every statement but the last while preparing.
    crate::store::statements::require_one(sql)?;
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).map_err(|e| e.to_string())?.collect();
    Ok(batches)
}

//! The metrics tables in PostgreSQL: created on first use under a lock
//! (workers may create the same one at once) with the index the jobs'
//! queries use, rows appended by binary `COPY`, and the metrics folder's
//! SQL run in read-only transactions that are always rolled back (so a
//! template cannot change data or this connection's settings).

use std::cell::RefCell;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient};

use super::micros::Micros;
use super::migrations::SCHEMA_LOCK;
use super::pg_err;
use super::{arrow_rows, engine_words, PgStore};
use crate::store::metrics::{MetricsStore, MetricsTx, NewestValue, TimestampsByMetric};
use crate::store::{StoreError, TableKey};

/// What a template that fails on PostgreSQL may be missing.
const DIALECT_HINT: &str = "the store is PostgreSQL: a template written for DuckDB (epoch_us, \
     make_timestamp, arg_max, QUALIFY...) must be rewritten in PostgreSQL's SQL";

/// A template's failure, with the dialect hint when the server did not
/// know a function, type or column.
fn template_failure(e: &postgres::Error) -> String {
    let words = engine_words(e);
    let unknown = e
        .code()
        .is_some_and(|c| matches!(c.code(), "42883" | "42704" | "42703" | "42601"));
    if unknown {
        format!("{words} ({DIALECT_HINT})")
    } else {
        words
    }
}

fn create_sql(key: &TableKey) -> String {
    let t = super::quoted(key);
    // One index per table, named after it (PostgreSQL cuts names at 63 bytes).
    let index = format!("{}_sandstack_lookup", key.table.to_lowercase());
    let mut sql = String::new();
    if let Some(schema) = &key.schema {
        let schema = schema.to_lowercase();
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"));
    }
    sql.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {t} (
            metric_timestamp TIMESTAMP NOT NULL,
            metric_batch TEXT NOT NULL,
            metric_name TEXT NOT NULL,
            metric_type TEXT NOT NULL,
            metric_value DOUBLE PRECISION,
            metadata TEXT
        );
        CREATE INDEX IF NOT EXISTS \"{index}\" ON {t} (metric_batch, metric_type, metric_name, metric_timestamp);"
    ));
    sql
}

impl PgStore {
    /// Make sure `table_key`'s table exists (once per connection).
    pub(super) fn ensure_table(&self, table_key: &str) -> Result<TableKey, StoreError> {
        let key = TableKey::parse(table_key)?;
        if self.known_tables().contains(table_key) {
            return Ok(key);
        }
        let ctx = format!("creating metrics table {table_key}");
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(&ctx))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg_err(&ctx))?;
        tx.batch_execute(&create_sql(&key)).map_err(pg_err(&ctx))?;
        tx.commit().map_err(pg_err(&ctx))?;
        self.known_tables().insert(table_key.to_string());
        Ok(key)
    }

    fn table_exists(&self, key: &TableKey) -> Result<bool, StoreError> {
        self.conn()?
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&super::quoted(key)])
            .map(|r| r.get(0))
            .map_err(pg_err("looking up table"))
    }

    /// Run a template read-only and roll back; errors are the engine's
    /// words with the dialect hint.
    fn read_template(&self, sql: &str) -> Result<RecordBatch, String> {
        let mut conn = self.conn().map_err(|e| e.to_string())?;
        let mut tx = conn
            .build_transaction()
            .read_only(true)
            .start()
            .map_err(|e| engine_words(&e))?;
        // Preparing refuses more than one statement.
        let stmt = tx.prepare(sql).map_err(|e| template_failure(&e))?;
        let rows = tx.query(&stmt, &[]).map_err(|e| template_failure(&e))?;
        let batch = arrow_rows::to_batch(stmt.columns(), &rows)?;
        tx.rollback().map_err(|e| engine_words(&e))?;
        Ok(batch)
    }
}

/// Write `batches` (in the metrics schema) to `key`'s table by binary COPY.
fn copy_in(
    client: &mut impl GenericClient,
    key: &TableKey,
    batches: &[RecordBatch],
) -> Result<usize, StoreError> {
    let ctx = format!("appending to {}", super::quoted(key));
    let sink = client
        .copy_in(&format!(
            "COPY {} (metric_timestamp, metric_batch, metric_name, metric_type, metric_value, metadata) \
             FROM STDIN (FORMAT binary)",
            super::quoted(key)
        ))
        .map_err(pg_err(&ctx))?;
    let types = [
        Type::TIMESTAMP,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::FLOAT8,
        Type::TEXT,
    ];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    let mut rows = 0;
    for b in batches {
        let bad = |what: &str| StoreError::Sql {
            context: ctx.clone(),
            message: format!("column {what} is not in the metrics schema"),
        };
        let ts = b
            .column(0)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| bad("metric_timestamp"))?;
        let text =
            |i: usize, name: &str| b.column(i).as_string_opt::<i32>().ok_or_else(|| bad(name));
        let (batch, name, kind, meta) = (
            text(1, "metric_batch")?,
            text(2, "metric_name")?,
            text(3, "metric_type")?,
            text(5, "metadata")?,
        );
        let value = b
            .column(4)
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| bad("metric_value"))?;
        for i in 0..b.num_rows() {
            let t = Micros(ts.value(i));
            let v = (!value.is_null(i)).then(|| value.value(i));
            let m = (!meta.is_null(i)).then(|| meta.value(i));
            let row: [&(dyn ToSql + Sync); 6] =
                [&t, &batch.value(i), &name.value(i), &kind.value(i), &v, &m];
            writer.write(&row).map_err(pg_err(&ctx))?;
        }
        rows += b.num_rows();
    }
    writer.finish().map_err(pg_err(&ctx))?;
    Ok(rows)
}

fn append_all(
    client: &mut Client,
    pending: &[(TableKey, Vec<RecordBatch>)],
) -> Result<usize, StoreError> {
    let mut tx = client
        .transaction()
        .map_err(pg_err("starting a transaction"))?;
    let mut rows = 0;
    for (key, batches) in pending {
        rows += copy_in(&mut tx, key, batches)?;
    }
    tx.commit().map_err(pg_err("committing"))?;
    Ok(rows)
}

impl MetricsStore for PgStore {
    fn ensure_metrics_table(&self, table_key: &str) -> Result<(), StoreError> {
        self.ensure_table(table_key).map(|_| ())
    }

    fn append_metrics(
        &mut self,
        table_key: &str,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        let key = self.ensure_table(table_key)?;
        append_all(&mut *self.conn()?, &[(key, batches.to_vec())])
    }

    fn count_rows(&self, table_key: &str) -> Result<u64, StoreError> {
        let key = TableKey::parse(table_key)?;
        if !self.table_exists(&key)? {
            return Ok(0);
        }
        let n: i64 = self
            .conn()?
            .query_one(
                &format!("SELECT count(*) FROM {}", super::quoted(&key)),
                &[],
            )
            .map_err(pg_err(format!("counting rows of {table_key}")))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    fn batch_has_rows(&self, table_key: &str, batch: &str) -> Result<bool, StoreError> {
        let key = TableKey::parse(table_key)?;
        if !self.table_exists(&key)? {
            return Ok(false);
        }
        self.conn()?
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE metric_batch = $1)",
                    super::quoted(&key)
                ),
                &[&batch],
            )
            .map(|r| r.get(0))
            .map_err(pg_err(format!("counting the rows of batch {batch}")))
    }

    fn timestamps_of_type(
        &self,
        table_key: &str,
        batch: &str,
        metric_type: &str,
    ) -> Result<TimestampsByMetric, StoreError> {
        let key = self.ensure_table(table_key)?;
        let rows = self
            .conn()?
            .query(
                &format!(
                    "SELECT metric_name, metric_timestamp FROM {} WHERE metric_batch = $1 AND metric_type = $2",
                    super::quoted(&key)
                ),
                &[&batch, &metric_type],
            )
            .map_err(pg_err("reading existing rows"))?;
        let mut out = TimestampsByMetric::new();
        for r in rows {
            let ts: Micros = r.get(1);
            out.entry(r.get(0)).or_default().insert(ts.0);
        }
        Ok(out)
    }

    fn newest_values(
        &self,
        table_key: &str,
        batch: &str,
        metric: &str,
        n: usize,
    ) -> Result<Vec<NewestValue>, StoreError> {
        let t = super::quoted(&self.ensure_table(table_key)?);
        let sql = format!(
            "SELECT m.metric_timestamp, m.metric_value, \
             EXISTS (SELECT 1 FROM {t} a WHERE a.metric_batch = m.metric_batch AND a.metric_name = m.metric_name \
              AND a.metric_type = 'tholdalert' AND a.metric_timestamp = m.metric_timestamp) \
             FROM {t} m WHERE m.metric_batch = $1 AND m.metric_name = $2 AND m.metric_type = 'metric' \
             ORDER BY m.metric_timestamp DESC LIMIT $3"
        );
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = self
            .conn()?
            .query(&sql, &[&batch, &metric, &limit])
            .map_err(pg_err("reading threshold data"))?;
        Ok(rows
            .iter()
            .map(|r| NewestValue {
                timestamp_us: r.get::<_, Micros>(0).0,
                value: r.get::<_, Option<f64>>(1).unwrap_or(f64::NAN),
                alerted: r.get(2),
            })
            .collect())
    }

    fn query_template(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        self.read_template(sql)
            .map(|b| vec![b])
            .map_err(|message| StoreError::Sql {
                context: "running query".into(),
                message,
            })
    }

    fn delete_with_template(
        &mut self,
        table_key: &str,
        batch: &str,
        sql: &str,
        context: &str,
    ) -> Result<usize, StoreError> {
        let refuse = |message: String| StoreError::Sql {
            context: context.to_string(),
            message,
        };
        let key = self.ensure_table(table_key)?;
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(context))?;
        check_one_delete(&mut tx, sql, &key).map_err(refuse)?;
        let others = format!(
            "SELECT count(*) FROM {} WHERE metric_batch <> $1",
            super::quoted(&key)
        );
        let count = |tx: &mut postgres::Transaction<'_>| -> Result<i64, StoreError> {
            tx.query_one(&others, &[&batch])
                .map(|r| r.get(0))
                .map_err(pg_err(context))
        };
        let before = count(&mut tx)?;
        let removed = tx
            .execute(sql, &[])
            .map_err(|e| refuse(template_failure(&e)))?;
        let after = count(&mut tx)?;
        if after != before {
            tx.rollback().map_err(pg_err(context))?;
            return Err(refuse(crate::store::metrics::removes_other_batches(
                before - after,
                batch,
            )));
        }
        tx.commit().map_err(pg_err(context))?;
        Ok(removed as usize)
    }

    fn begin(&mut self) -> Result<Box<dyn MetricsTx + '_>, StoreError> {
        Ok(Box::new(PgTx {
            store: self,
            pending: RefCell::new(Vec::new()),
        }))
    }
}

/// Refuse `sql` unless its plan is exactly one DELETE, from `key`'s table
/// (read from `EXPLAIN`, which plans without running).
fn check_one_delete(
    tx: &mut postgres::Transaction<'_>,
    sql: &str,
    key: &TableKey,
) -> Result<(), String> {
    let plan: JsonText = tx
        .query_one(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
        .map_err(|e| template_failure(&e))?
        .try_get(0)
        .map_err(|e| e.to_string())?;
    let plan: serde_json::Value = serde_json::from_str(&plan.0).map_err(|e| e.to_string())?;
    let mut writes = Vec::new();
    collect_writes(&plan, &mut writes);
    match writes.as_slice() {
        [(op, table)] if op == "Delete" && *table == key.table.to_lowercase() => Ok(()),
        [] => Err("it is not a DELETE; this template must be one DELETE statement".into()),
        found => Err(format!(
            "it writes {}; this template must be one DELETE from {}",
            found
                .iter()
                .map(|(op, t)| format!("{op} on {t}"))
                .collect::<Vec<_>>()
                .join(", "),
            super::quoted(key)
        )),
    }
}

/// A `json` value's text (binary `json` is its text).
struct JsonText(String);

impl<'a> postgres::types::FromSql<'a> for JsonText {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::TEXT)
    }
}

/// Every (operation, table) a plan modifies.
fn collect_writes(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(map) => {
            if map.get("Node Type").and_then(|t| t.as_str()) == Some("ModifyTable") {
                let op = map.get("Operation").and_then(|o| o.as_str()).unwrap_or("?");
                let table = map
                    .get("Relation Name")
                    .and_then(|o| o.as_str())
                    .unwrap_or("?");
                out.push((op.to_string(), table.to_string()));
            }
            map.values().for_each(|x| collect_writes(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_writes(x, out)),
        _ => {}
    }
}

/// SQL ingest's transaction: the query runs read-only at once; the rows
/// are written together at commit, in one transaction (so the query and
/// the append still stand or fall together: the query changed nothing).
struct PgTx<'a> {
    store: &'a PgStore,
    pending: RefCell<Vec<(TableKey, Vec<RecordBatch>)>>,
}

impl MetricsTx for PgTx<'_> {
    fn query_template(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        self.store
            .read_template(sql)
            .map(|b| vec![b])
            .map_err(StoreError::Template)
    }

    fn append_metrics(
        &self,
        table_key: &str,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        let key = self.store.ensure_table(table_key)?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        self.pending.borrow_mut().push((key, batches.to_vec()));
        Ok(rows)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let pending = self.pending.into_inner();
        if pending.is_empty() {
            return Ok(());
        }
        append_all(&mut *self.store.conn()?, &pending).map(|_| ())
    }

    fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

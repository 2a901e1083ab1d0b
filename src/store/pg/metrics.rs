//! The metrics tables in PostgreSQL: created on first use under a lock
//! (workers may create the same one at once) with the index the jobs'
//! queries use, rows appended by binary `COPY`, and a batch's rows read
//! for its SQL, which never runs here: it runs in DuckDB, in a scratch
//! database that holds only those rows ([`crate::store::confined`]).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient};

use super::micros::Micros;
use super::migrations::SCHEMA_LOCK;
use super::pg_err;
use super::{arrow_rows, PgStore};
use crate::domain::MetricType;
use crate::store::metrics::{MetricsStore, NewestValue, PickRows, RowSink, TimestampsByMetric};
use crate::store::{StoreError, TableKey};

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
    pub(super) fn ensure_table<'k>(
        &self,
        table_key: &'k TableKey,
    ) -> Result<&'k TableKey, StoreError> {
        let key = table_key;
        if self.known_tables().contains(&table_key.to_string()) {
            return Ok(key);
        }
        let ctx = format!("creating metrics table {table_key}");
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(&ctx))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .map_err(pg_err(&ctx))?;
        tx.batch_execute(&create_sql(key)).map_err(pg_err(&ctx))?;
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
    fn ensure_metrics_table(&self, table_key: &TableKey) -> Result<(), StoreError> {
        self.ensure_table(table_key).map(|_| ())
    }

    fn append_metrics(
        &mut self,
        table_key: &TableKey,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        let key = self.ensure_table(table_key)?;
        append_all(&mut *self.conn()?, &[(key.clone(), batches.to_vec())])
    }

    fn count_rows(&self, table_key: &TableKey) -> Result<u64, StoreError> {
        let key = table_key;
        if !self.table_exists(key)? {
            return Ok(0);
        }
        let n: i64 = self
            .conn()?
            .query_one(&format!("SELECT count(*) FROM {}", super::quoted(key)), &[])
            .map_err(pg_err(format!("counting rows of {table_key}")))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    fn batch_has_rows(&self, table_key: &TableKey, batch: &str) -> Result<bool, StoreError> {
        let key = table_key;
        if !self.table_exists(key)? {
            return Ok(false);
        }
        self.conn()?
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE metric_batch = $1)",
                    super::quoted(key)
                ),
                &[&batch],
            )
            .map(|r| r.get(0))
            .map_err(pg_err(format!("counting the rows of batch {batch}")))
    }

    fn timestamps_of_type(
        &self,
        table_key: &TableKey,
        batch: &str,
        metric_type: MetricType,
    ) -> Result<TimestampsByMetric, StoreError> {
        let key = self.ensure_table(table_key)?;
        let rows = self
            .conn()?
            .query(
                &format!(
                    "SELECT metric_name, metric_timestamp FROM {} WHERE metric_batch = $1 AND metric_type = $2",
                    super::quoted(key)
                ),
                &[&batch, &metric_type.as_str()],
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
        table_key: &TableKey,
        batch: &str,
        metric: &str,
        n: usize,
    ) -> Result<Vec<NewestValue>, StoreError> {
        let t = super::quoted(self.ensure_table(table_key)?);
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

    fn stream_rows(
        &self,
        table_key: &TableKey,
        batch: Option<&str>,
        each: &mut RowSink<'_>,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let key = table_key;
        if !self.table_exists(key)? {
            return Ok(());
        }
        let t = super::quoted(key);
        let ctx = format!("reading the rows of {table_key}");
        let mut conn = self.conn()?;
        let (sql, params): (String, Vec<&str>) = match batch {
            Some(b) => (
                format!("SELECT {COLUMNS} FROM {t} WHERE metric_batch = $1"),
                vec![b],
            ),
            None => (format!("SELECT {COLUMNS} FROM {t}"), Vec::new()),
        };
        let stmt = conn.prepare(&sql).map_err(pg_err(&ctx))?;
        let typed = stmt.clone();
        let to_batch = |chunk: &[postgres::Row]| {
            arrow_rows::to_batch(typed.columns(), chunk).map_err(|message| StoreError::Sql {
                context: ctx.clone(),
                message,
            })
        };
        let mut rows = conn.query_raw(&stmt, params).map_err(pg_err(&ctx))?;
        let mut chunk = Vec::with_capacity(STREAM_CHUNK);
        while let Some(row) = rows.next().map_err(pg_err(&ctx))? {
            chunk.push(row);
            if chunk.len() == STREAM_CHUNK {
                each(to_batch(&chunk)?)?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            each(to_batch(&chunk)?)?;
        }
        Ok(())
    }

    fn delete_picked(
        &mut self,
        table_key: &TableKey,
        batch: &str,
        pick: &mut PickRows<'_>,
    ) -> Result<usize, StoreError> {
        let key = self.ensure_table(table_key)?;
        let t = super::quoted(key);
        let ctx = format!("deleting rows of batch {batch} from {table_key}");
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(&ctx))?;
        // Locked, so each row's ctid stays its own until the commit.
        let stmt = tx
            .prepare(&format!(
                "SELECT ctid::text AS sandstack_row_id, {COLUMNS} FROM {t} WHERE metric_batch = $1 FOR UPDATE"
            ))
            .map_err(pg_err(&ctx))?;
        let found = tx.query(&stmt, &[&batch]).map_err(pg_err(&ctx))?;
        let with_ids =
            arrow_rows::to_batch(stmt.columns(), &found).map_err(|message| StoreError::Sql {
                context: ctx.clone(),
                message,
            })?;
        let ids: Vec<String> = with_ids
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|id| id.unwrap_or_default().to_string())
            .collect();
        let projection: Vec<usize> = (1..with_ids.num_columns()).collect();
        let rows = with_ids.project(&projection).map_err(|e| StoreError::Sql {
            context: ctx.clone(),
            message: e.to_string(),
        })?;
        let picked = pick(std::slice::from_ref(&rows))?;
        let mut doomed: Vec<&str> = picked
            .iter()
            .filter_map(|p| ids.get(*p).map(String::as_str))
            .collect();
        doomed.sort_unstable();
        doomed.dedup();
        let removed = if doomed.is_empty() {
            0
        } else {
            tx.execute(
                &format!(
                    "DELETE FROM {t} WHERE metric_batch = $1 AND ctid = ANY($2::text[]::tid[])"
                ),
                &[&batch, &doomed],
            )
            .map_err(pg_err(&ctx))?
        };
        tx.commit().map_err(pg_err(&ctx))?;
        Ok(removed as usize)
    }
}

/// Rows per record batch when a batch's rows are streamed.
const STREAM_CHUNK: usize = 8192;

/// The metrics columns, in table order.
const COLUMNS: &str =
    "metric_timestamp, metric_batch, metric_name, metric_type, metric_value, metadata";

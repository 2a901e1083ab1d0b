//! The metrics tables in DuckDB: DDL, the Arrow appender, the reads the
//! detection jobs need, and a batch's rows for its SQL (which runs in
//! [`crate::store::confined`], never here).

use arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};

use arrow::array::AsArray;

use super::DuckStore;
use crate::domain::MetricType;
use crate::store::error::db_err;
use crate::store::metrics::{MetricsStore, NewestValue, PickRows, RowSink, TimestampsByMetric};
use crate::store::{StoreError, TableKey};

/// Column definitions, in table order.
pub(in crate::store) fn create_table_sql(qualified: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {qualified} (\n  \
         metric_timestamp TIMESTAMP NOT NULL,\n  \
         metric_batch VARCHAR NOT NULL,\n  \
         metric_name VARCHAR NOT NULL,\n  \
         metric_type VARCHAR NOT NULL,\n  \
         metric_value DOUBLE,\n  \
         metadata VARCHAR\n)"
    )
}

/// Create the table (and its schema) if missing; returns the key, for chaining.
pub(super) fn ensure_table<'k>(
    conn: &Connection,
    table_key: &'k TableKey,
) -> Result<&'k TableKey, StoreError> {
    let key = table_key;
    let mut sql = String::new();
    if let Some(schema) = &key.schema {
        sql.push_str(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"));
    }
    sql.push_str(&create_table_sql(&key.quoted()));
    conn.execute_batch(&sql)
        .map_err(db_err(format!("creating metrics table {table_key}")))?;
    Ok(key)
}

/// Append rows through the Arrow appender on a connection (or transaction).
fn append_in(
    conn: &Connection,
    table_key: &TableKey,
    batches: &[RecordBatch],
) -> Result<usize, StoreError> {
    let key = table_key;
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

fn table_exists(conn: &Connection, key: &TableKey) -> Result<bool, StoreError> {
    let n: i64 = conn
        .query_row(
            // DuckDB's names are case-insensitive: `METRICS` is `metrics`.
            "SELECT count(*) FROM information_schema.tables WHERE lower(table_name) = lower(?) AND lower(table_schema) = lower(?)",
            params![key.table, key.schema.as_deref().unwrap_or("main")],
            |r| r.get(0),
        )
        .map_err(db_err("looking up table"))?;
    Ok(n > 0)
}

impl MetricsStore for DuckStore {
    fn ensure_metrics_table(&self, table_key: &TableKey) -> Result<(), StoreError> {
        ensure_table(self.connection(), table_key).map(|_| ())
    }

    fn append_metrics(
        &mut self,
        table_key: &TableKey,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        self.ensure_metrics_table(table_key)?;
        let tx = self
            .conn
            .transaction()
            .map_err(db_err("starting a transaction"))?;
        let rows = append_in(&tx, table_key, batches)?;
        tx.commit().map_err(db_err("committing"))?;
        Ok(rows)
    }

    fn count_rows(&self, table_key: &TableKey) -> Result<u64, StoreError> {
        let key = table_key;
        if !table_exists(self.connection(), key)? {
            return Ok(0);
        }
        let n: i64 = self
            .connection()
            .query_row(&format!("SELECT count(*) FROM {}", key.quoted()), [], |r| {
                r.get(0)
            })
            .map_err(db_err(format!("counting rows of {table_key}")))?;
        Ok(n.max(0) as u64)
    }

    fn batch_has_rows(&self, table_key: &TableKey, batch: &str) -> Result<bool, StoreError> {
        let key = table_key;
        if !table_exists(self.connection(), key)? {
            return Ok(false);
        }
        let n: i64 = self
            .connection()
            .query_row(
                &format!(
                    "SELECT count(*) FROM {} WHERE metric_batch = ?",
                    key.quoted()
                ),
                [batch],
                |r| r.get(0),
            )
            .map_err(db_err(format!("counting the rows of batch {batch}")))?;
        Ok(n > 0)
    }

    fn timestamps_of_type(
        &self,
        table_key: &TableKey,
        batch: &str,
        metric_type: MetricType,
    ) -> Result<TimestampsByMetric, StoreError> {
        let key = table_key;
        let sql = format!(
            "SELECT metric_name, epoch_us(metric_timestamp) FROM {} WHERE metric_batch = ? AND metric_type = ?",
            key.quoted()
        );
        let ctx = "reading existing rows";
        let mut out = TimestampsByMetric::new();
        let mut stmt = self.connection().prepare(&sql).map_err(db_err(ctx))?;
        let rows = stmt
            .query_map(params![batch, metric_type.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(db_err(ctx))?;
        for row in rows {
            let (name, ts) = row.map_err(db_err(ctx))?;
            out.entry(name).or_default().insert(ts);
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
        let t = table_key.quoted();
        let sql = format!(
            "SELECT epoch_us(m.metric_timestamp), m.metric_value, \
             (SELECT count(*) FROM {t} a WHERE a.metric_batch = m.metric_batch AND a.metric_name = m.metric_name \
              AND a.metric_type = 'tholdalert' AND a.metric_timestamp = m.metric_timestamp) \
             FROM {t} m WHERE m.metric_batch = ? AND m.metric_name = ? AND m.metric_type = 'metric' \
             ORDER BY m.metric_timestamp DESC LIMIT ?"
        );
        let ctx = "reading threshold data";
        let mut stmt = self.connection().prepare(&sql).map_err(db_err(ctx))?;
        let rows = stmt
            .query_map(
                params![batch, metric, i64::try_from(n).unwrap_or(i64::MAX)],
                |r| {
                    Ok(NewestValue {
                        timestamp_us: r.get(0)?,
                        value: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
                        alerted: r.get::<_, i64>(2)? > 0,
                    })
                },
            )
            .map_err(db_err(ctx))?
            .collect::<Result<_, _>>()
            .map_err(db_err(ctx))?;
        Ok(rows)
    }

    fn stream_rows(
        &self,
        table_key: &TableKey,
        batch: Option<&str>,
        each: &mut RowSink<'_>,
    ) -> Result<(), StoreError> {
        let key = table_key;
        if !table_exists(self.connection(), key)? {
            return Ok(());
        }
        let t = key.quoted();
        let ctx = format!("reading the rows of {table_key}");
        let conn = self.connection();
        let (sql, params): (String, Vec<&str>) = match batch {
            Some(b) => (
                format!("SELECT {COLUMNS} FROM {t} WHERE metric_batch = ?"),
                vec![b],
            ),
            None => (format!("SELECT {COLUMNS} FROM {t}"), Vec::new()),
        };
        let mut stmt = conn.prepare(&sql).map_err(db_err(&ctx))?;
        let stream = stmt
            .stream_arrow(duckdb::params_from_iter(params))
            .map_err(db_err(&ctx))?;
        for b in stream {
            each(b.map_err(db_err(&ctx))?)?;
        }
        Ok(())
    }

    fn delete_picked(
        &mut self,
        table_key: &TableKey,
        batch: &str,
        pick: &mut PickRows<'_>,
    ) -> Result<usize, StoreError> {
        let key = table_key;
        if !table_exists(self.connection(), key)? {
            pick(&[])?;
            return Ok(0);
        }
        let t = key.quoted();
        let ctx = format!("deleting rows of batch {batch} from {table_key}");
        let tx = self.conn.transaction().map_err(db_err(&ctx))?;
        let with_ids: Vec<RecordBatch> = tx
            .prepare(&format!(
                "SELECT rowid AS sandstack_row_id, {COLUMNS} FROM {t} WHERE metric_batch = ?"
            ))
            .and_then(|mut s| s.query_arrow([batch]).map(|a| a.collect()))
            .map_err(db_err(&ctx))?;
        let (ids, rows) = split_ids(&with_ids)?;
        let picked = pick(&rows)?;
        let mut doomed: Vec<i64> = picked.iter().filter_map(|p| ids.get(*p).copied()).collect();
        doomed.sort_unstable();
        doomed.dedup();
        let mut removed = 0;
        for chunk in doomed.chunks(DELETE_CHUNK) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            // The ids are integers DuckDB gave us, not text from the batch.
            removed += tx
                .execute(
                    &format!(
                        "DELETE FROM {t} WHERE metric_batch = ? AND rowid IN ({})",
                        list.join(",")
                    ),
                    [batch],
                )
                .map_err(db_err(&ctx))?;
        }
        tx.commit().map_err(db_err(&ctx))?;
        Ok(removed)
    }
}

/// The metrics columns, in table order.
const COLUMNS: &str =
    "metric_timestamp, metric_batch, metric_name, metric_type, metric_value, metadata";

/// Row ids per DELETE statement.
const DELETE_CHUNK: usize = 10_000;

/// The leading row-id column of `batches`, and the rest as metrics rows.
fn split_ids(batches: &[RecordBatch]) -> Result<(Vec<i64>, Vec<RecordBatch>), StoreError> {
    let mut ids = Vec::new();
    let mut rows = Vec::new();
    for b in batches {
        let id = b
            .column(0)
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or_else(|| StoreError::Sql {
                context: "reading row ids".into(),
                message: format!("row ids came as {}", b.column(0).data_type()),
            })?;
        ids.extend(id.values().iter().copied());
        let projection: Vec<usize> = (1..b.num_columns()).collect();
        rows.push(b.project(&projection).map_err(db_err("reading rows"))?);
    }
    Ok((ids, rows))
}

/// The MetricsStore contract, on an in-memory database.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_rows::{key, rows};

    #[test]
    fn appends_counts_and_reads_back_by_type() {
        let mut s = DuckStore::in_memory().expect("db");
        assert_eq!(s.count_rows(&key("m")).expect("count"), 0, "missing table");
        assert!(!s.batch_has_rows(&key("m"), "b").expect("has"));
        let n = s
            .append_metrics(
                &key("s.m"),
                &[rows(&[
                    (1, "b", "x", "metric", 1.0),
                    (2, "b", "x", "metric", 2.0),
                    (2, "b", "x", "score", 0.5),
                    (3, "other", "x", "score", 0.5),
                ])],
            )
            .expect("append");
        assert_eq!(n, 4);
        assert_eq!(s.count_rows(&key("s.m")).expect("count"), 4);
        assert!(s.batch_has_rows(&key("s.m"), "b").expect("has"));
        let scored = s
            .timestamps_of_type(&key("s.m"), "b", MetricType::Score)
            .expect("read");
        assert_eq!(scored.len(), 1);
        assert_eq!(scored["x"].iter().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn newest_values_come_newest_first_with_their_threshold_marks() {
        let mut s = DuckStore::in_memory().expect("db");
        s.append_metrics(
            &key("m"),
            &[rows(&[
                (1, "b", "x", "metric", 1.0),
                (2, "b", "x", "metric", 9.0),
                (3, "b", "x", "metric", f64::NAN),
                (2, "b", "x", "tholdalert", 1.0),
            ])],
        )
        .expect("append");
        let v = s.newest_values(&key("m"), "b", "x", 2).expect("read");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].timestamp_us, v[0].alerted), (3, false));
        assert!(v[0].value.is_nan());
        assert_eq!(
            (v[1].timestamp_us, v[1].value, v[1].alerted),
            (2, 9.0, true)
        );
        assert_eq!(
            s.newest_values(&key("m"), "b", "x", usize::MAX)
                .expect("all")
                .len(),
            3
        );
    }

    #[test]
    fn a_batchs_rows_are_read_alone_or_with_the_others() {
        let mut s = DuckStore::in_memory().expect("db");
        assert!(s
            .read_rows(&key("m"), Some("b"))
            .expect("no table")
            .is_empty());
        s.append_metrics(
            &key("m"),
            &[rows(&[
                (1, "b", "x", "metric", 1.0),
                (2, "other", "x", "metric", 2.0),
            ])],
        )
        .expect("append");
        let count = |r: Vec<RecordBatch>| r.iter().map(RecordBatch::num_rows).sum::<usize>();
        let own = s.read_rows(&key("m"), Some("b")).expect("own");
        assert_eq!(own[0].schema().fields().len(), 6);
        assert_eq!(count(own), 1);
        assert_eq!(count(s.read_rows(&key("m"), None).expect("all")), 2);
    }

    #[test]
    fn delete_picked_removes_only_the_picked_rows_of_the_batch() {
        let mut s = DuckStore::in_memory().expect("db");
        s.append_metrics(
            &key("m"),
            &[rows(&[
                (1, "b", "x", "metric", 1.0),
                (2, "other", "x", "metric", 2.0),
                (3, "b", "x", "metric", 3.0),
                (4, "b", "x", "metric", 4.0),
            ])],
        )
        .expect("append");
        let mut seen = 0;
        let removed = s
            .delete_picked(&key("m"), "b", &mut |r| {
                seen = r.iter().map(RecordBatch::num_rows).sum();
                // The second and third of the batch's rows, and one past them.
                Ok(vec![1, 2, 99])
            })
            .expect("delete");
        assert_eq!((seen, removed), (3, 2));
        let left = s.read_rows(&key("m"), None).expect("read");
        let values: Vec<f64> = left
            .iter()
            .flat_map(|b| {
                b.column(4)
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values.len(), 2);
        assert!(values.contains(&2.0), "the other batch's row stays");
        let failed = s.delete_picked(&key("m"), "b", &mut |_| Err(StoreError::TimedOut));
        assert!(failed.is_err());
        assert_eq!(
            s.count_rows(&key("m")).expect("count"),
            2,
            "nothing on failure"
        );
    }
}

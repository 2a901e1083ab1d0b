//! The metrics tables in DuckDB: DDL, the Arrow appender, the reads the
//! detection jobs need, and the metrics folder's SQL (one statement at a
//! time, counted by [`super::statements`] before it runs).

use arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};

use super::raw::RawDatabase;
use super::{DuckStore, StatementKind};
use crate::store::error::db_err;
use crate::store::metrics::{MetricsStore, MetricsTx, NewestValue, TimestampsByMetric};
use crate::store::{StoreError, TableKey};

/// Column definitions, in table order.
fn create_table_sql(qualified: &str) -> String {
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

/// Create the table (and its schema) if missing; returns the parsed key.
pub(super) fn ensure_table(conn: &Connection, table_key: &str) -> Result<TableKey, StoreError> {
    let key = TableKey::parse(table_key)?;
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
    table_key: &str,
    batches: &[RecordBatch],
) -> Result<usize, StoreError> {
    let key = TableKey::parse(table_key)?;
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
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = ?",
            params![key.table, key.schema.as_deref().unwrap_or("main")],
            |r| r.get(0),
        )
        .map_err(db_err("looking up table"))?;
    Ok(n > 0)
}

impl MetricsStore for DuckStore {
    fn ensure_metrics_table(&self, table_key: &str) -> Result<(), StoreError> {
        ensure_table(self.connection(), table_key).map(|_| ())
    }

    fn append_metrics(
        &mut self,
        table_key: &str,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        self.ensure_metrics_table(table_key)?;
        let tx = self.begin()?;
        let rows = tx.append_metrics(table_key, batches)?;
        tx.commit()?;
        Ok(rows)
    }

    fn count_rows(&self, table_key: &str) -> Result<u64, StoreError> {
        let key = TableKey::parse(table_key)?;
        if !table_exists(self.connection(), &key)? {
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

    fn batch_has_rows(&self, table_key: &str, batch: &str) -> Result<bool, StoreError> {
        let key = TableKey::parse(table_key)?;
        if !table_exists(self.connection(), &key)? {
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
        table_key: &str,
        batch: &str,
        metric_type: &str,
    ) -> Result<TimestampsByMetric, StoreError> {
        let key = TableKey::parse(table_key)?;
        let sql = format!(
            "SELECT metric_name, epoch_us(metric_timestamp) FROM {} WHERE metric_batch = ? AND metric_type = ?",
            key.quoted()
        );
        let ctx = "reading existing rows";
        let mut out = TimestampsByMetric::new();
        let mut stmt = self.connection().prepare(&sql).map_err(db_err(ctx))?;
        let rows = stmt
            .query_map(params![batch, metric_type], |r| {
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
        table_key: &str,
        batch: &str,
        metric: &str,
        n: usize,
    ) -> Result<Vec<NewestValue>, StoreError> {
        let t = TableKey::parse(table_key)?.quoted();
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

    fn query_template(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        self.require_kind(sql, StatementKind::Select)
            .map_err(|message| StoreError::Sql {
                context: "preparing query".into(),
                message,
            })?;
        let mut stmt = self
            .connection()
            .prepare(sql)
            .map_err(db_err("preparing query"))?;
        let batches = stmt
            .query_arrow([])
            .map_err(db_err("running query"))?
            .collect();
        Ok(batches)
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
        self.require_kind(sql, StatementKind::Delete)
            .map_err(refuse)?;
        let t = TableKey::parse(table_key)?.quoted();
        let others = format!("SELECT count(*) FROM {t} WHERE metric_batch <> ?");
        let tx = self.conn.transaction().map_err(db_err(context))?;
        let count = |tx: &duckdb::Transaction<'_>| -> Result<i64, StoreError> {
            tx.query_row(&others, [batch], |r| r.get(0))
                .map_err(db_err(context))
        };
        let before = count(&tx)?;
        let removed = tx.execute(sql, []).map_err(db_err(context))?;
        let after = count(&tx)?;
        if after != before {
            tx.rollback().map_err(db_err(context))?;
            return Err(refuse(crate::store::metrics::removes_other_batches(
                before - after,
                batch,
            )));
        }
        tx.commit().map_err(db_err(context))?;
        Ok(removed)
    }

    fn begin(&mut self) -> Result<Box<dyn MetricsTx + '_>, StoreError> {
        let tx = self
            .conn
            .transaction()
            .map_err(db_err("starting a transaction"))?;
        Ok(Box::new(DuckTx { tx, db: &self.db }))
    }
}

struct DuckTx<'a> {
    tx: duckdb::Transaction<'a>,
    db: &'a RawDatabase,
}

impl MetricsTx for DuckTx<'_> {
    fn query_template(&self, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
        super::require_kind(self.db, sql, StatementKind::Select).map_err(StoreError::Template)?;
        let template = |e: duckdb::Error| StoreError::Template(e.to_string());
        let mut stmt = self.tx.prepare(sql).map_err(template)?;
        let batches = stmt.query_arrow([]).map_err(template)?.collect();
        Ok(batches)
    }

    fn append_metrics(
        &self,
        table_key: &str,
        batches: &[RecordBatch],
    ) -> Result<usize, StoreError> {
        append_in(&self.tx, table_key, batches)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().map_err(db_err("committing"))
    }

    fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.rollback().map_err(db_err("rolling back"))
    }
}

/// The MetricsStore contract, on an in-memory database.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_rows::rows;

    #[test]
    fn appends_counts_and_reads_back_by_type() {
        let mut s = DuckStore::in_memory().expect("db");
        assert_eq!(s.count_rows("m").expect("count"), 0, "missing table");
        assert!(!s.batch_has_rows("m", "b").expect("has"));
        let n = s
            .append_metrics(
                "s.m",
                &[rows(&[
                    (1, "b", "x", "metric", 1.0),
                    (2, "b", "x", "metric", 2.0),
                    (2, "b", "x", "score", 0.5),
                    (3, "other", "x", "score", 0.5),
                ])],
            )
            .expect("append");
        assert_eq!(n, 4);
        assert_eq!(s.count_rows("s.m").expect("count"), 4);
        assert!(s.batch_has_rows("s.m", "b").expect("has"));
        let scored = s.timestamps_of_type("s.m", "b", "score").expect("read");
        assert_eq!(scored.len(), 1);
        assert_eq!(scored["x"].iter().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn newest_values_come_newest_first_with_their_threshold_marks() {
        let mut s = DuckStore::in_memory().expect("db");
        s.append_metrics(
            "m",
            &[rows(&[
                (1, "b", "x", "metric", 1.0),
                (2, "b", "x", "metric", 9.0),
                (3, "b", "x", "metric", f64::NAN),
                (2, "b", "x", "tholdalert", 1.0),
            ])],
        )
        .expect("append");
        let v = s.newest_values("m", "b", "x", 2).expect("read");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].timestamp_us, v[0].alerted), (3, false));
        assert!(v[0].value.is_nan());
        assert_eq!(
            (v[1].timestamp_us, v[1].value, v[1].alerted),
            (2, 9.0, true)
        );
        assert_eq!(
            s.newest_values("m", "b", "x", usize::MAX)
                .expect("all")
                .len(),
            3
        );
    }

    #[test]
    fn template_sql_runs_one_statement_and_refuses_two_unrun() {
        let mut s = DuckStore::in_memory().expect("db");
        s.append_metrics("m", &[rows(&[(1, "b", "x", "metric", 1.0)])])
            .expect("append");
        let out = s
            .query_template("SELECT count(*) AS n FROM m")
            .expect("query");
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        let two = s
            .query_template("SELECT 1; DROP TABLE m")
            .expect_err("two statements");
        assert!(matches!(two, StoreError::Sql { .. }), "{two}");
        let del = s
            .delete_with_template("m", "b", "DELETE FROM m; DROP TABLE m", "delete_sql")
            .expect_err("two statements");
        assert!(del.to_string().starts_with("delete_sql: "), "{del}");
        assert_eq!(s.count_rows("m").expect("count"), 1, "nothing ran");
        let other = s
            .delete_with_template("m", "not-b", "DELETE FROM m", "delete_sql")
            .expect_err("another batch's rows");
        assert!(
            other
                .to_string()
                .contains("it would remove 1 rows of other batches"),
            "{other}"
        );
        assert_eq!(s.count_rows("m").expect("count"), 1, "rolled back");
        assert_eq!(
            s.delete_with_template(
                "m",
                "b",
                "DELETE FROM m WHERE metric_batch = 'b'",
                "delete_sql"
            )
            .expect("one"),
            1
        );
    }

    #[test]
    fn a_transaction_rolled_back_or_dropped_stores_nothing() {
        let mut s = DuckStore::in_memory().expect("db");
        s.ensure_metrics_table("m").expect("table");
        let one = [rows(&[(1, "b", "x", "metric", 1.0)])];
        let tx = s.begin().expect("begin");
        tx.append_metrics("m", &one).expect("append");
        tx.rollback().expect("rollback");
        {
            let tx = s.begin().expect("begin");
            tx.append_metrics("m", &one).expect("append");
        }
        assert_eq!(s.count_rows("m").expect("count"), 0);
        // A template that does not prepare is refused before it runs, so
        // its transaction is unharmed.
        let tx = s.begin().expect("begin");
        assert!(matches!(
            tx.query_template("SELECT * FROM no_such_table"),
            Err(StoreError::Template(_))
        ));
        assert!(matches!(
            tx.query_template("DELETE FROM m"),
            Err(StoreError::Template(m)) if m == "it is a DELETE; this template must be one read-only query"
        ));
        tx.append_metrics("m", &one).expect("append");
        tx.commit().expect("commit");
        assert_eq!(s.count_rows("m").expect("count"), 1);
    }

    #[test]
    fn table_keys_that_are_not_identifiers_are_refused() {
        let s = DuckStore::in_memory().expect("db");
        let err = s
            .ensure_metrics_table("m; DROP TABLE x")
            .expect_err("bad key");
        assert!(matches!(err, StoreError::TableKey { .. }), "{err}");
    }
}

//! The dashboard's reads and feedback writes in DuckDB.

use std::collections::BTreeMap;

use duckdb::params;

use super::metrics::ensure_table;
use super::DuckStore;
use crate::domain::MetricType;
use crate::store::dashboard::{Anomaly, CardFigures, DashboardStore, Vote};
use crate::store::error::db_err;
use crate::store::{StoreError, TableKey};

impl DashboardStore for DuckStore {
    fn card_figures(
        &self,
        table_key: &TableKey,
    ) -> Result<BTreeMap<String, CardFigures>, StoreError> {
        let t = ensure_table(self.connection(), table_key)?.quoted();
        let sql = format!(
            "SELECT metric_batch,
               count(DISTINCT metric_name) FILTER (WHERE metric_type = 'metric'),
               epoch_us(max(metric_timestamp) FILTER (WHERE metric_type = 'metric')),
               count(*) FILTER (WHERE metric_type IN ('alert', 'tholdalert', 'llmalert')
                                AND metric_timestamp >= make_timestamp(epoch_us(now())) - INTERVAL 1 DAY),
               avg(metric_value) FILTER (WHERE metric_type = 'score'
                                AND metric_timestamp >= make_timestamp(epoch_us(now())) - INTERVAL 1 DAY)
             FROM {t} GROUP BY metric_batch"
        );
        let ctx = "reading the dashboard's batch figures";
        let mut stmt = self.connection().prepare(&sql).map_err(db_err(ctx))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    CardFigures {
                        metrics: r.get(1)?,
                        last_metric_us: r.get(2)?,
                        alerts_24h: r.get(3)?,
                        mean_score_24h: r.get(4)?,
                    },
                ))
            })
            .map_err(db_err(ctx))?
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(db_err(ctx))?;
        Ok(rows)
    }

    fn anomalies(
        &self,
        batches: &[(&TableKey, &str)],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let anomaly_types = MetricType::sql_list(&MetricType::ANOMALIES);
        let (up, down) = (MetricType::ThumbsUp, MetricType::ThumbsDown);
        let mut by_table: BTreeMap<&TableKey, Vec<&str>> = BTreeMap::new();
        for (table, batch) in batches {
            by_table.entry(table).or_default().push(batch);
        }
        if by_table.is_empty() {
            return Ok(Vec::new());
        }
        let mut parts = Vec::new();
        let mut args: Vec<String> = Vec::new();
        for (table, names) in &by_table {
            let t = ensure_table(self.connection(), table)?.quoted();
            let marks = vec!["?"; names.len()].join(", ");
            args.extend(names.iter().map(|n| n.to_string()));
            parts.push(format!(
                "SELECT a.metric_batch, a.metric_name, a.metric_type, epoch_us(a.metric_timestamp) AS ts, a.metadata,
                   (SELECT count(*) FROM {t} f WHERE f.metric_batch = a.metric_batch AND f.metric_name = a.metric_name
                      AND f.metric_timestamp = a.metric_timestamp AND f.metric_type = '{up}') AS up,
                   (SELECT count(*) FROM {t} f WHERE f.metric_batch = a.metric_batch AND f.metric_name = a.metric_name
                      AND f.metric_timestamp = a.metric_timestamp AND f.metric_type = '{down}') AS down
                 FROM {t} a WHERE a.metric_type IN {anomaly_types} AND a.metric_batch IN ({marks})"
            ));
        }
        let sql = format!(
            "{} ORDER BY ts DESC, metric_batch, metric_name LIMIT {limit} OFFSET {offset}",
            parts.join(" UNION ALL ")
        );
        let ctx = "reading anomalies";
        let mut stmt = self.connection().prepare(&sql).map_err(db_err(ctx))?;
        let rows = stmt
            .query_map(duckdb::params_from_iter(args.iter()), |r| {
                // The query picks anomaly types only, so each word parses.
                let Some(kind) = MetricType::parse(&r.get::<_, String>(2)?) else {
                    return Ok(None);
                };
                Ok(Some(Anomaly {
                    batch: r.get(0)?,
                    metric: r.get(1)?,
                    kind,
                    timestamp_us: r.get(3)?,
                    metadata: r.get(4)?,
                    up: r.get(5)?,
                    down: r.get(6)?,
                }))
            })
            .map_err(db_err(ctx))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err(ctx))?;
        Ok(rows.into_iter().flatten().collect())
    }

    fn record_feedback(
        &mut self,
        table_key: &TableKey,
        batch: &str,
        metric: &str,
        timestamp_us: i64,
        vote: Vote,
    ) -> Result<Option<i64>, StoreError> {
        let anomaly_types = MetricType::sql_list(&MetricType::ANOMALIES);
        let t = table_key.quoted();
        let ctx = "storing feedback";
        let tx = self.conn.transaction().map_err(db_err(ctx))?;
        let exists: i64 = tx
            .query_row(
                &format!(
                    "SELECT count(*) FROM {t} WHERE metric_batch = ? AND metric_name = ? AND metric_timestamp = make_timestamp(?::BIGINT)
                     AND metric_type IN {anomaly_types}"
                ),
                params![batch, metric, timestamp_us],
                |r| r.get(0),
            )
            .map_err(db_err(ctx))?;
        if exists == 0 {
            tx.commit().map_err(db_err(ctx))?;
            return Ok(None);
        }
        tx.execute(
            &format!("INSERT INTO {t} VALUES (make_timestamp(?::BIGINT), ?, ?, ?, 1, NULL)"),
            params![timestamp_us, batch, metric, vote.metric_type().as_str()],
        )
        .map_err(db_err(ctx))?;
        let n: i64 = tx
            .query_row(
                &format!(
                    "SELECT count(*) FROM {t} WHERE metric_batch = ? AND metric_name = ? AND metric_timestamp = make_timestamp(?::BIGINT) AND metric_type = ?"
                ),
                params![batch, metric, timestamp_us, vote.metric_type().as_str()],
                |r| r.get(0),
            )
            .map_err(db_err(ctx))?;
        tx.commit().map_err(db_err(ctx))?;
        Ok(Some(n))
    }
}

/// The DashboardStore contract, on an in-memory database.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_rows::key;
    use crate::store::MetricsStore;

    fn seed() -> DuckStore {
        let s = DuckStore::in_memory().expect("db");
        s.ensure_metrics_table(&key("m")).expect("table");
        s.connection()
            .execute_batch(
                "INSERT INTO m VALUES
                 (make_timestamp(1000::BIGINT), 'a', 'x', 'metric', 1.0, NULL),
                 (make_timestamp(1000::BIGINT), 'a', 'x', 'alert', 1.0, '{}'),
                 (make_timestamp(2000::BIGINT), 'a', 'y', 'change', 1.0, NULL),
                 (make_timestamp(3000::BIGINT), 'b', 'z', 'alert', 1.0, NULL)",
            )
            .expect("seed");
        s
    }

    #[test]
    fn anomalies_of_the_asked_batches_newest_first() {
        let s = seed();
        let got = s.anomalies(&[(&key("m"), "a")], 10, 0).expect("read");
        assert_eq!(
            got.iter()
                .map(|a| (a.metric.as_str(), a.kind.as_str(), a.timestamp_us))
                .collect::<Vec<_>>(),
            vec![("y", "change", 2000), ("x", "alert", 1000)]
        );
        assert_eq!(
            s.anomalies(&[(&key("m"), "a")], 1, 1).expect("page").len(),
            1
        );
        assert!(s.anomalies(&[], 10, 0).expect("none").is_empty());
    }

    #[test]
    fn feedback_counts_votes_on_anomalies_only() {
        let mut s = seed();
        assert_eq!(
            s.record_feedback(&key("m"), "a", "x", 1000, Vote::Up)
                .expect("vote"),
            Some(1)
        );
        assert_eq!(
            s.record_feedback(&key("m"), "a", "x", 1000, Vote::Up)
                .expect("vote"),
            Some(2)
        );
        assert_eq!(
            s.record_feedback(&key("m"), "a", "x", 999, Vote::Down)
                .expect("vote"),
            None,
            "no anomaly there"
        );
        let a = s.anomalies(&[(&key("m"), "a")], 10, 0).expect("read");
        let x = a.iter().find(|a| a.metric == "x").expect("x");
        assert_eq!((x.up, x.down), (2, 0));
    }

    #[test]
    fn card_figures_per_batch() {
        let s = seed();
        let cards = s.card_figures(&key("m")).expect("cards");
        assert_eq!(cards["a"].metrics, 1);
        assert_eq!(cards["a"].last_metric_us, Some(1000));
        assert_eq!(cards["b"].metrics, 0);
        assert_eq!(s.count_rows(&key("m")).expect("count"), 4);
    }
}

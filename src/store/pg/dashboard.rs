//! The dashboard's reads and feedback writes in PostgreSQL.

use crate::store::TableKey;
use std::collections::BTreeMap;

use postgres::types::ToSql;

use super::micros::Micros;
use super::pg_err;
use super::PgStore;
use crate::domain::MetricType;
use crate::store::dashboard::{Anomaly, CardFigures, DashboardStore, Vote};
use crate::store::StoreError;

const DAY_AGO: &str = "(now() AT TIME ZONE 'UTC') - INTERVAL '1 day'";

impl DashboardStore for PgStore {
    fn card_figures(
        &self,
        table_key: &TableKey,
    ) -> Result<BTreeMap<String, CardFigures>, StoreError> {
        let t = super::quoted(self.ensure_table(table_key)?);
        let sql = format!(
            "SELECT metric_batch,
               count(DISTINCT metric_name) FILTER (WHERE metric_type = 'metric'),
               max(metric_timestamp) FILTER (WHERE metric_type = 'metric'),
               count(*) FILTER (WHERE metric_type IN ('alert', 'tholdalert', 'llmalert') AND metric_timestamp >= {DAY_AGO}),
               avg(metric_value) FILTER (WHERE metric_type = 'score' AND metric_timestamp >= {DAY_AGO})
             FROM {t} GROUP BY metric_batch"
        );
        let rows = self
            .conn()?
            .query(&sql, &[])
            .map_err(pg_err("reading the dashboard's batch figures"))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    CardFigures {
                        metrics: r.get(1),
                        last_metric_us: r.get::<_, Option<Micros>>(2).map(|m| m.0),
                        alerts_24h: r.get(3),
                        mean_score_24h: r.get(4),
                    },
                )
            })
            .collect())
    }

    fn anomalies(
        &self,
        batches: &[(&TableKey, &str)],
        limit: usize,
        offset: usize,
    ) -> Result<Vec<Anomaly>, StoreError> {
        let anomaly_types = MetricType::sql_list(&MetricType::ANOMALIES);
        let (up, down) = (MetricType::ThumbsUp, MetricType::ThumbsDown);
        let mut by_table: BTreeMap<&TableKey, Vec<String>> = BTreeMap::new();
        for (table, batch) in batches {
            by_table.entry(table).or_default().push(batch.to_string());
        }
        if by_table.is_empty() {
            return Ok(Vec::new());
        }
        let mut parts = Vec::new();
        let mut args: Vec<Vec<String>> = Vec::new();
        for (table, names) in by_table {
            let t = super::quoted(self.ensure_table(table)?);
            args.push(names);
            let n = args.len();
            parts.push(format!(
                "SELECT a.metric_batch, a.metric_name, a.metric_type, a.metric_timestamp AS ts, a.metadata,
                   (SELECT count(*) FROM {t} f WHERE f.metric_batch = a.metric_batch AND f.metric_name = a.metric_name
                      AND f.metric_timestamp = a.metric_timestamp AND f.metric_type = '{up}') AS up,
                   (SELECT count(*) FROM {t} f WHERE f.metric_batch = a.metric_batch AND f.metric_name = a.metric_name
                      AND f.metric_timestamp = a.metric_timestamp AND f.metric_type = '{down}') AS down
                 FROM {t} a WHERE a.metric_type IN {anomaly_types} AND a.metric_batch = ANY(${n})"
            ));
        }
        let sql = format!(
            "{} ORDER BY ts DESC, metric_batch, metric_name LIMIT {limit} OFFSET {offset}",
            parts.join(" UNION ALL ")
        );
        let refs: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let rows = self
            .conn()?
            .query(&sql, &refs)
            .map_err(pg_err("reading anomalies"))?;
        // The query picks anomaly types only, so each word parses.
        Ok(rows
            .iter()
            .filter_map(|r| Some((r, MetricType::parse(r.get(2))?)))
            .map(|(r, kind)| Anomaly {
                batch: r.get(0),
                metric: r.get(1),
                kind,
                timestamp_us: r.get::<_, Micros>(3).0,
                metadata: r.get(4),
                up: r.get(5),
                down: r.get(6),
            })
            .collect())
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
        let t = super::quoted(self.ensure_table(table_key)?);
        let ctx = "storing feedback";
        let ts = Micros(timestamp_us);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(ctx))?;
        let exists: bool = tx
            .query_one(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {t} WHERE metric_batch = $1 AND metric_name = $2 \
                     AND metric_timestamp = $3 AND metric_type IN {anomaly_types})"
                ),
                &[&batch, &metric, &ts],
            )
            .map_err(pg_err(ctx))?
            .get(0);
        if !exists {
            return Ok(None);
        }
        tx.execute(
            &format!("INSERT INTO {t} VALUES ($1, $2, $3, $4, 1, NULL)"),
            &[&ts, &batch, &metric, &vote.metric_type().as_str()],
        )
        .map_err(pg_err(ctx))?;
        let n: i64 = tx
            .query_one(
                &format!(
                    "SELECT count(*) FROM {t} WHERE metric_batch = $1 AND metric_name = $2 \
                     AND metric_timestamp = $3 AND metric_type = $4"
                ),
                &[&batch, &metric, &ts, &vote.metric_type().as_str()],
            )
            .map_err(pg_err(ctx))?
            .get(0);
        tx.commit().map_err(pg_err(ctx))?;
        Ok(Some(n))
    }
}

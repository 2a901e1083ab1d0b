//! What the dashboard reads and writes in DuckDB: batch cards, chart
//! series (`dashboard_sql`), anomalies across batches, and feedback rows
//! (`thumbsup` / `thumbsdown`, as Anomstack stores them).

use std::collections::BTreeMap;

use duckdb::params;

use crate::config::BatchSpec;
use crate::domain::Series;
use crate::jobs::rows::load_input;
use crate::store::{db_err, Store, StoreError, TableKey};

/// One batch's home-page card figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CardFigures {
    pub metrics: i64,
    pub last_metric_us: Option<i64>,
    pub alerts_24h: i64,
    pub mean_score_24h: Option<f64>,
}

/// Card figures for every batch stored in `table_key`.
pub fn card_figures(
    store: &Store,
    table_key: &str,
) -> Result<BTreeMap<String, CardFigures>, StoreError> {
    let t = store.ensure_metrics_table(table_key)?.quoted();
    let sql = format!(
        "SELECT metric_batch,
           count(DISTINCT metric_name) FILTER (WHERE metric_type = 'metric'),
           epoch_us(max(metric_timestamp) FILTER (WHERE metric_type = 'metric')),
           count(*) FILTER (WHERE metric_type IN ('alert', 'tholdalert')
                            AND metric_timestamp >= make_timestamp(epoch_us(now())) - INTERVAL 1 DAY),
           avg(metric_value) FILTER (WHERE metric_type = 'score'
                            AND metric_timestamp >= make_timestamp(epoch_us(now())) - INTERVAL 1 DAY)
         FROM {t} GROUP BY metric_batch"
    );
    let ctx = "reading the dashboard's batch figures";
    let mut stmt = store.connection().prepare(&sql).map_err(db_err(ctx))?;
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

/// The newest ingest run of each batch: (status, ended µs).
pub fn last_ingests(store: &Store) -> Result<BTreeMap<String, (String, i64)>, StoreError> {
    store.ensure_runs_table()?;
    let ctx = "reading the newest ingest runs";
    let mut stmt = store
        .connection()
        .prepare(
            "SELECT batch, status, epoch_us(ended_at) FROM sandstack_runs WHERE job = 'ingest' AND status <> 'skipped'
             QUALIFY row_number() OVER (PARTITION BY batch ORDER BY started_at DESC, run_id DESC) = 1",
        )
        .map_err(db_err(ctx))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .map_err(db_err(ctx))?
        .collect::<Result<BTreeMap<_, _>, _>>()
        .map_err(db_err(ctx))?;
    Ok(rows)
}

/// `dashboard_sql`'s series by metric.
pub fn chart_series(spec: &BatchSpec, store: &Store) -> Result<BTreeMap<String, Series>, String> {
    load_input(spec, store, "dashboard_sql", "dashboard", None)
        .map(|input| input.series)
        .map_err(|e| e.to_string())
}

/// One alert, threshold alert or change, with its feedback counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub batch: String,
    pub metric: String,
    pub kind: String,
    pub timestamp_us: i64,
    pub metadata: Option<String>,
    pub up: i64,
    pub down: i64,
}

/// Anomalies of `batches` (grouped by table), newest first.
pub fn anomalies(
    store: &Store,
    batches: &[&BatchSpec],
    limit: usize,
    offset: usize,
) -> Result<Vec<Anomaly>, StoreError> {
    let mut by_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for b in batches {
        by_table
            .entry(b.table_key.as_str())
            .or_default()
            .push(b.metric_batch.as_str());
    }
    if by_table.is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for (table, names) in &by_table {
        let t = store.ensure_metrics_table(table)?.quoted();
        let marks = vec!["?"; names.len()].join(", ");
        args.extend(names.iter().map(|n| n.to_string()));
        parts.push(format!(
            "SELECT a.metric_batch, a.metric_name, a.metric_type, epoch_us(a.metric_timestamp) AS ts, a.metadata,
               (SELECT count(*) FROM {t} f WHERE f.metric_batch = a.metric_batch AND f.metric_name = a.metric_name
                  AND f.metric_timestamp = a.metric_timestamp AND f.metric_type = 'thumbsup') AS up,
               (SELECT count(*) FROM {t} f WHERE f.metric_batch = a.metric_batch AND f.metric_name = a.metric_name
                  AND f.metric_timestamp = a.metric_timestamp AND f.metric_type = 'thumbsdown') AS down
             FROM {t} a WHERE a.metric_type IN ('alert', 'tholdalert', 'change') AND a.metric_batch IN ({marks})"
        ));
    }
    let sql = format!(
        "{} ORDER BY ts DESC, metric_batch, metric_name LIMIT {limit} OFFSET {offset}",
        parts.join(" UNION ALL ")
    );
    let ctx = "reading anomalies";
    let mut stmt = store.connection().prepare(&sql).map_err(db_err(ctx))?;
    let rows = stmt
        .query_map(duckdb::params_from_iter(args.iter()), |r| {
            Ok(Anomaly {
                batch: r.get(0)?,
                metric: r.get(1)?,
                kind: r.get(2)?,
                timestamp_us: r.get(3)?,
                metadata: r.get(4)?,
                up: r.get(5)?,
                down: r.get(6)?,
            })
        })
        .map_err(db_err(ctx))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err(ctx))?;
    Ok(rows)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vote {
    Up,
    Down,
}

impl Vote {
    pub fn metric_type(self) -> &'static str {
        match self {
            Vote::Up => "thumbsup",
            Vote::Down => "thumbsdown",
        }
    }
}

/// Store one vote on an anomaly; returns the vote's new count, or None
/// when there is no such anomaly.
pub fn record_feedback(
    store: &mut Store,
    spec: &BatchSpec,
    metric: &str,
    timestamp_us: i64,
    vote: Vote,
) -> Result<Option<i64>, StoreError> {
    let t = TableKey::parse(&spec.table_key)?.quoted();
    let batch = spec.metric_batch.as_str();
    let ctx = "storing feedback";
    store.in_transaction(|tx| {
        let exists: i64 = tx
            .query_row(
                &format!(
                    "SELECT count(*) FROM {t} WHERE metric_batch = ? AND metric_name = ? AND metric_timestamp = make_timestamp(?::BIGINT)
                     AND metric_type IN ('alert', 'tholdalert', 'change')"
                ),
                params![batch, metric, timestamp_us],
                |r| r.get(0),
            )
            .map_err(db_err(ctx))?;
        if exists == 0 {
            return Ok(None);
        }
        tx.execute(
            &format!("INSERT INTO {t} VALUES (make_timestamp(?::BIGINT), ?, ?, ?, 1, NULL)"),
            params![timestamp_us, batch, metric, vote.metric_type()],
        )
        .map_err(db_err(ctx))?;
        let n: i64 = tx
            .query_row(
                &format!(
                    "SELECT count(*) FROM {t} WHERE metric_batch = ? AND metric_name = ? AND metric_timestamp = make_timestamp(?::BIGINT) AND metric_type = ?"
                ),
                params![batch, metric, timestamp_us, vote.metric_type()],
                |r| r.get(0),
            )
            .map_err(db_err(ctx))?;
        Ok(Some(n))
    })
}

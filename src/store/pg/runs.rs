//! Run history and paused batches in PostgreSQL (`sandstack_runs`,
//! `sandstack_paused`), shared by every worker.

use std::collections::{BTreeMap, BTreeSet};

use postgres::types::ToSql;
use postgres::GenericClient;

use super::micros::Micros;
use super::pg_err;
use super::PgStore;
use crate::store::runs::{
    capped, capped_error, Retention, RunFilter, RunHistory, RunRecord, RunStatus,
};
use crate::store::StoreError;

const COLUMNS: &str =
    "run_id, batch, job, scheduled_at, started_at, ended_at, status, error, rows, \
                       fuel, wall_ms, cassette, log, attempt, worker";

fn record(r: &postgres::Row) -> RunRecord {
    RunRecord {
        run_id: r.get(0),
        batch: r.get(1),
        job: r.get(2),
        scheduled_us: r.get::<_, Micros>(3).0,
        started_us: r.get::<_, Micros>(4).0,
        ended_us: r.get::<_, Micros>(5).0,
        status: RunStatus::parse(r.get(6)),
        error: r.get(7),
        rows: r.get::<_, i64>(8).max(0) as u64,
        fuel: r.get::<_, i64>(9).max(0) as u64,
        wall_ms: r.get(10),
        cassette: r.get(11),
        log: r.get(12),
        attempt: r.get::<_, i32>(13).max(1) as u32,
        worker: r.get(14),
    }
}

/// Insert one run; returns its id.
pub(super) fn insert_run(
    client: &mut impl GenericClient,
    r: &RunRecord,
) -> Result<i64, StoreError> {
    let attempt = i32::try_from(r.attempt).unwrap_or(i32::MAX);
    client
        .query_one(
            "INSERT INTO sandstack_runs (batch, job, scheduled_at, started_at, ended_at, status, error, rows, fuel, \
             wall_ms, cassette, log, attempt, worker) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING run_id",
            &[
                &r.batch,
                &r.job,
                &Micros(r.scheduled_us),
                &Micros(r.started_us),
                &Micros(r.ended_us),
                &r.status.as_str(),
                &r.error.as_deref().map(capped_error),
                &(r.rows.min(i64::MAX as u64) as i64),
                &(r.fuel.min(i64::MAX as u64) as i64),
                &r.wall_ms,
                &r.cassette,
                &r.log.as_deref().map(capped),
                &attempt,
                &r.worker,
            ],
        )
        .map(|row| row.get(0))
        .map_err(pg_err("recording a run in sandstack_runs"))
}

impl RunHistory for PgStore {
    /// Made by the migrations.
    fn ensure_runs_table(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn record_run(&self, r: &RunRecord) -> Result<i64, StoreError> {
        insert_run(&mut *self.conn()?, r)
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM sandstack_runs WHERE true");
        let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync>| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(id) = filter.run_id {
            arg(&mut sql, " AND run_id = ?", Box::new(id));
        }
        if let Some(b) = &filter.batch {
            arg(&mut sql, " AND batch = ?", Box::new(b.clone()));
        }
        if let Some(j) = &filter.job {
            arg(&mut sql, " AND job = ?", Box::new(j.clone()));
        }
        if filter.failed_only {
            sql.push_str(" AND status IN ('failed', 'interrupted', 'timeout')");
        }
        sql.push_str(" ORDER BY started_at DESC, run_id DESC");
        arg(&mut sql, " LIMIT ?", Box::new(filter.limit as i64));
        arg(&mut sql, " OFFSET ?", Box::new(filter.offset as i64));
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let rows = self
            .conn()?
            .query(&sql, &refs)
            .map_err(pg_err("reading sandstack_runs"))?;
        Ok(rows.iter().map(record).collect())
    }

    fn last_scheduled(&self, batch: &str, job: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .conn()?
            .query_one(
                "SELECT max(scheduled_at) FROM sandstack_runs WHERE batch = $1 AND job = $2",
                &[&batch, &job],
            )
            .map_err(pg_err("reading sandstack_runs"))?;
        Ok(row.get::<_, Option<Micros>>(0).map(|m| m.0))
    }

    fn prune_runs(&self, keep: Retention, now_us: i64) -> Result<u64, StoreError> {
        let ctx = "pruning sandstack_runs";
        let cutoff = now_us.saturating_sub(keep.max_age_days as i64 * 86_400_000_000);
        let mut conn = self.conn()?;
        let by_age = conn
            .execute(
                "DELETE FROM sandstack_runs WHERE started_at < $1",
                &[&Micros(cutoff)],
            )
            .map_err(pg_err(ctx))?;
        let by_count = conn
            .execute(
                "DELETE FROM sandstack_runs WHERE run_id IN (SELECT run_id FROM sandstack_runs \
                 ORDER BY started_at DESC, run_id DESC OFFSET $1)",
                &[&(keep.max_rows.min(i64::MAX as u64) as i64)],
            )
            .map_err(pg_err(ctx))?;
        Ok(by_age + by_count)
    }

    fn last_ingests(&self) -> Result<BTreeMap<String, (String, i64)>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT DISTINCT ON (batch) batch, status, ended_at FROM sandstack_runs \
                 WHERE job = 'ingest' AND status <> 'skipped' ORDER BY batch, started_at DESC, run_id DESC",
                &[],
            )
            .map_err(pg_err("reading the newest ingest runs"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get::<_, Micros>(2).0)))
            .collect())
    }

    fn set_paused(&self, batch: &str, paused: bool) -> Result<(), StoreError> {
        let sql = if paused {
            "INSERT INTO sandstack_paused VALUES ($1, now() AT TIME ZONE 'UTC') ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM sandstack_paused WHERE batch = $1"
        };
        self.conn()?
            .execute(sql, &[&batch])
            .map(|_| ())
            .map_err(pg_err("changing sandstack_paused"))
    }

    fn paused_batches(&self) -> Result<BTreeSet<String>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT batch FROM sandstack_paused", &[])
            .map_err(pg_err("reading sandstack_paused"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

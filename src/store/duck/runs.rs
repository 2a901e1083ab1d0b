//! Run history in DuckDB: the `sandstack_runs` table.

use std::collections::{BTreeMap, BTreeSet};

use duckdb::params;

use super::DuckStore;
use crate::store::error::db_err;
use crate::store::runs::{
    capped, capped_error, Retention, RunFilter, RunHistory, RunRecord, RunStatus,
};
use crate::store::StoreError;

const CREATE_RUNS: &str = "
CREATE SEQUENCE IF NOT EXISTS sandstack_runs_id;
CREATE TABLE IF NOT EXISTS sandstack_runs (
    run_id BIGINT PRIMARY KEY DEFAULT nextval('sandstack_runs_id'),
    batch VARCHAR NOT NULL,
    job VARCHAR NOT NULL,
    scheduled_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,
    error VARCHAR,
    rows BIGINT NOT NULL,
    fuel BIGINT NOT NULL,
    wall_ms DOUBLE NOT NULL,
    cassette VARCHAR
);
ALTER TABLE sandstack_runs ADD COLUMN IF NOT EXISTS log VARCHAR;
ALTER TABLE sandstack_runs ADD COLUMN IF NOT EXISTS attempt INTEGER DEFAULT 1;
ALTER TABLE sandstack_runs ADD COLUMN IF NOT EXISTS worker VARCHAR;
CREATE TABLE IF NOT EXISTS sandstack_paused (
    batch VARCHAR PRIMARY KEY,
    paused_at TIMESTAMP NOT NULL
);";

impl RunHistory for DuckStore {
    fn ensure_runs_table(&self) -> Result<(), StoreError> {
        self.connection()
            .execute_batch(CREATE_RUNS)
            .map_err(db_err("creating the run history table sandstack_runs"))
    }

    /// Store a run; returns its id.
    fn record_run(&self, r: &RunRecord) -> Result<i64, StoreError> {
        self.ensure_runs_table()?;
        self.connection()
            .query_row(
                "INSERT INTO sandstack_runs (batch, job, scheduled_at, started_at, ended_at, status, error, rows, fuel, wall_ms, cassette, log, attempt, worker) \
                 VALUES (?, ?, make_timestamp(?::BIGINT), make_timestamp(?::BIGINT), make_timestamp(?::BIGINT), ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING run_id",
                params![
                    r.batch,
                    r.job,
                    r.scheduled_us,
                    r.started_us,
                    r.ended_us,
                    r.status.as_str(),
                    r.error.as_deref().map(capped_error),
                    r.rows as i64,
                    r.fuel as i64,
                    r.wall_ms,
                    r.cassette,
                    r.log.as_deref().map(capped),
                    r.attempt,
                    r.worker
                ],
                |row| row.get(0),
            )
            .map_err(db_err("recording a run in sandstack_runs"))
    }

    /// Runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.ensure_runs_table()?;
        let mut sql = String::from(
            "SELECT run_id, batch, job, epoch_us(scheduled_at), epoch_us(started_at), epoch_us(ended_at), \
             status, error, rows, fuel, wall_ms, cassette, log, attempt, worker FROM sandstack_runs WHERE true",
        );
        let mut args: Vec<Box<dyn duckdb::ToSql>> = Vec::new();
        if let Some(id) = filter.run_id {
            sql.push_str(" AND run_id = ?");
            args.push(Box::new(id));
        }
        if let Some(b) = &filter.batch {
            sql.push_str(" AND batch = ?");
            args.push(Box::new(b.clone()));
        }
        if let Some(j) = &filter.job {
            sql.push_str(" AND job = ?");
            args.push(Box::new(j.clone()));
        }
        if filter.failed_only {
            sql.push_str(" AND status IN ('failed', 'interrupted', 'timeout')");
        }
        sql.push_str(" ORDER BY started_at DESC, run_id DESC LIMIT ? OFFSET ?");
        args.push(Box::new(filter.limit as i64));
        args.push(Box::new(filter.offset as i64));
        let ctx = "reading sandstack_runs";
        let mut stmt = self.connection().prepare(&sql).map_err(db_err(ctx))?;
        let rows = stmt
            .query_map(duckdb::params_from_iter(args.iter()), |row| {
                Ok(RunRecord {
                    run_id: row.get(0)?,
                    batch: row.get(1)?,
                    job: row.get(2)?,
                    scheduled_us: row.get(3)?,
                    started_us: row.get(4)?,
                    ended_us: row.get(5)?,
                    status: RunStatus::parse(&row.get::<_, String>(6)?),
                    error: row.get(7)?,
                    rows: row.get::<_, i64>(8)?.max(0) as u64,
                    fuel: row.get::<_, i64>(9)?.max(0) as u64,
                    wall_ms: row.get(10)?,
                    cassette: row.get(11)?,
                    log: row.get(12)?,
                    attempt: row.get::<_, Option<i64>>(13)?.unwrap_or(1).max(1) as u32,
                    worker: row.get(14)?,
                })
            })
            .map_err(db_err(ctx))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err(ctx))?;
        Ok(rows)
    }

    /// The newest scheduled instant recorded for a batch's job, for
    /// `catch_up`.
    fn last_scheduled(&self, batch: &str, job: &str) -> Result<Option<i64>, StoreError> {
        self.ensure_runs_table()?;
        self.connection()
            .query_row(
                "SELECT epoch_us(max(scheduled_at)) FROM sandstack_runs WHERE batch = ? AND job = ?",
                params![batch, job],
                |row| row.get(0),
            )
            .map_err(db_err("reading sandstack_runs"))
    }

    /// Delete runs older than the retention age, then the oldest beyond
    /// the row cap; returns how many went.
    fn prune_runs(&self, keep: Retention, now_us: i64) -> Result<u64, StoreError> {
        self.ensure_runs_table()?;
        let ctx = "pruning sandstack_runs";
        let cutoff = now_us.saturating_sub(keep.max_age_days as i64 * 86_400_000_000);
        let by_age = self
            .connection()
            .execute(
                "DELETE FROM sandstack_runs WHERE started_at < make_timestamp(?::BIGINT)",
                params![cutoff],
            )
            .map_err(db_err(ctx))?;
        let by_count = self
            .connection()
            .execute(
                "DELETE FROM sandstack_runs WHERE run_id IN (SELECT run_id FROM sandstack_runs \
                 ORDER BY started_at DESC, run_id DESC OFFSET ?)",
                params![keep.max_rows as i64],
            )
            .map_err(db_err(ctx))?;
        Ok((by_age + by_count) as u64)
    }

    fn set_paused(&self, batch: &str, paused: bool) -> Result<(), StoreError> {
        self.ensure_runs_table()?;
        let sql = if paused {
            "INSERT INTO sandstack_paused VALUES (?, now()::TIMESTAMP) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM sandstack_paused WHERE batch = ?"
        };
        self.connection()
            .execute(sql, params![batch])
            .map(|_| ())
            .map_err(db_err("changing sandstack_paused"))
    }

    fn paused_batches(&self) -> Result<BTreeSet<String>, StoreError> {
        self.ensure_runs_table()?;
        let ctx = "reading sandstack_paused";
        let mut stmt = self
            .connection()
            .prepare("SELECT batch FROM sandstack_paused")
            .map_err(db_err(ctx))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(db_err(ctx))?
            .collect::<Result<BTreeSet<String>, _>>()
            .map_err(db_err(ctx))?;
        Ok(rows)
    }

    fn last_ingests(&self) -> Result<BTreeMap<String, (String, i64)>, StoreError> {
        self.ensure_runs_table()?;
        let ctx = "reading the newest ingest runs";
        let mut stmt = self
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
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pauses and the run history's filters and pruning: the storage
    // contract (store/contract.rs, run by duck/contract_tests.rs).

    #[test]
    fn a_timeout_is_stored_by_its_name() {
        let json = serde_json::to_string(&RunStatus::TimedOut).expect("json");
        assert_eq!(json, "\"timeout\"", "the name the history stores");
    }
}

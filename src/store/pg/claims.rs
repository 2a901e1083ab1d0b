//! The fleet in PostgreSQL: `sandstack_workers` (who is alive) and
//! `sandstack_ticks`, one row per (batch, job, tick) inserted by the
//! worker that runs it. The primary key makes a tick's claim exactly-once
//! (`INSERT ... ON CONFLICT DO NOTHING`: the first insert wins, the others
//! see its row); the row's lease is renewed by its worker's heartbeat, and
//! a lease that ran out is taken over by one `UPDATE ... RETURNING`, which
//! row locks make exactly-once as well.

use std::time::Duration;

use super::micros::Micros;
use super::pg_err;
use super::PgStore;
use crate::store::fleet::{Claim, FleetStore, TakenOver, WorkerInfo, WorkerRow};
use crate::store::RunRecord;
use crate::store::StoreError;

const NOW: &str = "(now() AT TIME ZONE 'UTC')";

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl FleetStore for PgStore {
    fn shared(&self) -> bool {
        true
    }

    fn register_worker(&self, w: &WorkerInfo) -> Result<(), StoreError> {
        let pid = i32::try_from(w.pid).unwrap_or(i32::MAX);
        self.conn()?
            .execute(
                &format!(
                    "INSERT INTO sandstack_workers (worker, host, pid, started_at, heartbeat_at) \
                     VALUES ($1, $2, $3, {NOW}, {NOW}) \
                     ON CONFLICT (worker) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, \
                     started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, stopped_at = NULL"
                ),
                &[&w.worker, &w.host, &pid],
            )
            .map(|_| ())
            .map_err(pg_err("registering this worker in sandstack_workers"))
    }

    fn claim_tick(
        &self,
        worker: &str,
        batch: &str,
        job: &str,
        scheduled_us: i64,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let ctx = "claiming a tick in sandstack_ticks";
        let at = Micros(scheduled_us);
        let mut conn = self.conn()?;
        let won = conn
            .query_opt(
                &format!(
                    "WITH busy AS (
                       SELECT worker FROM sandstack_ticks
                       WHERE batch = $1 AND job = $2 AND state = 'running' AND scheduled_at < $3 AND lease_until > {NOW}
                       LIMIT 1)
                     INSERT INTO sandstack_ticks (batch, job, scheduled_at, worker, claimed_at, lease_until, state)
                     SELECT $1, $2, $3, $4, {NOW}, {NOW} + $5 * INTERVAL '1 millisecond',
                            CASE WHEN EXISTS (SELECT 1 FROM busy) THEN 'skipped' ELSE 'running' END
                     ON CONFLICT DO NOTHING
                     RETURNING state, (SELECT worker FROM busy)"
                ),
                &[&batch, &job, &at, &worker, &millis(lease)],
            )
            .map_err(pg_err(ctx))?;
        if let Some(row) = won {
            let state: String = row.get(0);
            return Ok(if state == "skipped" {
                Claim::Busy {
                    worker: row.get::<_, Option<String>>(1).unwrap_or_default(),
                }
            } else {
                Claim::Mine
            });
        }
        let holder = conn
            .query_opt(
                "SELECT worker FROM sandstack_ticks WHERE batch = $1 AND job = $2 AND scheduled_at = $3",
                &[&batch, &job, &at],
            )
            .map_err(pg_err(ctx))?;
        Ok(Claim::Taken {
            worker: holder.map(|r| r.get(0)).unwrap_or_default(),
        })
    }

    fn record_claimed_run(&self, run: &RunRecord) -> Result<i64, StoreError> {
        let ctx = "recording a claimed tick's run";
        let worker = run.worker.as_deref().unwrap_or_default();
        let at = Micros(run.scheduled_us);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(ctx))?;
        let before: Option<String> = tx
            .query_opt(
                "SELECT state FROM sandstack_ticks WHERE batch = $1 AND job = $2 AND scheduled_at = $3 \
                 AND worker = $4 FOR UPDATE",
                &[&run.batch, &run.job, &at, &worker],
            )
            .map_err(pg_err(ctx))?
            .map(|r| r.get(0));
        if before.as_deref() == Some("interrupted") {
            // Taken over while it ran: the run did end, so its record wins.
            tx.execute(
                "DELETE FROM sandstack_runs WHERE batch = $1 AND job = $2 AND scheduled_at = $3 \
                 AND worker = $4 AND status IN ('interrupted', 'skipped')",
                &[&run.batch, &run.job, &at, &worker],
            )
            .map_err(pg_err(ctx))?;
            tracing::warn!(
                "batch {} job {}: this run outlived its lease and was recorded as interrupted by another worker; \
                 its own record replaces that",
                run.batch,
                run.job
            );
        }
        tx.execute(
            &format!(
                "UPDATE sandstack_ticks SET state = 'done', lease_until = {NOW} \
                 WHERE batch = $1 AND job = $2 AND scheduled_at = $3 AND worker = $4"
            ),
            &[&run.batch, &run.job, &at, &worker],
        )
        .map_err(pg_err(ctx))?;
        let id = super::runs::insert_run(&mut tx, run)?;
        tx.commit().map_err(pg_err(ctx))?;
        Ok(id)
    }

    fn finish_tick(
        &self,
        worker: &str,
        batch: &str,
        job: &str,
        scheduled_us: i64,
    ) -> Result<bool, StoreError> {
        self.conn()?
            .execute(
                &format!(
                    "UPDATE sandstack_ticks SET state = 'done', lease_until = {NOW} \
                     WHERE batch = $1 AND job = $2 AND scheduled_at = $3 AND worker = $4 \
                     AND state IN ('running', 'skipped')"
                ),
                &[&batch, &job, &Micros(scheduled_us), &worker],
            )
            .map(|n| n > 0)
            .map_err(pg_err("ending a tick's claim in sandstack_ticks"))
    }

    fn heartbeat(
        &self,
        worker: &str,
        lease: Duration,
        held: &[(String, String, i64)],
    ) -> Result<(), StoreError> {
        let ctx = "renewing this worker's leases";
        let batches: Vec<&str> = held.iter().map(|h| h.0.as_str()).collect();
        let jobs: Vec<&str> = held.iter().map(|h| h.1.as_str()).collect();
        let ticks: Vec<Micros> = held.iter().map(|h| Micros(h.2)).collect();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg_err(ctx))?;
        tx.execute(
            &format!("UPDATE sandstack_workers SET heartbeat_at = {NOW} WHERE worker = $1"),
            &[&worker],
        )
        .map_err(pg_err(ctx))?;
        tx.execute(
            &format!(
                "UPDATE sandstack_ticks t SET lease_until = {NOW} + $2 * INTERVAL '1 millisecond' \
                 FROM unnest($3::text[], $4::text[], $5::timestamp[]) AS h(batch, job, scheduled_at) \
                 WHERE t.worker = $1 AND t.state = 'running' \
                 AND t.batch = h.batch AND t.job = h.job AND t.scheduled_at = h.scheduled_at"
            ),
            &[&worker, &millis(lease), &batches, &jobs, &ticks],
        )
        .map_err(pg_err(ctx))?;
        tx.commit().map_err(pg_err(ctx))
    }

    fn take_over_expired(&self, worker: &str) -> Result<Vec<TakenOver>, StoreError> {
        let rows = self
            .conn()?
            .query(
                &format!(
                    // A `skipped` claim (its batch's earlier run still held the
                    // job) is its worker's to record too: one killed between the
                    // claim and that record left the tick with no run at all.
                    "WITH expired AS (
                       UPDATE sandstack_ticks t SET state = 'interrupted'
                       FROM (SELECT batch, job, scheduled_at, state AS was FROM sandstack_ticks
                             WHERE state IN ('running', 'skipped') AND lease_until < {NOW}) e
                       -- Row locks re-check t.state: a claim another worker took
                       -- over meanwhile is not taken (or recorded) twice.
                       WHERE t.batch = e.batch AND t.job = e.job AND t.scheduled_at = e.scheduled_at
                         AND t.state IN ('running', 'skipped')
                       RETURNING t.batch, t.job, t.scheduled_at, t.worker, t.claimed_at, t.lease_until, e.was),
                     recorded AS (
                       INSERT INTO sandstack_runs (batch, job, scheduled_at, started_at, ended_at, status, error,
                                                   rows, fuel, wall_ms, attempt, worker)
                       SELECT batch, job, scheduled_at, claimed_at, {NOW},
                              CASE WHEN was = 'skipped' THEN 'skipped' ELSE 'interrupted' END,
                              'worker ' || worker || ' stopped renewing its lease (it ran out at '
                                || to_char(lease_until, 'YYYY-MM-DD HH24:MI:SS') || ' UTC): killed, frozen or cut off '
                                || 'from the database '
                                || CASE WHEN was = 'skipped'
                                     THEN 'before recording the tick as skipped (an earlier run held the job); worker '
                                          || $1 || ' recorded it'
                                     ELSE 'mid-run; worker ' || $1 || ' recorded the run as interrupted' END,
                              0, 0, extract(epoch FROM {NOW} - claimed_at) * 1000, 1, worker
                       FROM expired)
                     SELECT batch, job, scheduled_at, worker FROM expired"
                ),
                &[&worker],
            )
            .map_err(pg_err("taking over runs whose lease ran out"))?;
        Ok(rows
            .iter()
            .map(|r| TakenOver {
                batch: r.get(0),
                job: r.get(1),
                scheduled_us: r.get::<_, Micros>(2).0,
                worker: r.get(3),
            })
            .collect())
    }

    fn worker_stopped(&self, worker: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                &format!("UPDATE sandstack_workers SET stopped_at = {NOW} WHERE worker = $1"),
                &[&worker],
            )
            .map(|_| ())
            .map_err(pg_err("marking this worker stopped"))
    }

    fn workers(&self, within: Duration) -> Result<Vec<WorkerRow>, StoreError> {
        let rows = self
            .conn()?
            .query(
                &format!(
                    "SELECT w.worker, w.host, w.pid, w.started_at, w.heartbeat_at, w.stopped_at,
                       (SELECT count(*) FROM sandstack_ticks t WHERE t.worker = w.worker AND t.state = 'running')
                     FROM sandstack_workers w
                     WHERE w.heartbeat_at >= {NOW} - $1 * INTERVAL '1 millisecond'
                     ORDER BY w.heartbeat_at DESC, w.worker"
                ),
                &[&millis(within)],
            )
            .map_err(pg_err("reading sandstack_workers"))?;
        Ok(rows
            .iter()
            .map(|r| WorkerRow {
                worker: r.get(0),
                host: r.get(1),
                pid: r.get::<_, i32>(2).max(0) as u32,
                started_us: r.get::<_, Micros>(3).0,
                heartbeat_us: r.get::<_, Micros>(4).0,
                stopped_us: r.get::<_, Option<Micros>>(5).map(|m| m.0),
                running: r.get(6),
            })
            .collect())
    }

    fn prune_ticks(&self, max_age: Duration) -> Result<u64, StoreError> {
        self.conn()?
            .execute(
                &format!(
                    "DELETE FROM sandstack_ticks WHERE state <> 'running' \
                     AND scheduled_at < {NOW} - $1 * INTERVAL '1 millisecond'"
                ),
                &[&millis(max_age)],
            )
            .map_err(pg_err("pruning sandstack_ticks"))
    }
}

/// What `sandstack bench store` leaves behind, and how it reads the claims
/// table; not part of the fleet's protocol.
impl PgStore {
    /// Rows in `sandstack_ticks` for batches whose names start with
    /// `prefix`.
    pub fn claims_of(&self, prefix: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()?
            .query_one(
                "SELECT count(*) FROM sandstack_ticks WHERE starts_with(batch, $1)",
                &[&prefix],
            )
            .map_err(pg_err("counting claims in sandstack_ticks"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// Remove the claims and runs of batches whose names start with
    /// `prefix` (a bench's own, in a database that may be in use).
    pub fn forget_batches(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(pg_err("starting a transaction"))?;
        let mut n = 0;
        for table in ["sandstack_ticks", "sandstack_runs"] {
            n += tx
                .execute(
                    &format!("DELETE FROM {table} WHERE starts_with(batch, $1)"),
                    &[&prefix],
                )
                .map_err(pg_err(format!("removing the bench's rows from {table}")))?;
        }
        tx.commit().map_err(pg_err("committing"))?;
        Ok(n)
    }
}

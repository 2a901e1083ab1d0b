//! `sandstack bench store`: what each engine does with the store's work,
//! side by side: ingest's Arrow rows appended (rows/s, by one writer and
//! by several at once) beside the engine inserting as many rows it makes
//! itself, the scheduler's cost per tick (a claim, then the run recorded
//! with the claim ended: what a worker of a fleet does; DuckDB has
//! nothing to claim) with one worker and several claiming the same ticks,
//! and the reads the jobs make.
//! DuckDB always runs on a scratch file; PostgreSQL, when `--db` is a
//! `postgres://` URL (in a scratch schema, dropped at the end) or with
//! `--temp-postgres` (a throwaway cluster on loopback).

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::record_batch::RecordBatch;

use super::{build_profile, ms, percentile};
use crate::domain::{Judgement, MetricType};
use crate::jobs::rows::judgement_rows;
use crate::store::duck::DuckStore;
use crate::store::pg::cluster::TempCluster;
use crate::store::pg::PgStore;
use crate::store::{Claim, ResultCaps, RunRecord, RunStatus, Store, TableKey};

/// What `bench store` was asked to do.
pub struct Options {
    pub rows: usize,
    pub per_append: usize,
    pub metrics: usize,
    /// A PostgreSQL URL to measure beside DuckDB.
    pub postgres: Option<String>,
    /// Start a throwaway PostgreSQL cluster to measure beside DuckDB.
    pub temp_postgres: bool,
    /// Ticks the scheduler measurements go through.
    pub ticks: usize,
    /// Workers (threads with a connection each) for the concurrent figures.
    pub workers: usize,
}

/// Every batch the bench claims ticks and records runs for starts with
/// this, so they can be told from a real database's own and removed at the
/// end: `~` is not allowed in a batch name (`config::check_batch_name`), so
/// no batch of a metrics folder can share the prefix.
const BENCH: &str = "~sandstack_bench_";
const BATCH: &str = "sandstack_bench_store";
const LEASE: Duration = Duration::from_secs(60);

/// One engine's column of the table.
struct Column {
    title: String,
    cells: Vec<(String, String)>,
}

impl Column {
    fn add(&mut self, row: &str, cell: String) {
        eprintln!("  {}: {row}: {cell}", self.title);
        self.cells.push((row.to_string(), cell));
    }
}

pub fn store(opts: &Options) -> anyhow::Result<ExitCode> {
    let metrics = opts.metrics.max(1);
    let per_append = opts.per_append.clamp(1, opts.rows.max(1));
    eprintln!(
        "building {} rows over {metrics} metrics in Arrow...",
        opts.rows
    );
    let batches: Vec<RecordBatch> = (0..opts.rows)
        .step_by(per_append)
        .map(|first| rows(first, (first + per_append).min(opts.rows), metrics))
        .collect::<Result<_, _>>()?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let cluster = match (&opts.postgres, opts.temp_postgres) {
        (None, true) => {
            eprintln!("starting a throwaway PostgreSQL cluster (default durability: fsync on)...");
            Some(TempCluster::start_with(true).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let pg_url = opts
        .postgres
        .clone()
        .or_else(|| cluster.as_ref().map(|c| c.url.clone()));
    println!(
        "sandstack bench store: {} rows over {metrics} metrics, {per_append} per append; {} ticks; {} workers at most; {} build",
        opts.rows,
        opts.ticks,
        opts.workers,
        build_profile()
    );

    let duck_path = scratch.path().join("bench.duckdb");
    let duck =
        Store::open(&duck_path).with_context(|| format!("opening {}", duck_path.display()))?;
    let mut columns = vec![measure(
        "DuckDB (scratch file)",
        duck,
        &TableKey::parse("metrics")?,
        &batches,
        opts,
    )?];
    if let Some(url) = &pg_url {
        let pg =
            Store::open(std::path::Path::new(url)).context("opening the PostgreSQL database")?;
        let label = if cluster.is_some() {
            "PostgreSQL (throwaway, loopback, fsync on)".to_string()
        } else {
            format!("PostgreSQL ({})", crate::store::pg::redacted(url))
        };
        let column = measure(
            &label,
            pg,
            &TableKey::parse("sandstack_bench.metrics")?,
            &batches,
            opts,
        );
        // The scratch schema, the claims and the runs go whatever happened.
        if let Ok(pg) = Store::open(std::path::Path::new(url)) {
            if let Some(p) = pg.backend::<PgStore>() {
                let _ = p.drop_schema("sandstack_bench");
                if let Err(e) = p.forget_batches(BENCH) {
                    eprintln!(
                        "warning: the bench's claims and runs ({BENCH}*) were not removed: {e}"
                    );
                }
            }
        }
        columns.push(column?);
    } else {
        println!("(PostgreSQL not measured: pass --db postgres://... or --temp-postgres)");
    }
    print_table(&columns);
    Ok(ExitCode::SUCCESS)
}

/// Every figure for one engine.
fn measure(
    title: &str,
    mut store: Store,
    table: &TableKey,
    batches: &[RecordBatch],
    opts: &Options,
) -> anyhow::Result<Column> {
    let mut col = Column {
        title: title.to_string(),
        cells: Vec::new(),
    };
    let rows = opts.rows;
    // Appends, one writer.
    let mut appends = Vec::with_capacity(batches.len());
    let start = Instant::now();
    for b in batches {
        let t = Instant::now();
        store.append_metrics(table, std::slice::from_ref(b))?;
        appends.push(t.elapsed());
    }
    let total = start.elapsed();
    appends.sort();
    col.add(
        "append, 1 writer",
        format!(
            "{:.2} M rows/s (p50 {:.1} ms per append)",
            m_rows_per_s(rows, total),
            ms(percentile(&appends, 50.0))
        ),
    );
    // Appends, several writers at once, each its own connection.
    let n = opts.workers.max(1);
    if n > 1 {
        let took = in_parallel(&store, n, |mut s, k| {
            for b in batches.iter().skip(k).step_by(n) {
                s.append_metrics(table, std::slice::from_ref(b))?;
            }
            Ok(())
        })?;
        col.add(
            &format!("append, {n} writers at once"),
            format!("{:.2} M rows/s", m_rows_per_s(rows, took)),
        );
    }
    // The engine's own rows.
    let t = Instant::now();
    let made = if let Some(d) = store.backend::<DuckStore>() {
        d.insert_generated(
            &TableKey::parse(&format!("{table}_reference"))?,
            BATCH,
            rows as u64,
            opts.metrics as u64,
        )?
    } else if let Some(p) = store.backend::<PgStore>() {
        p.insert_generated(
            &TableKey::parse(&format!("{table}_reference"))?,
            BATCH,
            rows as u64,
            opts.metrics as u64,
        )?
    } else {
        0
    };
    col.add(
        "  reference: INSERT ... SELECT",
        format!(
            "{:.2} M rows/s (rows the engine makes itself)",
            m_rows_per_s(made, t.elapsed())
        ),
    );
    ticks(&mut col, &store, opts)?;
    reads(&mut col, &store, table, opts.metrics.max(1))?;
    Ok(col)
}

/// The scheduler's work per tick: claim it, record its run, finish it.
fn ticks(col: &mut Column, store: &Store, opts: &Options) -> anyhow::Result<()> {
    let shared = store.shared();
    let ticks = opts.ticks.max(1);
    let base = chrono::Utc::now().timestamp_micros() - (ticks as i64) * 1_000_000;
    let mut one = Vec::with_capacity(ticks);
    let mut claim_only = Vec::with_capacity(ticks);
    let start = Instant::now();
    for i in 0..ticks {
        let t = Instant::now();
        let at = base + i as i64 * 1_000;
        tick(store, "sandstack-bench-w0", i, at)?;
        one.push(t.elapsed());
        let t = Instant::now();
        store.claim_tick(
            "sandstack-bench-w0",
            "~sandstack_bench_claims",
            "ingest",
            at,
            LEASE,
        )?;
        claim_only.push(t.elapsed());
    }
    let took = start.elapsed();
    one.sort();
    claim_only.sort();
    col.add(
        "claim latency (p50 / p99)",
        if shared {
            format!(
                "{:.2} / {:.2} ms",
                ms(percentile(&claim_only, 50.0)),
                ms(percentile(&claim_only, 99.0))
            )
        } else {
            "none: one process holds the file".into()
        },
    );
    col.add(
        "a tick's bookkeeping (p50 / p99)",
        format!(
            "{:.2} / {:.2} ms ({})",
            ms(percentile(&one, 50.0)),
            ms(percentile(&one, 99.0)),
            if shared {
                "claim; record and end the claim"
            } else {
                "record"
            }
        ),
    );
    col.add(
        "ticks/s, 1 worker",
        format!(
            "{:.0}",
            ticks as f64 / (took.as_secs_f64() - sum(&claim_only)).max(1e-9)
        ),
    );
    let n = opts.workers.max(1);
    if n > 1 && !shared {
        col.add(
            &format!("ticks/s, {n} workers claiming each"),
            "none: one worker per file".into(),
        );
    }
    if n > 1 && shared {
        contended_ticks(col, store, n, ticks, base - (ticks as i64) * 10_000_000)?;
    }
    match store.backend::<PgStore>() {
        Some(pg) => claims_kept(col, store, pg, ticks)?,
        None => col.add(
            &format!("claims kept over {ticks} ticks a second apart"),
            "none: one process holds the file".into(),
        ),
    }
    Ok(())
}

/// The claims table of a fleet over `ticks` ticks a second apart, ending
/// now, forgotten as a worker forgets them (every [`PRUNE_EVERY`] of
/// ticks, those older than [`KEEP_TICKS`]): it holds at most a day's
/// ticks and the ones since the last pruning, however long the fleet runs.
fn claims_kept(col: &mut Column, store: &Store, pg: &PgStore, ticks: usize) -> anyhow::Result<()> {
    use crate::scheduler::fleet::{KEEP_TICKS, PRUNE_EVERY};
    const WHOSE: &str = "~sandstack_bench_fleet";
    let now = chrono::Utc::now().timestamp_micros();
    let every = PRUNE_EVERY.as_secs() as usize;
    let mut most = 0;
    for i in 0..ticks {
        let at = now - (ticks - i) as i64 * 1_000_000;
        if store.claim_tick("sandstack-bench-w0", WHOSE, "ingest", at, LEASE)? == Claim::Mine {
            store.finish_tick("sandstack-bench-w0", WHOSE, "ingest", at)?;
        }
        if (i + 1) % every == 0 || i + 1 == ticks {
            most = most.max(pg.claims_of(WHOSE)?);
            store.prune_ticks(KEEP_TICKS)?;
        }
    }
    let kept = pg.claims_of(WHOSE)?;
    col.add(
        &format!("claims kept over {ticks} ticks a second apart"),
        format!(
            "at most {most}, {kept} at the end (pruned every {}s of ticks, keeping {}s; a day is {} ticks)",
            PRUNE_EVERY.as_secs(),
            KEEP_TICKS.as_secs(),
            KEEP_TICKS.as_secs()
        ),
    );
    Ok(())
}

/// Every worker claims every tick, as the fleet's workers do; one wins.
fn contended_ticks(
    col: &mut Column,
    store: &Store,
    n: usize,
    ticks: usize,
    base: i64,
) -> anyhow::Result<()> {
    let won = AtomicUsize::new(0);
    let took = in_parallel(store, n, |s, k| {
        for i in 0..ticks {
            let at = base + i as i64 * 1_000;
            if tick(&s, &format!("sandstack-bench-w{k}"), i, at)? {
                won.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })?;
    let won = won.load(Ordering::Relaxed);
    col.add(
        &format!("ticks/s, {n} workers claiming each"),
        format!(
            "{:.0} ({won} of {ticks} ticks run{})",
            ticks as f64 / took.as_secs_f64().max(1e-9),
            if won == ticks { ", each once" } else { "" }
        ),
    );
    Ok(())
}

fn sum(d: &[Duration]) -> f64 {
    d.iter().map(Duration::as_secs_f64).sum()
}

/// One tick by `worker`: claimed, and if won, its run recorded with the
/// claim ended (as the scheduler does).
/// Returns whether this worker ran it.
fn tick(store: &Store, worker: &str, i: usize, at: i64) -> anyhow::Result<bool> {
    let batch = format!("{BENCH}{}", i % 50);
    if store.claim_tick(worker, &batch, "ingest", at, LEASE)? != Claim::Mine {
        return Ok(false);
    }
    store.record_claimed_run(&RunRecord {
        run_id: 0,
        batch: batch.clone(),
        job: "ingest".into(),
        scheduled_us: at,
        started_us: at,
        ended_us: at + 1_000,
        status: RunStatus::Succeeded,
        error: None,
        rows: 1,
        fuel: 0,
        wall_ms: 1.0,
        cassette: None,
        log: None,
        attempt: 1,
        worker: Some(worker.into()),
    })?;
    Ok(true)
}

/// Run `work` on `n` threads at once, each with a connection of its own
/// and its index; the time from the start line to the last one done.
fn in_parallel(
    store: &Store,
    n: usize,
    work: impl Fn(Store, usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<Duration> {
    let stores = (0..n)
        .map(|_| store.try_clone())
        .collect::<Result<Vec<_>, _>>()?;
    let start = Barrier::new(n + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                let (start, work) = (&start, &work);
                scope.spawn(move || {
                    start.wait();
                    work(s, k)
                })
            })
            .collect();
        start.wait();
        let t = Instant::now();
        for th in threads {
            th.join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok(t.elapsed())
    })
}

/// The reads the jobs make, timed on the appended rows.
fn reads(col: &mut Column, store: &Store, table: &TableKey, metrics: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    let n = store.count_rows(table)?;
    col.add(
        "count rows",
        format!("{:.2} ms ({n} rows)", ms(t.elapsed())),
    );
    let t = Instant::now();
    let seen = store.timestamps_of_type(table, BATCH, MetricType::Metric)?;
    col.add(
        "timestamps of a type, per metric",
        format!("{:.2} ms ({} metrics)", ms(t.elapsed()), seen.len()),
    );
    let sample = metrics.min(100);
    let mut newest: Vec<Duration> = Vec::with_capacity(sample);
    for m in 0..sample {
        let t = Instant::now();
        store.newest_values(table, BATCH, &format!("metric_{m}"), 10)?;
        newest.push(t.elapsed());
    }
    newest.sort();
    col.add(
        "newest 10 values of one metric",
        format!("{:.2} ms (p50 of {sample})", ms(percentile(&newest, 50.0))),
    );
    let t = Instant::now();
    let rows = store.read_rows(table, Some(BATCH))?;
    let read = t.elapsed();
    let read_n: usize = rows.iter().map(|b| b.num_rows()).sum();
    col.add(
        "a batch's rows read for its SQL",
        format!(
            "{:.2} M rows/s ({:.1} ms)",
            m_rows_per_s(read_n, read),
            ms(read)
        ),
    );
    let t = Instant::now();
    store.query_batch_sql(
        table,
        "sandstack_bench_no_rows",
        "SELECT 1 AS x",
        ResultCaps::TEMPLATE,
    )?;
    col.add(
        "a batch's SQL over no rows",
        format!("{:.1} ms (the helper process's start)", ms(t.elapsed())),
    );
    let t = Instant::now();
    let scanned = store.query_batch_sql(
        table,
        BATCH,
        &format!(
            "SELECT metric_name, avg(metric_value), max(metric_timestamp) FROM {table} GROUP BY metric_name"
        ),
        ResultCaps::TEMPLATE,
    )?;
    let groups: usize = scanned.iter().map(|b| b.num_rows()).sum();
    let scan = t.elapsed();
    col.add(
        "a template's GROUP BY, all of it",
        format!(
            "{:.2} M rows/s ({:.1} ms: read, copied to the helper and run; {groups} groups)",
            m_rows_per_s(read_n, scan),
            ms(scan)
        ),
    );
    Ok(())
}

fn print_table(columns: &[Column]) {
    let width = columns
        .iter()
        .flat_map(|c| c.cells.iter().map(|(r, _)| r.len()))
        .max()
        .unwrap_or(10);
    let cell_width = columns
        .iter()
        .flat_map(|c| c.cells.iter().map(|(_, v)| v.len()).chain([c.title.len()]))
        .max()
        .unwrap_or(10);
    print!("{:<width$}", "");
    for c in columns {
        print!("  {:<cell_width$}", c.title);
    }
    println!();
    let rows: Vec<&String> = columns[0].cells.iter().map(|(r, _)| r).collect();
    for row in rows {
        print!("{row:<width$}");
        for c in columns {
            let v = c
                .cells
                .iter()
                .find(|(r, _)| r == row)
                .map_or("", |(_, v)| v.as_str());
            print!("  {v:<cell_width$}");
        }
        println!();
    }
}

/// Rows `first..end` of the synthetic series: `metrics` names, one row per
/// name per second, values from a fixed sequence.
fn rows(first: usize, end: usize, metrics: usize) -> anyhow::Result<RecordBatch> {
    let base_us: i64 = 1_767_225_600_000_000;
    let rows: Vec<Judgement> = (first..end)
        .map(|i| Judgement {
            timestamp_us: base_us + (i / metrics) as i64 * 1_000_000,
            metric_name: format!("metric_{}", i % metrics),
            value: ((i as f64) * 0.618_033_988_75).fract() * 100.0,
            metadata: None,
        })
        .collect();
    Ok(judgement_rows(BATCH, MetricType::Metric, &rows)?)
}

/// Millions of rows a second.
fn m_rows_per_s(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

//! `sandstack bench store`: how fast the store takes ingest's Arrow rows
//! (append, in rows/s) beside DuckDB writing the same number of rows it
//! generates itself, and how long the reads the jobs make take on the
//! result. Everything goes to a scratch database file, never `--db`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::record_batch::RecordBatch;

use super::{build_profile, ms, percentile};
use crate::domain::Judgement;
use crate::jobs::rows::judgement_rows;
use crate::store::duck::DuckStore;
use crate::store::Store;

/// What `bench store` was asked to do.
pub struct Options {
    pub rows: usize,
    pub per_append: usize,
    pub metrics: usize,
}

const BATCH: &str = "bench_store";
const TABLE: &str = "metrics";

pub fn store(opts: &Options) -> anyhow::Result<ExitCode> {
    let metrics = opts.metrics.max(1);
    let per_append = opts.per_append.clamp(1, opts.rows.max(1));
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let path = scratch.path().join("bench.duckdb");
    let mut store = Store::open(&path).with_context(|| format!("opening {}", path.display()))?;
    eprintln!(
        "building {} rows over {metrics} metrics in Arrow...",
        opts.rows
    );
    let batches: Vec<RecordBatch> = (0..opts.rows)
        .step_by(per_append)
        .map(|first| rows(first, (first + per_append).min(opts.rows), metrics))
        .collect::<Result<_, _>>()?;
    println!(
        "sandstack bench store: {} rows over {metrics} metrics, {per_append} per append, a scratch DuckDB file, {} build",
        opts.rows,
        build_profile()
    );

    let mut appends = Vec::with_capacity(batches.len());
    let start = Instant::now();
    for b in &batches {
        let t = Instant::now();
        store.append_metrics(TABLE, std::slice::from_ref(b))?;
        appends.push(t.elapsed());
    }
    let append_total = start.elapsed();
    appends.sort();
    println!(
        "{:<34} {:>10.2} M rows/s  ({:.0} ms in all, p50 {:.1} ms per append)",
        "append (Arrow appender)",
        m_rows_per_s(opts.rows, append_total),
        ms(append_total),
        ms(percentile(&appends, 50.0))
    );
    let duck = store
        .backend::<DuckStore>()
        .context("the store is not DuckDB")?;
    let t = Instant::now();
    let made = duck.insert_generated("reference", BATCH, opts.rows as u64, metrics as u64)?;
    let reference = t.elapsed();
    println!(
        "{:<34} {:>10.2} M rows/s  ({:.0} ms; the same number of rows, made by DuckDB itself)",
        "  reference: INSERT ... SELECT",
        m_rows_per_s(made, reference),
        ms(reference)
    );
    reads(&store, metrics)?;
    Ok(ExitCode::SUCCESS)
}

/// The reads the jobs make, timed on the appended rows.
fn reads(store: &Store, metrics: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    let n = store.count_rows(TABLE)?;
    println!(
        "{:<34} {:>10.2} ms  ({n} rows)",
        "count rows",
        ms(t.elapsed())
    );
    let t = Instant::now();
    let seen = store.timestamps_of_type(TABLE, BATCH, "metric")?;
    println!(
        "{:<34} {:>10.2} ms  ({} metrics; what score and alert skip)",
        "timestamps of a type, per metric",
        ms(t.elapsed()),
        seen.len()
    );
    let sample = metrics.min(100);
    let mut newest: Vec<Duration> = Vec::with_capacity(sample);
    for m in 0..sample {
        let t = Instant::now();
        store.newest_values(TABLE, BATCH, &format!("metric_{m}"), 10)?;
        newest.push(t.elapsed());
    }
    newest.sort();
    println!(
        "{:<34} {:>10.2} ms  (p50 of {sample} metrics; threshold alerts read this)",
        "newest 10 values of one metric",
        ms(percentile(&newest, 50.0))
    );
    let t = Instant::now();
    let scanned = store.query_template(&format!(
        "SELECT metric_name, avg(metric_value), max(metric_timestamp) FROM {TABLE} GROUP BY metric_name"
    ))?;
    let groups: usize = scanned.iter().map(|b| b.num_rows()).sum();
    let scan = t.elapsed();
    println!(
        "{:<34} {:>10.2} M rows/s  ({:.1} ms, {groups} groups)",
        "scan (a template's GROUP BY)",
        m_rows_per_s(n as usize, scan),
        ms(scan)
    );
    Ok(())
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
    Ok(judgement_rows(BATCH, "metric", &rows)?)
}

/// Millions of rows a second.
fn m_rows_per_s(rows: usize, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

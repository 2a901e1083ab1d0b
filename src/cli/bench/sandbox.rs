//! `sandstack bench sandbox`: per-run latency and throughput of a Python
//! batch in the sandbox (fresh instance to normalised Arrow rows, ready to
//! store), where each run's time goes, and, measured in the same process
//! run, the same function in the machine's `python3` + pandas
//! ([`super::native`]).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::super::{find_batch, load_folder, Cli};
use super::{
    build_profile, mean, ms, native::compare_native, on_workers, percentile, rss_mib, summary,
    Results,
};
use crate::config::{BatchSpec, IngestSource, PythonSource};
use crate::jobs::ingest::{normalize::normalize, python, DefaultSandbox, SandboxSource};

use crate::sandbox::{Metering, Phases, Sandbox};
use crate::store::Store;

/// What `bench sandbox` was asked to do.
pub struct Options<'a> {
    pub batch: &'a str,
    pub runs: usize,
    pub native_runs: usize,
    pub concurrency: usize,
    /// Append each run's rows to a scratch DuckDB file too.
    pub store: bool,
    /// Run sandstack's built-in frame of this many rows instead of the
    /// batch's function (with the batch's other settings).
    pub rows: Option<u64>,
    /// Then compare runs with and without fuel and epoch checks.
    pub unmetered: bool,
}

/// The built-in frame `--rows N` runs: N rows over 50 metric names, float
/// values, one UTC timestamp per row (what a big scrape returns).
fn frame_source(rows: u64) -> PythonSource {
    let code = format!(
        "import numpy as np\nimport pandas as pd\n\n\n\
         def ingest(rows={rows}, names=50):\n    \
         rng = np.random.default_rng(7)\n    \
         start = pd.Timestamp(\"2026-01-01\", tz=\"UTC\")\n    \
         return pd.DataFrame(\n        {{\n            \
         \"metric_timestamp\": start + pd.to_timedelta(np.arange(rows) // names, unit=\"s\"),\n            \
         \"metric_name\": [f\"metric_{{i % names}}\" for i in range(rows)],\n            \
         \"metric_value\": rng.normal(size=rows),\n        }}\n    )\n"
    );
    PythonSource {
        code,
        filename: "<bench frame>".into(),
        function: "ingest".into(),
    }
}

/// One run's figures.
struct RunTimes {
    total: Duration,
    phases: Phases,
    normalize: Duration,
    store: Option<Duration>,
    rows: usize,
}

/// The batch's settings and the code to run: its own, or the built-in
/// frame with room for it.
fn what_to_run(cli: &Cli, opts: &Options<'_>) -> anyhow::Result<(BatchSpec, PythonSource)> {
    let folder = load_folder(cli)?;
    let mut spec = find_batch(&folder, opts.batch)?.clone();
    let source = match (opts.rows, &spec.ingest) {
        (Some(rows), _) => {
            spec.limits.max_rows = spec.limits.max_rows.max(rows);
            spec.limits.max_result_kb = spec.limits.max_result_kb.max(rows / 8 + 1024);
            frame_source(rows)
        }
        (None, IngestSource::Python(source)) => source.clone(),
        (None, _) => bail!("batch `{}` is not a Python batch", opts.batch),
    };
    Ok((spec, source))
}

pub fn sandbox(cli: &Cli, opts: &Options<'_>) -> anyhow::Result<ExitCode> {
    let (spec, source) = what_to_run(cli, opts)?;
    let (spec, source) = (&spec, &source);
    let sandbox = DefaultSandbox.sandbox()?;
    // A scratch database: the bench never writes to --db.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let store = if opts.store {
        let path = scratch.path().join("bench.duckdb");
        let store = Store::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Some(Mutex::new(store))
    } else {
        None
    };
    let run_once = || one_run(&sandbox, spec, source, store.as_ref());
    // Warm-up runs: page in the compiled module, fill the instance pool.
    for _ in 0..opts.concurrency.max(2) {
        run_once()?;
    }
    let results = Results::with_room_for(opts.runs);
    let rss_before = rss_mib();
    let concurrency = opts.concurrency.max(1);
    let start = Instant::now();
    on_workers(&results, concurrency, &run_once)?;
    let total = start.elapsed();
    let rss_after = rss_mib();
    let results = results.into_vec();
    let rows = results.last().map_or(0, |r| r.rows);
    let mut times: Vec<Duration> = results.iter().map(|r| r.total).collect();
    let what = match opts.rows {
        Some(_) => "the built-in frame".to_string(),
        None => format!("batch {}", opts.batch),
    };
    println!(
        "sandstack bench sandbox: {what}, {rows} rows per run, {concurrency} run(s) at a time, {} build",
        build_profile()
    );
    println!(
        "{}",
        summary("sandbox (fresh instance)", times.clone(), total)
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "{:<26} {before:.1} MiB after warm-up, {after:.1} MiB after {} runs ({:+.1} MiB)",
            "RSS (this process)",
            results.len(),
            after - before
        );
    }
    print_phases(&results);
    if opts.store {
        print_to_stored(&results);
    }
    if opts.unmetered {
        let say = |m: &str| eprintln!("sandstack setup: {m}");
        let mut kinds = vec![(Metering::Metered, sandbox.clone())];
        for m in [Metering::FuelOnly, Metering::EpochOnly, Metering::Unmetered] {
            let other = Sandbox::for_bench(&crate::sandbox::home_dir(), m, &say)?;
            kinds.push((m, Arc::new(other)));
        }
        limits_cost(&kinds, spec, source, opts.runs)?;
    }
    times.sort();
    compare_native(
        &source.code,
        &source.function,
        opts.native_runs,
        opts.runs,
        &times,
    );
    Ok(ExitCode::SUCCESS)
}

/// One figure of every run, sorted (for percentiles).
fn sorted(results: &[RunTimes], figure: &dyn Fn(&RunTimes) -> Duration) -> Vec<Duration> {
    let mut v: Vec<Duration> = results.iter().map(figure).collect();
    v.sort();
    v
}

/// From the frame in the guest to rows in the store: what a big result costs.
fn print_to_stored(results: &[RunTimes]) {
    let to_stored = sorted(results, &|r| {
        r.phases.encode + r.phases.decode + r.normalize + r.store.unwrap_or_default()
    });
    println!(
        "{:<26} p50 {:>8.2} ms  p99 {:>8.2} ms  (encode + door + normalize + store)",
        "frame in guest → stored",
        ms(percentile(&to_stored, 50.0)),
        ms(percentile(&to_stored, 99.0))
    );
}

/// Each kind of code (both checks, fuel only, epoch checks only) against
/// the same runs with neither, alternating one by one in pairs so each
/// pair sees the same machine. `kinds` ends with the kind with neither.
fn limits_cost(
    kinds: &[(Metering, Arc<Sandbox>)],
    spec: &BatchSpec,
    source: &PythonSource,
    runs: usize,
) -> anyhow::Result<()> {
    let Some(((_, none), checked)) = kinds.split_last() else {
        return Ok(());
    };
    let p50 =
        |runs: &[RunTimes], f: &dyn Fn(&RunTimes) -> Duration| percentile(&sorted(runs, f), 50.0);
    let whole = |r: &RunTimes| r.total;
    let guest = |r: &RunTimes| r.phases.driver_start + r.phases.user_code + r.phases.encode;
    let cost =
        |a: Duration, b: Duration| 100.0 * (a.as_secs_f64() / b.as_secs_f64().max(1e-12) - 1.0);
    println!("what the limits cost ({runs} runs of each against as many with no checks, alternating; p50):");
    for (m, s) in checked {
        one_run(s, spec, source, None)?;
        one_run(none, spec, source, None)?;
        let (mut with, mut without) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for _ in 0..runs {
            with.push(one_run(s, spec, source, None)?);
            without.push(one_run(none, spec, source, None)?);
        }
        let (a, b) = (p50(&with, &whole), p50(&without, &whole));
        let (ga, gb) = (p50(&with, &guest), p50(&without, &guest));
        println!(
            "  {:<22} {:>7.2} ms vs {:>7.2} ms per run ({:+.1}%), {:>7.2} vs {:>7.2} ms in guest code ({:+.1}%)",
            m.name(),
            ms(a),
            ms(b),
            cost(a, b),
            ms(ga),
            ms(gb),
            cost(ga, gb),
        );
    }
    Ok(())
}

fn one_run(
    sandbox: &Arc<Sandbox>,
    spec: &BatchSpec,
    source: &PythonSource,
    store: Option<&Mutex<Store>>,
) -> anyhow::Result<RunTimes> {
    let batch = &spec.metric_batch;
    let t = Instant::now();
    let mut req = python::request(spec, source, &Default::default());
    req.time_phases = true;
    let report = sandbox.execute(req);
    let raw = report
        .outcome
        .map_err(|e| anyhow::anyhow!("batch {batch}: {e}"))?;
    let normalizing = Instant::now();
    let n = normalize(
        &[raw],
        batch,
        &spec.limits,
        spec.ingest_settings.metric_rounding,
    )
    .map_err(|e| anyhow::anyhow!("batch {batch}: {e}"))?;
    let normalize_time = normalizing.elapsed();
    let store_time = match store {
        Some(store) => {
            let storing = Instant::now();
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            store
                .append_metrics(&spec.table_key, std::slice::from_ref(&n.rows))
                .with_context(|| format!("batch {batch}: storing its rows"))?;
            Some(storing.elapsed())
        }
        None => None,
    };
    let phases = report
        .stats
        .phases
        .ok_or_else(|| anyhow::anyhow!("batch {batch}: the run did not report its phases"))?;
    Ok(RunTimes {
        total: t.elapsed(),
        phases,
        normalize: normalize_time,
        store: store_time,
        rows: n.rows.num_rows(),
    })
}

/// p50, p99 and mean of each step of a run, and its share of the mean run.
fn print_phases(results: &[RunTimes]) {
    let column = |f: &dyn Fn(&RunTimes) -> Duration| sorted(results, f);
    let mut rows: Vec<(&str, Vec<Duration>)> = vec![
        ("instantiate", column(&|r| r.phases.instantiate)),
        ("driver start", column(&|r| r.phases.driver_start)),
        ("user code", column(&|r| r.phases.user_code)),
        ("encode (guest)", column(&|r| r.phases.encode)),
        ("door + decode (host)", column(&|r| r.phases.decode)),
        ("drop instance", column(&|r| r.phases.finish)),
        ("normalize", column(&|r| r.normalize)),
    ];
    if results.iter().all(|r| r.store.is_some()) {
        rows.push(("store (DuckDB)", column(&|r| r.store.unwrap_or_default())));
    }
    let whole = mean(&column(&|r| r.total)).as_secs_f64().max(1e-12);
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>6}",
        "  where a run's time goes", "p50 ms", "p99 ms", "mean ms", "share"
    );
    for (label, sorted) in rows {
        let m = mean(&sorted);
        println!(
            "    {label:<22} {:>9.3} {:>9.3} {:>9.3} {:>5.1}%",
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 99.0)),
            ms(m),
            100.0 * m.as_secs_f64() / whole
        );
    }
    let mut faults: Vec<u64> = results.iter().map(|r| r.phases.page_faults).collect();
    faults.sort_unstable();
    if let (Some(p50), Some(p99)) = (
        faults.get((faults.len().saturating_sub(1)) / 2),
        faults.get((faults.len().saturating_sub(1)) * 99 / 100),
    ) {
        println!(
            "    {:<22} {p50:>9} {p99:>9}   (the run's thread, instantiate to drop)",
            "page faults"
        );
    }
}

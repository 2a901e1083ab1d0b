//! `sandstack bench sandbox`: per-run latency and throughput of a Python
//! batch in the sandbox (fresh instance to normalised Arrow rows, ready to
//! store), and, measured in the same process run, the same function in the
//! machine's `python3` + pandas ([`super::native`]).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::super::{find_batch, load_folder, Cli};
use super::{ms, native::compare_native, on_workers, peak_rss_mib, percentile, summary};
use crate::config::IngestSource;
use crate::jobs::ingest::{normalize::normalize, python, DefaultSandbox, SandboxSource};

pub fn sandbox(
    cli: &Cli,
    batch: &str,
    runs: usize,
    native_runs: usize,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, batch)?;
    let IngestSource::Python(source) = &spec.ingest else {
        bail!("batch `{batch}` is not a Python batch");
    };
    let sandbox = DefaultSandbox.sandbox()?;
    let env = std::collections::BTreeMap::new();
    let run_once = || -> anyhow::Result<(Duration, Duration, usize)> {
        let t = Instant::now();
        let report = sandbox.execute(python::request(spec, source, &env));
        let raw = report
            .outcome
            .map_err(|e| anyhow::anyhow!("batch {batch}: {e}"))?;
        let n = normalize(
            &[raw],
            batch,
            &spec.limits,
            spec.ingest_settings.metric_rounding,
        )
        .map_err(|e| anyhow::anyhow!("batch {batch}: {e}"))?;
        Ok((t.elapsed(), report.stats.instantiate, n.rows.num_rows()))
    };
    // One warm-up run: page in the compiled module.
    run_once()?;
    let concurrency = concurrency.max(1);
    let start = Instant::now();
    let results = on_workers(runs, concurrency, &run_once)?;
    let total = start.elapsed();
    let rows = results.last().map_or(0, |r| r.2);
    let mut times: Vec<Duration> = results.iter().map(|r| r.0).collect();
    let mut instantiate: Vec<Duration> = results.iter().map(|r| r.1).collect();
    println!(
        "sandstack bench sandbox: batch {batch}, {rows} rows per run, {concurrency} run(s) at a time"
    );
    println!(
        "{}",
        summary("sandbox (fresh instance)", times.clone(), total)
    );
    instantiate.sort();
    println!(
        "{:<26} p50 {:>8.3} ms  p99 {:>8.3} ms",
        "  of which instantiate",
        ms(percentile(&instantiate, 50.0)),
        ms(percentile(&instantiate, 99.0))
    );
    if let Some(rss) = peak_rss_mib() {
        println!("{:<26} {rss:.1} MiB", "peak RSS (this process)");
    }
    times.sort();
    compare_native(&source.code, &source.function, native_runs, runs, &times);
    Ok(ExitCode::SUCCESS)
}

//! `sandstack bench sandbox`: per-run latency and throughput of a Python
//! batch in the sandbox (fresh instance to normalised Arrow rows, ready to
//! store), and, measured in the same process run, the same function in the
//! machine's `python3` + pandas: in one warm process (exec + call, the
//! anchor) and in a new process per run.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{find_batch, load_folder, Cli};
use crate::config::IngestSource;
use crate::jobs::ingest::{normalize::normalize, python, DefaultSandbox, SandboxSource};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident set of this process, from /proc (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn summary(label: &str, mut times: Vec<Duration>, total: Duration) -> String {
    times.sort();
    format!(
        "{label:<26} runs {:>4}  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  {:>8.1} runs/s",
        times.len(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 90.0)),
        ms(percentile(&times, 99.0)),
        times.len() as f64 / total.as_secs_f64().max(1e-9)
    )
}

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

/// Runs `run` `runs` times on `workers` threads at once; every result, or
/// the first error.
fn on_workers<T: Send>(
    runs: usize,
    workers: usize,
    run: &(dyn Fn() -> anyhow::Result<T> + Sync),
) -> anyhow::Result<Vec<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let per_worker: Vec<anyhow::Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < runs {
                        mine.push(run()?);
                    }
                    Ok(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a bench worker panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(runs);
    for worker in per_worker {
        all.extend(worker?);
    }
    Ok(all)
}

/// The same function in the machine's python3, side by side: in one warm
/// process (what an Anomstack user's Python does each run: exec the source
/// into a fresh namespace and call it), and in a new process per run.
fn compare_native(
    code: &str,
    function: &str,
    native_runs: usize,
    runs: usize,
    sandbox: &[Duration],
) {
    let sandbox_p50 = percentile(sandbox, 50.0).as_secs_f64().max(1e-9);
    let sandbox_p99 = percentile(sandbox, 99.0).as_secs_f64().max(1e-9);
    if let Err(note) = python_with_pandas() {
        for label in ["python3, warm, exec + call", "python3, new process"] {
            println!("{label:<26} skipped: {note}");
        }
        return;
    }
    match in_process(code, function, runs) {
        Ok((mut times, total)) => {
            times.sort();
            println!(
                "{}",
                summary("python3, warm, exec + call", times.clone(), total)
            );
            println!(
                "{:<26} {:.1}x at p50, {:.1}x at p99",
                "sandbox / warm python3",
                sandbox_p50 / percentile(&times, 50.0).as_secs_f64().max(1e-9),
                sandbox_p99 / percentile(&times, 99.0).as_secs_f64().max(1e-9),
            );
        }
        Err(note) => println!("{:<26} skipped: {note}", "python3, warm, exec + call"),
    }
    match native(code, function, native_runs) {
        Ok((times, total)) => {
            let mut sorted = times.clone();
            sorted.sort();
            println!("{}", summary("python3, new process", times, total));
            println!(
                "{:<26} {:.1}x faster at p50",
                "sandbox vs new process",
                percentile(&sorted, 50.0).as_secs_f64() / sandbox_p50
            );
        }
        Err(note) => println!("{:<26} skipped: {note}", "python3, new process"),
    }
}

/// Starts each timing line of the anchor's output.
const MARK: &str = "@sandstack-bench-ns";

/// Times `runs` calls of the function in one python3 process with pandas
/// imported, each an `exec` of the source into a fresh namespace and the
/// call, timed inside Python (after three warm-up calls).
fn in_process(
    code: &str,
    function: &str,
    runs: usize,
) -> Result<(Vec<Duration>, Duration), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let source = dir.path().join("ingest_source.py");
    std::fs::write(&source, code).map_err(|e| e.to_string())?;
    // The timings are marked: the function may print too.
    let harness = format!(
        "import sys, time\nimport pandas\nsource = open(sys.argv[1]).read()\nfunction = sys.argv[2]\n\
         def once():\n    ns = {{'__name__': '__sandstack_ingest__'}}\n    exec(source, ns)\n    df = ns[function]()\n    assert len(df) > 0\n\
         for _ in range(3):\n    once()\n\
         for _ in range({runs}):\n    t = time.perf_counter_ns()\n    once()\n    print('{MARK}', time.perf_counter_ns() - t)\n"
    );
    let start = Instant::now();
    let out = Command::new("python3")
        .args(["-c", &harness])
        .arg(&source)
        .arg(function)
        .output()
        .map_err(|e| format!("python3 not found ({e})"))?;
    let total = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "the function failed natively: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let times: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(MARK)?.trim().parse::<u64>().ok())
        .map(Duration::from_nanos)
        .collect();
    let in_python: Duration = times.iter().sum();
    Ok((times, in_python.min(total)))
}

/// Whether the machine's python3 can import pandas; Err with a note if not.
fn python_with_pandas() -> Result<(), String> {
    let probe = Command::new("python3")
        .args(["-c", "import pandas"])
        .output()
        .map_err(|e| format!("python3 not found ({e})"))?;
    if !probe.status.success() {
        return Err("pandas is not installed for python3 (pip install pandas to compare)".into());
    }
    Ok(())
}

/// Time `python3 script.py` runs of the same function.
fn native(code: &str, function: &str, runs: usize) -> Result<(Vec<Duration>, Duration), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = dir.path().join("ingest_native.py");
    let harness = format!(
        "{code}\n\nif __name__ == '__main__':\n    _df = {function}()\n    assert len(_df) > 0\n"
    );
    std::fs::write(&script, harness).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(runs);
    let start = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new("python3")
            .arg(&script)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "the function failed natively: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
        times.push(t.elapsed());
    }
    Ok((times, start.elapsed()))
}

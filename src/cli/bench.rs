//! `sandstack bench sandbox`: per-run latency of a Python batch in the
//! sandbox (fresh instance to normalised Arrow rows, ready to store), and
//! the same function in the machine's `python3` + pandas, one subprocess per
//! run, measured in the same process run.

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
) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, batch)?;
    let IngestSource::Python(source) = &spec.ingest else {
        bail!("batch `{batch}` is not a Python batch");
    };
    let sandbox = DefaultSandbox.sandbox()?;
    let env = std::collections::BTreeMap::new();
    let request = || python::request(spec, source, &env);

    // One warm-up run: page in the compiled module.
    let warm = sandbox.execute(request());
    if let Err(e) = warm.outcome {
        bail!("batch {batch}: {e}");
    }
    let mut times = Vec::with_capacity(runs);
    let mut instantiate = Vec::with_capacity(runs);
    let mut rows = 0;
    let start = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        let report = sandbox.execute(request());
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
        rows = n.rows.num_rows();
        times.push(t.elapsed());
        instantiate.push(report.stats.instantiate);
    }
    let total = start.elapsed();
    println!("sandstack bench sandbox: batch {batch}, {rows} rows per run");
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

    let sandbox_p50 = {
        let mut t = times;
        t.sort();
        percentile(&t, 50.0)
    };
    match native(&source.code, &source.function, native_runs) {
        Ok((native_times, native_total)) => {
            let mut sorted = native_times.clone();
            sorted.sort();
            let native_p50 = percentile(&sorted, 50.0);
            println!(
                "{}",
                summary("native python3 subprocess", native_times, native_total)
            );
            println!(
                "{:<26} {:.1}x faster at p50",
                "sandbox vs native",
                native_p50.as_secs_f64() / sandbox_p50.as_secs_f64().max(1e-9)
            );
        }
        Err(note) => println!("{:<26} skipped: {note}", "native python3 subprocess"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Time `python3 script.py` runs of the same function; Err with a note if
/// python3 or pandas is missing.
fn native(code: &str, function: &str, runs: usize) -> Result<(Vec<Duration>, Duration), String> {
    let probe = Command::new("python3")
        .args(["-c", "import pandas"])
        .output()
        .map_err(|e| format!("python3 not found ({e})"))?;
    if !probe.status.success() {
        return Err("pandas is not installed for python3 (pip install pandas to compare)".into());
    }
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

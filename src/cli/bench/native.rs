//! The references `bench sandbox` prints beside the sandbox: the same
//! function in the machine's `python3` with pandas, in one warm process
//! (exec + call, the anchor) and in a new process per run. They run
//! outside the sandbox.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{percentile, summary};

/// The same function in the machine's python3, side by side: in one warm
/// process (what an Anomstack user's Python does each run: exec the source
/// into a fresh namespace and call it), and in a new process per run.
pub(super) fn compare_native(
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
        // The note can hold what the batch's code printed natively.
        Err(note) => outln!("{:<26} skipped: {note}", "python3, warm, exec + call"),
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
        Err(note) => outln!("{:<26} skipped: {note}", "python3, new process"),
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
        return Err(failed_natively(&out));
    }
    let times: Vec<Duration> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(MARK)?.trim().parse::<u64>().ok())
        .map(Duration::from_nanos)
        .collect();
    let in_python: Duration = times.iter().sum();
    Ok((times, in_python.min(total)))
}

/// The note for a python3 run that failed: the last line of its stderr.
fn failed_natively(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!(
        "the function failed natively: {}",
        stderr.lines().last().unwrap_or("")
    )
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
            return Err(failed_natively(&out));
        }
        times.push(t.elapsed());
    }
    Ok((times, start.elapsed()))
}

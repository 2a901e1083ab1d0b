//! Soak: the real `sandstack run` process with 50 batches for 30 seconds,
//! stopped with SIGTERM: half Python in the sandbox on a 1-second schedule,
//! half SQL on a 2-second one (each SQL run starts a helper process with a
//! scratch database of its own: tens of milliseconds of a core in a debug
//! build). Checks that no tick was lost and nothing failed, and prints
//! ticks on time, runs per second and the process's peak RSS.

use std::time::{Duration, Instant};

use sandstack::store::{RunFilter, RunStatus, Store};

use crate::support::{spawn_run, terminate, Folder};

const BATCHES: usize = 50;
const SOAK: Duration = Duration::from_secs(30);

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn fifty_batches_every_second() {
    let f = Folder::with_defaults();
    f.write(
        "soak/walk.py",
        "import random\nimport pandas as pd\n\ndef ingest():\n    return pd.DataFrame({'metric_name': ['walk'], 'metric_value': [random.random()], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})\n",
    );
    for i in 0..BATCHES {
        let (source, cron) = if i % 2 == 0 {
            (
                "ingest_fn: >\n  {% include \"./soak/walk.py\" %}\n",
                "* * * * * *",
            )
        } else {
            ("ingest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, random() AS metric_value\"\n", "*/2 * * * * *")
        };
        f.write(
            &format!("soak/b{i:02}.yaml"),
            &format!("metric_batch: \"soak_{i:02}\"\n{source}ingest_cron_schedule: \"{cron}\"\ningest_default_schedule_status: RUNNING\n"),
        );
    }
    let db_dir = tempfile::tempdir().expect("tmp");
    let db = db_dir.path().join("soak.duckdb");
    let child = spawn_run(&f, &db, &["--grace-secs", "20"]);
    let started = Instant::now();
    std::thread::sleep(SOAK);
    let rss_kib = peak_rss_kib(child.id());
    terminate(&child);
    let stop_asked = Instant::now();
    let out = child.wait_with_output();
    let stop_took = stop_asked.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("shutting down"), "{stderr}");

    let store = Store::open(&db).expect("db");
    let runs = store
        .list_runs(&RunFilter {
            limit: 1_000_000,
            ..Default::default()
        })
        .expect("runs");
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed || r.status == RunStatus::Interrupted)
        .collect();
    assert!(
        failed.is_empty(),
        "failed runs: {:#?}",
        &failed[..failed.len().min(3)]
    );
    // No tick lost: each batch's ticks are consecutive seconds, from the
    // process's first tick to its last. Judged by the ticks themselves, not
    // the test's clock: on a loaded machine the process takes longer to
    // start, and that is not a lost tick.
    let first_tick = runs.iter().map(|r| r.scheduled_us).min().unwrap_or(0);
    let last_tick = runs.iter().map(|r| r.scheduled_us).max().unwrap_or(0);
    assert!(
        last_tick - first_tick >= SOAK.as_micros() as i64 / 3,
        "the process ticked for only {} s of the {SOAK:?}",
        (last_tick - first_tick) / 1_000_000
    );
    let mut gaps = 0;
    for i in 0..BATCHES {
        let mut ticks: Vec<i64> = runs
            .iter()
            .filter(|r| r.batch == format!("soak_{i:02}"))
            .map(|r| r.scheduled_us)
            .collect();
        ticks.sort_unstable();
        let every_us = if i % 2 == 0 { 1_000_000 } else { 2_000_000 };
        let (Some(first), Some(last)) = (ticks.first(), ticks.last()) else {
            panic!("batch {i} never ran");
        };
        assert!(
            first - first_tick < every_us && last_tick - last < every_us,
            "batch {i} ran from {} s to {} s of the process's {} s of ticks",
            (first - first_tick) / 1_000_000,
            (last - first_tick) / 1_000_000,
            (last_tick - first_tick) / 1_000_000
        );
        gaps += ticks.windows(2).filter(|w| w[1] - w[0] != every_us).count();
    }
    assert_eq!(gaps, 0, "missed ticks");
    let done: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .collect();
    let skipped = runs.len() - done.len();
    let mut late_ms: Vec<f64> = done
        .iter()
        .map(|r| (r.started_us - r.scheduled_us) as f64 / 1e3)
        .collect();
    late_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| late_ms[((late_ms.len() - 1) as f64 * p) as usize];
    let on_time = late_ms.iter().filter(|l| **l < 100.0).count();
    let first = runs.iter().map(|r| r.started_us).min().unwrap_or(0);
    let last = runs.iter().map(|r| r.ended_us).max().unwrap_or(0);
    let span_s = (last - first) as f64 / 1e6;
    let mut wall: Vec<f64> = done.iter().map(|r| r.wall_ms).collect();
    wall.sort_by(f64::total_cmp);
    println!(
        "soak: {BATCHES} batches (Python every 1 s, SQL every 2 s) for {:.0} s: {} ticks, {} runs succeeded, {} skipped (previous still going), 0 lost; \
         {:.1} runs/s; started within 100 ms of the tick: {on_time}/{} ({:.1}%); lateness p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
         run wall p50 {:.1} ms p99 {:.1} ms; peak RSS {:.0} MiB; SIGTERM to exit {:.2} s",
        started.elapsed().as_secs_f64(),
        runs.len(),
        done.len(),
        skipped,
        done.len() as f64 / span_s,
        done.len(),
        100.0 * on_time as f64 / done.len() as f64,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        wall[wall.len() / 2],
        wall[(wall.len() - 1) * 99 / 100],
        rss_kib as f64 / 1024.0,
        stop_took.as_secs_f64()
    );
}

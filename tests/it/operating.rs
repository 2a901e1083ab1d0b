//! Operating the daemon: what `sandstack run` tells a monitoring system
//! (`/metrics`, `/healthz`, `/readyz`), checked against the real binary
//! and its run history.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sandstack::store::Store;

use crate::support::{start_sandstack, terminate, Folder};

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("get");
        (r.status().as_u16(), r.text().await.expect("text"))
    })
}

/// The scraped samples of `name`, by their labels (sorted `k=v` pairs).
fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text-format page");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (labels.join(","), v)
        })
        .collect()
}

const SQL_BATCH: &str = "metric_batch: \"ops\"\n\
    ingest_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'm' || i AS metric_name, random() AS metric_value FROM range(3) t(i)\"\n\
    ingest_cron_schedule: \"* * * * * *\"\n";

#[test]
fn metrics_match_the_run_history_and_readiness_says_why() {
    let f = Folder::with_defaults();
    f.write(
        "ops.yaml",
        &format!("{SQL_BATCH}ingest_default_schedule_status: RUNNING\n"),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("ops.duckdb");
    let (mut daemon, url) = start_sandstack(f.path(), &db);

    assert_eq!(get(&format!("{url}/healthz")), (200, "ok".to_string()));
    let (status, ready) = get(&format!("{url}/readyz"));
    assert_eq!(status, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "database": "ok", "sandbox": "ok"})
    );

    let runs = |text: &str| samples(text, "sandstack_runs_total");
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs(&get(&format!("{url}/metrics")).1)
        .values()
        .sum::<f64>()
        < 3.0
    {
        assert!(Instant::now() < deadline, "no runs counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Stop the schedule (hot reload), let the last run finish, then the
    // figures hold still and can be compared with the history.
    f.write(
        "ops.yaml",
        &format!("{SQL_BATCH}ingest_default_schedule_status: STOPPED\n"),
    );
    let mut page = get(&format!("{url}/metrics")).1;
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let again = get(&format!("{url}/metrics")).1;
        if runs(&again) == runs(&page) {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(30),
            "runs kept coming"
        );
        page = again;
    }
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());

    let store = Store::open(&db).expect("db");
    let history: Vec<(String, String, String, i64, i64)> = {
        let mut stmt = crate::support::duck(&store)
            .prepare("SELECT batch, job, status, count(*), sum(rows)::BIGINT FROM sandstack_runs GROUP BY ALL ORDER BY ALL")
            .expect("prepare");
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    };
    let expected: BTreeMap<String, f64> = history
        .iter()
        .map(|(b, j, s, n, _)| (format!("batch={b},job={j},status={s}"), *n as f64))
        .collect();
    assert_eq!(runs(&page), expected, "{page}");
    let rows: i64 = history
        .iter()
        .filter(|h| h.1 == "ingest")
        .map(|h| h.4)
        .sum();
    assert_eq!(
        samples(&page, "sandstack_rows_ingested_total")
            .get("batch=ops")
            .copied(),
        Some(rows as f64)
    );
    let size = samples(&page, "sandstack_database_size_bytes");
    assert!(size.values().all(|b| *b > 10_000.0), "{size:?}");
    assert_eq!(
        samples(&page, "sandstack_sandbox_instances_in_use")
            .values()
            .sum::<f64>(),
        0.0
    );
    for histogram in [
        "sandstack_run_duration_seconds_count",
        "sandstack_scheduler_lag_seconds_count",
    ] {
        assert!(
            samples(&page, histogram).values().sum::<f64>() >= 3.0,
            "{histogram}:\n{page}"
        );
    }
}

#[test]
fn a_runs_printed_output_and_log_records_are_kept_with_it() {
    let (f, _) = crate::support::python_batch(
        "chatty",
        "import logging\n\
         import pandas as pd\n\
         def ingest():\n\
         \x20   print('hello from the batch')\n\
         \x20   logging.getLogger('chatty').warning('careful: \\x1b[31mred')\n\
         \x20   return pd.DataFrame({'metric_timestamp': [pd.Timestamp.now()], 'metric_name': ['m'], 'metric_value': [1.0]})\n",
        "ingest_cron_schedule: \"* * * * * *\"\ningest_default_schedule_status: RUNNING\n",
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("chatty.duckdb");
    let (mut daemon, url) = start_sandstack(f.path(), &db);
    let deadline = Instant::now() + Duration::from_secs(120);
    while samples(&get(&format!("{url}/metrics")).1, "sandstack_runs_total").is_empty() {
        assert!(Instant::now() < deadline, "no run");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, page) = get(&format!("{url}/runs"));
    assert!(
        page.contains("<summary>log</summary>") && page.contains("hello from the batch"),
        "{page}"
    );
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["runs", "--show", "1", "--db"])
        .arg(&db)
        .output()
        .expect("runs --show");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("run 1: batch chatty, job ingest, succeeded"),
        "{text}"
    );
    assert!(
        text.contains("--- log ---\ncareful: \\u{1b}[31mred\nhello from the batch\n"),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["runs", "--show", "999", "--db"])
        .arg(&db)
        .output()
        .expect("runs --show");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 999 in"));
}

//! Operating the daemon: what `sandstack run` tells a monitoring system
//! (`/metrics`, `/healthz`, `/readyz`, `/health`, `/version`), checked against the real binary
//! and its run history.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sandstack::store::Store;

use crate::support::{
    http_get as get, http_post as post, run_sandstack as sandstack, samples, start_sandstack,
    terminate, wait_for_ingests, Folder,
};

const SQL_BATCH: &str = "metric_batch: \"ops\"\n\
    ingest_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'm' || i AS metric_name, random() AS metric_value FROM range(3) t(i)\"\n\
    ingest_cron_schedule: \"* * * * * *\"\n";

/// A folder whose SQL batch `ops` ingests every second, and a database
/// path in a directory of its own.
fn running_sql_batch() -> (Folder, tempfile::TempDir, std::path::PathBuf) {
    let f = Folder::with_defaults();
    f.write(
        "ops.yaml",
        &format!("{SQL_BATCH}ingest_default_schedule_status: RUNNING\n"),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("ops.duckdb");
    (f, tmp, db)
}

#[test]
fn metrics_match_the_run_history_and_readiness_says_why() {
    let (f, _tmp, db) = running_sql_batch();
    let (mut daemon, url) = start_sandstack(f.path(), &db);

    assert_eq!(get(&format!("{url}/healthz")), (200, "ok".to_string()));
    // Anomstack's dashboard paths, which its deploys probe.
    let json = |path: &str| {
        let (status, body) = get(&format!("{url}{path}"));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("json")
    };
    assert_eq!(json("/health")["status"], "ok");
    let version = json("/version");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        version["guest"].as_str().is_some_and(|g| !g.is_empty()),
        "{version}"
    );
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
        text.contains("--- log ---\n  careful: \\u{1b}[31mred\n  hello from the batch\n"),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["runs", "--show", "999", "--db"])
        .arg(&db)
        .output()
        .expect("runs --show");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run 999 in"));
}

/// A server whose `/flaky` answers 503 to its first two requests, then a
/// value; `/gone` always answers 404.
fn flaky_server() -> (
    crate::support::TestServer,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    let app = axum::Router::new()
        .route(
            "/flaky",
            axum::routing::get(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "down".to_string(),
                        )
                    } else {
                        (axum::http::StatusCode::OK, "42".to_string())
                    }
                }
            }),
        )
        .route(
            "/gone",
            axum::routing::get(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }),
        );
    (crate::support::TestServer::start(app), hits)
}

fn fetching_batch(name: &str, url: &str) -> String {
    format!(
        "import pandas as pd\n\
         import requests\n\
         def ingest():\n\
         \x20   r = requests.get('{url}', timeout=5)\n\
         \x20   r.raise_for_status()\n\
         \x20   return pd.DataFrame({{'metric_timestamp': [pd.Timestamp.now()], 'metric_name': ['{name}'], 'metric_value': [float(r.text)]}})\n"
    )
}

#[test]
fn a_flaky_source_is_ingested_on_retry_and_each_attempt_is_in_the_history() {
    let (server, hits) = flaky_server();
    let f = Folder::with_defaults();
    let schedule = "ingest_cron_schedule: \"*/10 * * * * *\"\ningest_default_schedule_status: RUNNING\ningest_retries: 2\nhttp_allow_private: true\nrecord_runs: true\n";
    for (name, path) in [("flaky", "/flaky"), ("gone", "/gone")] {
        f.write(
            &format!("b/{name}.py"),
            &fetching_batch(name, &server.url(path)),
        );
        f.write(
            &format!("b/{name}.yaml"),
            &format!("metric_batch: \"{name}\"\ningest_fn: >\n  {{% include \"./b/{name}.py\" %}}\n{schedule}"),
        );
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("flaky.duckdb");
    let (mut daemon, url) = start_sandstack(f.path(), &db);
    wait_for_ingests(&url, "flaky", 1.0);
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 3);

    let store = Store::open(&db).expect("db");
    let attempts = |batch: &str| -> Vec<(i64, String, i64, String)> {
        let mut stmt = crate::support::duck(&store)
            .prepare("SELECT attempt, status, epoch_us(scheduled_at), coalesce(error, '') FROM sandstack_runs WHERE batch = ? ORDER BY run_id")
            .expect("prepare");
        stmt.query_map([batch], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    };
    let cassettes: Vec<String> = {
        let mut stmt = crate::support::duck(&store)
            .prepare(
                "SELECT cassette FROM sandstack_runs WHERE batch = 'flaky' ORDER BY run_id LIMIT 3",
            )
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let distinct: std::collections::BTreeSet<&String> = cassettes.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "each attempt keeps its own cassette: {cassettes:?}"
    );
    assert!(
        cassettes.iter().all(|c| std::path::Path::new(c).exists()),
        "{cassettes:?}"
    );
    assert!(cassettes[2].ends_with("-attempt3.yaml"), "{cassettes:?}");
    let flaky = attempts("flaky");
    let first_tick: Vec<_> = flaky.iter().filter(|a| a.2 == flaky[0].2).collect();
    let shape: Vec<(i64, &str)> = first_tick.iter().map(|a| (a.0, a.1.as_str())).collect();
    assert_eq!(
        shape,
        vec![(1, "failed"), (2, "failed"), (3, "succeeded")],
        "{flaky:?}"
    );
    assert!(
        first_tick[0].3.contains("HTTPError: 503 Server Error")
            && first_tick[0]
                .3
                .contains("retrying in 1 s (ingest_retries=2, attempt 1)"),
        "{}",
        first_tick[0].3
    );
    assert!(
        first_tick[1].3.contains("retrying in 2 s"),
        "{}",
        first_tick[1].3
    );
    let stored: i64 = crate::support::duck(&store)
        .query_row(
            "SELECT count(*) FROM metrics WHERE metric_batch = 'flaky'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(stored >= 1);
    // A 404 cannot pass: one attempt per tick, never retried.
    let gone = attempts("gone");
    assert!(!gone.is_empty());
    assert!(
        gone.iter()
            .all(|a| a.0 == 1 && a.1 == "failed" && !a.3.contains("retrying")),
        "{gone:?}"
    );
}

#[test]
fn three_failures_in_a_row_send_one_alert_and_the_recovery_one_more() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let hits = Arc::new(AtomicUsize::new(0));
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (count, got) = (hits.clone(), received.clone());
    let app = axum::Router::new()
        .route(
            "/source",
            axum::routing::get(move || {
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0..=2 => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "broken".to_string(),
                        ),
                        _ => (axum::http::StatusCode::OK, "7".to_string()),
                    }
                }
            }),
        )
        .route(
            "/hook",
            axum::routing::post(move |body: String| {
                got.lock()
                    .expect("lock")
                    .push(serde_json::from_str(&body).unwrap_or_default());
                async { "ok" }
            }),
        );
    let server = crate::support::TestServer::start(app);
    let sink = crate::support::SmtpSink::start();
    let f = Folder::with_defaults();
    f.write("b/src.py", &fetching_batch("src", &server.url("/source")));
    f.write(
        "b/src.yaml",
        "metric_batch: \"src\"\ningest_fn: >\n  {% include \"./b/src.py\" %}\n\
         ingest_cron_schedule: \"* * * * * *\"\ningest_default_schedule_status: RUNNING\n\
         http_allow_private: true\nalert_methods: \"webhook\"\nrecord_runs: true\n",
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("src.duckdb");
    let hook = server.url("/hook");
    let port = sink.addr.port().to_string();
    // Anomstack's failure e-mail: its own recipient, the rest from the
    // alert e-mail's variables.
    let (mut daemon, url) = crate::support::start_sandstack_with(
        f.path(),
        &db,
        &[
            ("SANDSTACK_ALERT_WEBHOOK_URL", &hook),
            ("ANOMSTACK_FAILURE_EMAIL_TO", "ops@example.test"),
            ("ANOMSTACK_ALERT_EMAIL_FROM", "sandstack@example.test"),
            ("ANOMSTACK_ALERT_EMAIL_TO", "oncall@example.test"),
            ("ANOMSTACK_ALERT_EMAIL_SMTP_HOST", "127.0.0.1"),
            ("ANOMSTACK_ALERT_EMAIL_SMTP_PORT", &port),
            ("SANDSTACK_ALERT_EMAIL_SECURITY", "plain"),
        ],
    );
    wait_for_ingests(&url, "src", 3.0);
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());
    let got = received.lock().expect("lock").clone();
    let kinds: Vec<&str> = got
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, vec!["failure", "recovery"], "{got:?}");
    let failure = &got[0];
    assert_eq!(
        (
            failure["batch"].as_str(),
            failure["job"].as_str(),
            failure["failures"].as_u64()
        ),
        (Some("src"), Some("ingest"), Some(3))
    );
    assert!(
        failure["error"]
            .as_str()
            .unwrap_or("")
            .contains("500 Server Error"),
        "{failure}"
    );
    let cassette = failure["cassette"].as_str().unwrap_or("");
    assert!(
        cassette.ends_with(".yaml") && std::path::Path::new(cassette).exists(),
        "{failure}"
    );
    assert_eq!(got[1]["failures"].as_u64(), Some(3));
    // One e-mail per failed run, to the failure recipient only.
    let mails = sink.messages.lock().expect("lock").clone();
    assert_eq!(mails.len(), 3, "{mails:?}");
    for m in &mails {
        assert!(m.contains("run failed: src / ingest"), "{m}");
        assert!(
            m.contains("ops@example.test") && !m.contains("oncall@example.test"),
            "{m}"
        );
        assert!(m.contains("500 Server Error"), "{m}");
    }
}

/// Scheduled ingest runs of batch `ctl` so far, through the API.
fn scheduled_ingests(url: &str) -> usize {
    ingest_ticks(url).len()
}

/// The ticks (µs) of ctl's ingest runs in the history.
fn ingest_ticks(url: &str) -> Vec<i64> {
    let (status, body) = get(&format!("{url}/api/runs?batch=ctl&job=ingest&limit=10000"));
    assert_eq!(status, 200, "{body}");
    let runs: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    runs.iter()
        .map(|r| r["scheduled_us"].as_i64().expect("scheduled_us"))
        .collect()
}

/// Now, in µs since the epoch.
fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Fail the test if any ctl ingest ran for a tick after `paused_us`
/// (with a second's margin for a tick being dispatched as the pause
/// landed): runs already going may end late, but no later tick may start.
fn assert_no_tick_after(url: &str, paused_us: i64, when: &str) {
    let late: Vec<i64> = ingest_ticks(url)
        .into_iter()
        .filter(|t| *t > paused_us + 1_000_000)
        .collect();
    assert!(
        late.is_empty(),
        "{when}: a paused batch ran ticks {late:?} (paused at {paused_us})"
    );
}

#[test]
fn while_the_daemon_holds_the_database_commands_go_through_it_and_a_pause_survives_a_restart() {
    let f = Folder::with_defaults();
    f.write(
        "ctl.yaml",
        &format!(
            "{}ingest_default_schedule_status: RUNNING\ntrain_min_n: 2\n",
            SQL_BATCH.replace("\"ops\"", "\"ctl\"")
        ),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("ctl.duckdb");
    let token = [("SANDSTACK_DASHBOARD_TOKEN", "t0k3n")];
    let (mut daemon, url) = crate::support::start_sandstack_with(f.path(), &db, &token);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduled_ingests(&url) < 2 {
        assert!(Instant::now() < deadline, "no runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    let announced =
        std::fs::read_to_string(tmp.path().join("ctl.duckdb.daemon.json")).expect("announced");
    assert!(
        announced.contains(&format!("\"pid\":{}", daemon.id())) && announced.contains(&url),
        "{announced}"
    );

    // Reads need no token; the database is the daemon's.
    let out = sandstack(&["runs", "--job", "ingest"], &f, &db, &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is held by the running sandstack") && stdout.contains("ctl"),
        "{stdout}\n{stderr}"
    );
    let out = sandstack(&["summary", "ctl"], &f, &db, &[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ctl"),
        "{out:?}"
    );

    // Running a job needs the token.
    let out = sandstack(&["ingest", "ctl"], &f, &db, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the dashboard token"),
        "{out:?}"
    );
    for job in ["ingest", "train"] {
        // ctl's own schedule runs it every second: a request that meets
        // its tick is told to ask again, as a user would.
        let mut out = None;
        crate::support::eventually(Duration::from_secs(60), || {
            let tried = sandstack(&[job, "ctl"], &f, &db, &token);
            let stderr = String::from_utf8_lossy(&tried.stderr).into_owned();
            if stderr.contains("is running now; ask again when it ends") {
                return Err(format!("{job}: {stderr}"));
            }
            out = Some(tried);
            Ok(())
        });
        let out = out.expect("an answer");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{job}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("batch ctl: {job} ran in the sandstack daemon"))
                && stdout.contains(": succeeded"),
            "{stdout}"
        );
    }
    let out = sandstack(&["backfill", "ctl", "--periods", "2"], &f, &db, &token);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("backfill cannot go through the running sandstack daemon"),
        "{out:?}"
    );

    // Pause: no more scheduled runs, also after a restart. Not without
    // the token, not from another site's page, not for a batch that
    // does not exist.
    assert_eq!(post(&format!("{url}/api/batches/ctl/pause"), None).0, 401);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let cross_site = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{url}/api/batches/ctl/pause"))
            .bearer_auth("t0k3n")
            .header("Origin", "http://evil.example")
            .header("Sec-Fetch-Site", "cross-site")
            .send()
            .await
            .expect("post")
            .status()
            .as_u16()
    });
    assert_eq!(cross_site, 403);
    let (status, body) = post(&format!("{url}/api/batches/..%2Fctl/pause"), Some("t0k3n"));
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(
        &format!("{url}/api/batches/ctl/jobs/rm%20-rf/run"),
        Some("t0k3n"),
    );
    assert!(
        status == 404
            && body["error"]
                .as_str()
                .unwrap_or("")
                .starts_with("no job named"),
        "{body}"
    );
    let (status, body) = post(&format!("{url}/api/batches/ctl/pause"), Some("t0k3n"));
    let paused_us = now_us();
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"batch": "ctl", "paused": true}))
    );
    let (_, page) = get(&format!("{url}/batch/ctl"));
    assert!(
        page.contains("run ingest now</button>") && page.contains("resume schedules</button>"),
        "the batch page has the buttons: {page}"
    );
    // A window of watching: the ticks of three seconds go by unrun.
    std::thread::sleep(Duration::from_secs(3));
    assert_no_tick_after(&url, paused_us, "paused");
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());
    assert!(
        !crate::support::repo().join("x").exists()
            && !db.with_extension("duckdb.daemon.json").exists(),
        "the daemon file goes with the daemon"
    );

    let (mut daemon, url) = crate::support::start_sandstack_with(f.path(), &db, &token);
    std::thread::sleep(Duration::from_secs(3));
    assert_no_tick_after(&url, paused_us, "still paused after a restart");
    let (_, batches) = get(&format!("{url}/api/batches"));
    assert!(batches.contains("\"paused\":true"), "{batches}");
    let (status, _) = post(&format!("{url}/api/batches/ctl/resume"), Some("t0k3n"));
    let resumed_us = now_us();
    assert_eq!(status, 200);
    // A tick after the resume ran (a run from before the pause, recorded
    // late, would move a count but not this).
    crate::support::eventually(Duration::from_secs(60), || {
        ingest_ticks(&url)
            .iter()
            .any(|t| *t > resumed_us)
            .then_some(())
            .ok_or("resumed, but nothing ran".into())
    });
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());

    // Without the daemon, the same commands open the database themselves.
    let out = sandstack(&["runs", "--limit", "1"], &f, &db, &[]);
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("held by"),
        "{out:?}"
    );
}

#[test]
fn a_daemon_without_its_dashboard_is_named_when_it_holds_the_database() {
    let (f, _tmp, db) = running_sql_batch();
    let mut daemon = crate::support::spawn_run(&f, &db, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    // The daemon first: a command that opened the file before it would
    // hold the lock itself.
    while !db.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let out = loop {
        let out = sandstack(&["runs"], &f, &db, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if stderr.contains("lock") || Instant::now() > deadline {
            break stderr;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());
    assert!(
        out.contains("a `sandstack run` started with --no-dashboard cannot be reached"),
        "{out}"
    );
}

/// Run-now goes through the same policy-held specs as the schedule, and the
/// API limits how often it may be asked: per batch, for llmalert per
/// schedule period, and reloads.
#[test]
fn run_now_is_held_to_the_policy_and_limited_per_batch() {
    let f = Folder::with_defaults();
    f.write(
        "many/many.yaml",
        "metric_batch: many\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' || i AS metric_name, i AS metric_value FROM range(100) t(i)\"\n\
         disable_llmalert: false\nllmalert_cron_schedule: \"0 0 1 1 *\"\n",
    );
    let pdir = tempfile::tempdir().expect("tmp");
    let policy = pdir.path().join("p.yaml");
    std::fs::write(&policy, "max:\n  ingest_max_rows: 10\n").expect("write");
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("m.duckdb");
    let (mut daemon, url) = crate::support::start_sandstack_args(
        f.path(),
        &db,
        &["--policy", policy.to_str().expect("utf-8")],
        &[],
    );
    let run = |job: &str| post(&format!("{url}/api/batches/many/jobs/{job}/run"), None);
    let (status, body) = run("ingest");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("more than 10 rows (ingest_max_rows)"),
        "the policy's ceiling: {body}"
    );
    // llmalert: one run per period of its (yearly) schedule.
    let (status, body) = run("llmalert");
    assert_eq!(status, 200, "{body}");
    let (status, body) = run("llmalert");
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("llmalert already ran in this period of its schedule"),
        "{body}"
    );
    // Five at once, then one a minute.
    let codes: Vec<u16> = (0..4).map(|_| run("delete").0).collect();
    assert_eq!(codes, vec![200, 200, 200, 429], "two were spent above");
    let (status, body) = run("delete");
    assert_eq!(status, 429);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("batch many: at most 5 runs may be asked for at once"),
        "{body}"
    );
    let reload = || post(&format!("{url}/api/reload"), None).0;
    assert_eq!(reload(), 200);
    assert_eq!(reload(), 429);
    terminate(&daemon);
    assert!(daemon.wait().expect("wait").success());
}

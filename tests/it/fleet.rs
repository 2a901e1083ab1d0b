//! Several `sandstack run` workers sharing one PostgreSQL store, which the
//! test starts (a throwaway cluster on a free loopback port): every tick of
//! every batch runs exactly once across the fleet, a worker killed mid-run
//! is taken over within its lease, and every worker's dashboard sees the
//! whole fleet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use sandstack::store::pg::cluster::TempCluster;

use crate::support::{
    eventually, http_get as get, http_post as post, key, run_sandstack, start_sandstack_args,
    terminate, Daemon, Folder,
};

const BATCHES: usize = 50;
const LEASE_SECS: u64 = 3;

/// 50 SQL batches ingesting one row every second, and `slow`, whose run
/// takes 3 s every 5 s (so a worker can be killed in the middle of one).
fn fleet_folder() -> Folder {
    let f = Folder::with_defaults();
    for i in 0..BATCHES {
        f.write(
            &format!("b{i:02}.yaml"),
            &format!(
                "metric_batch: b{i:02}\n\
                 ingest_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'm' AS metric_name, random() AS metric_value\"\n\
                 ingest_cron_schedule: \"* * * * * *\"\n\
                 ingest_default_schedule_status: RUNNING\n"
            ),
        );
    }
    f.write(
        "slow.yaml",
        "metric_batch: slow\n\
         ingest_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'm' AS metric_name, 1.0::float8 AS metric_value FROM pg_sleep(3)\"\n\
         ingest_cron_schedule: \"*/5 * * * * *\"\n\
         ingest_default_schedule_status: RUNNING\n",
    );
    f
}

fn worker(folder: &Path, url: &str, name: &str) -> (Daemon, String) {
    start_sandstack_args(
        folder,
        Path::new(url),
        &[
            "--worker",
            name,
            "--lease-secs",
            &LEASE_SECS.to_string(),
            "--max-concurrent",
            "8",
        ],
        &[],
    )
}

fn sigkill(child: &mut Daemon) {
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

/// Wait for a worker asked to stop; it must stop cleanly.
fn wait_exit(child: &mut Daemon) {
    let status = child
        .wait_within(Duration::from_secs(30))
        .expect("wait for a worker");
    assert!(
        status.success(),
        "a worker stopped with {status}: {}",
        child.stderr()
    );
}

/// (batch, µs tick) → [(status, worker)].
type History = BTreeMap<(String, i64), Vec<(String, String)>>;

fn history(pg: &mut postgres::Client) -> History {
    let mut out = History::new();
    for r in pg
        .query(
            "SELECT batch, (extract(epoch FROM scheduled_at) * 1000000)::bigint, status, coalesce(worker, '') \
             FROM sandstack_runs WHERE job = 'ingest'",
            &[],
        )
        .expect("runs")
    {
        out.entry((r.get(0), r.get(1)))
            .or_default()
            .push((r.get(2), r.get(3)));
    }
    out
}

#[test]
fn three_workers_run_every_tick_once_and_take_over_a_killed_one() {
    let cluster = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    let folder = fleet_folder();
    let mut pg = postgres::Client::connect(&cluster.url, postgres::NoTls).expect("connect");

    let mut workers: BTreeMap<String, (Daemon, String)> = ["w1", "w2", "w3"]
        .into_iter()
        .map(|w| (w.to_string(), worker(folder.path(), &cluster.url, w)))
        .collect();
    let all_up = chrono::Utc::now().timestamp_micros();

    // A reload on one worker neither doubles nor drops a schedule.
    std::thread::sleep(Duration::from_secs(10));
    let (status, body) = post(&format!("{}/api/reload", workers["w1"].1), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["batches"], BATCHES + 1, "{body}");
    // Half-way through a minute, kill the worker running a `slow` tick.
    std::thread::sleep(Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(15);
    let (victim, killed_at) = loop {
        let running = pg
            .query_opt(
                "SELECT worker FROM sandstack_ticks WHERE batch = 'slow' AND state = 'running' LIMIT 1",
                &[],
            )
            .expect("ticks");
        if let Some(row) = running {
            let name: String = row.get(0);
            let (child, _) = workers.get_mut(&name).expect("one of ours");
            sigkill(child);
            break (name, chrono::Utc::now().timestamp_micros());
        }
        assert!(Instant::now() < deadline, "no slow run seen in 15 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut dead, _) = workers.remove(&victim).expect("victim");
    let _ = dead.wait();

    // The others carry on for the rest of the minute.
    std::thread::sleep(Duration::from_secs(30));
    let (any_url, other) = {
        let (name, (_, url)) = workers.iter().next().expect("a survivor");
        (url.clone(), name.clone())
    };
    // Any worker's API shows runs from the whole fleet.
    let (status, body) = get(&format!("{any_url}/api/runs?limit=500"));
    assert_eq!(status, 200, "{body}");
    let runs: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let seen: BTreeSet<&str> = runs.iter().filter_map(|r| r["worker"].as_str()).collect();
    assert!(
        seen.len() >= 2,
        "runs of one worker only through {other}: {seen:?}"
    );
    let (status, body) = get(&format!("{any_url}/api/workers"));
    assert_eq!(status, 200, "{body}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let names: BTreeSet<&str> = listed.iter().filter_map(|w| w["worker"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["w1", "w2", "w3"]), "{body}");
    let (_, page) = get(&format!("{any_url}/runs"));
    assert!(page.contains("<h2>Workers</h2>") && page.contains(&format!("<td>{victim}</td>")));
    let stopped_at = chrono::Utc::now().timestamp_micros();
    for (child, _) in workers.values() {
        terminate(child);
    }
    for (child, _) in workers.values_mut() {
        wait_exit(child);
    }

    let h = history(&mut pg);
    // No (batch, tick) twice.
    let twice: Vec<_> = h.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "ticks run more than once: {twice:?}");
    // No tick missing: every second from when all were up to the stop.
    let first = (all_up / 1_000_000 + 2) * 1_000_000;
    let last = (stopped_at / 1_000_000 - 2) * 1_000_000;
    let mut missing = Vec::new();
    for i in 0..BATCHES {
        let batch = format!("b{i:02}");
        let mut t = first;
        while t <= last {
            if !h.contains_key(&(batch.clone(), t)) {
                missing.push((batch.clone(), t));
            }
            t += 1_000_000;
        }
    }
    assert!(
        missing.is_empty(),
        "{} ticks never ran: {:?} (all up {all_up}, killed {killed_at}, stopped {stopped_at})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    // The killed worker's slow run was recorded, as interrupted, by another.
    let interrupted: Vec<_> = h
        .iter()
        .filter(|((b, _), v)| b == "slow" && v[0].0 == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted[0].1[0].1, victim);
    // After the lease, every batch's ticks ran on the survivors.
    let taken_over_by = killed_at + (LEASE_SECS as i64 + 2) * 1_000_000;
    for ((b, t), v) in &h {
        if *t > taken_over_by && *t <= last {
            assert_ne!(v[0].1, victim, "{b} at {t} ran on the killed worker");
            // Skipped only if a worker fell a tick behind (a loaded machine).
            assert!(
                matches!(v[0].0.as_str(), "succeeded" | "skipped") || b == "slow",
                "{b} at {t}: {:?}",
                v[0]
            );
        }
    }
    // Rows: one per succeeded run, none twice (a run killed after its
    // commit and before its record may leave its row too).
    for i in 0..BATCHES {
        let batch = format!("b{i:02}");
        let (ok, cut) =
            h.iter()
                .filter(|((b, _), _)| *b == batch)
                .fold((0i64, 0i64), |acc, (_, v)| match v[0].0.as_str() {
                    "succeeded" => (acc.0 + 1, acc.1),
                    "interrupted" => (acc.0, acc.1 + 1),
                    _ => acc,
                });
        let rows: i64 = pg
            .query_one(
                "SELECT count(*) FROM metrics WHERE metric_batch = $1",
                &[&batch],
            )
            .expect("rows")
            .get(0);
        assert!(
            rows >= ok && rows <= ok + cut,
            "{batch}: {rows} rows for {ok} runs ({cut} interrupted)"
        );
    }
    let workers_seen: i64 = pg
        .query_one("SELECT count(DISTINCT worker) FROM sandstack_runs", &[])
        .expect("workers")
        .get(0);
    assert_eq!(workers_seen, 3, "all three workers ran ticks");
    // What the fleet did, for whoever reads the test's output.
    for r in pg
        .query(
            "SELECT coalesce(worker, ''), status, count(*) FROM sandstack_runs GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .expect("summary")
    {
        eprintln!(
            "fleet: {} {} {} (killed: {victim})",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, i64>(2)
        );
    }
}

/// `sandstack <args>` on `folder` and `db`: (success, stdout, stderr).
fn cli(folder: &Folder, db: &str, args: &[&str]) -> (bool, String, String) {
    let out = run_sandstack(args, folder, Path::new(db), &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every row of `batch`, through the storage seam (the same call whichever
/// the engine): its type, metric, age (µs before the newest observation:
/// the two stores ingested at different moments) and value.
fn rows_by_age(db: &str, batch: &str) -> Vec<(String, String, i64, f64)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Float64Type, Int64Type};
    let store = sandstack::store::Store::open(Path::new(db)).expect("open");
    let out = store
        .query_batch_sql(
            &key("metrics"),
            batch,
            "SELECT metric_type, metric_name, \
               (SELECT epoch_us(max(metric_timestamp)) FROM metrics WHERE metric_type = 'metric') \
                 - epoch_us(metric_timestamp) AS age_us, metric_value::DOUBLE AS v \
             FROM metrics ORDER BY metric_type, metric_name, age_us, v",
            sandstack::store::ResultCaps::TEMPLATE,
        )
        .expect("rows");
    let mut rows = Vec::new();
    for b in out {
        let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8).expect("cast");
        let (kinds, names) = (text(0), text(1));
        let age = arrow::compute::cast(b.column(2), &DataType::Int64).expect("cast");
        for i in 0..b.num_rows() {
            rows.push((
                kinds.as_string::<i32>().value(i).to_string(),
                names.as_string::<i32>().value(i).to_string(),
                age.as_primitive::<Int64Type>().value(i),
                b.column(3).as_primitive::<Float64Type>().value(i),
            ));
        }
    }
    rows
}

#[test]
fn the_detection_jobs_give_the_same_results_on_postgresql_as_on_duckdb() {
    let cluster = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    let f = Folder::with_defaults();
    // 300 ten-minute points with a level shift in the newest ones, in SQL
    // both engines take.
    f.write(
        "wave.yaml",
        "metric_batch: wave\n\
         ingest_sql: >\n  \
           SELECT now()::TIMESTAMP - i * INTERVAL '10 minutes' AS metric_timestamp, 'w' AS metric_name,\n  \
           CASE WHEN i < 3 THEN 50 ELSE sin(i / 5.0) END AS metric_value FROM generate_series(0, 299) AS t(i)\n\
         alert_threshold: 0.5\n\
         alert_recent_n: 10\n",
    );
    // A batch whose own template is DuckDB's SQL.
    f.write(
        "ducky.yaml",
        "metric_batch: ducky\n\
         ingest_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'x' AS metric_name, 1.0::float8 AS metric_value\"\n\
         train_sql: \"SELECT make_timestamp(epoch_us(metric_timestamp)) AS metric_timestamp, metric_name, metric_value FROM {{ table_key }}\"\n",
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let duck = tmp.path().join("m.duckdb");
    let duck = duck.to_str().expect("utf-8");
    for db in [duck, cluster.url.as_str()] {
        for job in [
            "ingest", "train", "score", "alert", "change", "delete", "summary",
        ] {
            let (ok, out, err) = cli(&f, db, &[job, "wave"]);
            assert!(ok, "{job} on {db}: {out}\n{err}");
            assert!(!err.contains(":sandstack@"), "the password is shown: {err}");
        }
    }
    let on_duck = rows_by_age(duck, "wave");
    let on_pg = rows_by_age(&cluster.url, "wave");
    // Observations, scores, alerts and changes: the same rows at the same
    // ages with the same values (within the last bits of sin() on either
    // engine).
    assert_eq!(on_pg.len(), on_duck.len(), "{on_pg:?}\n{on_duck:?}");
    for (pg, duck) in on_pg.iter().zip(&on_duck) {
        assert!(
            (&pg.0, &pg.1, pg.2) == (&duck.0, &duck.1, duck.2)
                && (pg.3 - duck.3).abs() <= 1e-9 * duck.3.abs().max(1.0),
            "the same templates judge the same on either store: PostgreSQL {pg:?}, DuckDB {duck:?}"
        );
    }
    let kinds: BTreeSet<&str> = on_pg.iter().map(|(k, ..)| k.as_str()).collect();
    assert!(
        ["metric", "score", "alert", "change"]
            .iter()
            .all(|k| kinds.contains(k)),
        "{on_pg:?}"
    );

    // A batch's own template is DuckDB's SQL on either store: it runs over
    // the batch's rows, never on the server.
    let url = cluster.url.as_str();
    let (ok, _, err) = cli(&f, url, &["ingest", "ducky"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&f, url, &["train", "ducky"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("1 observations, train_min_n is 14"),
        "its one row was read: {out}"
    );
}

#[test]
fn a_pause_through_one_workers_api_holds_for_the_fleet() {
    let cluster = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    let f = Folder::with_defaults();
    f.write(
        "ctl.yaml",
        "metric_batch: ctl\n\
         ingest_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'm' AS metric_name, 1.0::float8 AS metric_value\"\n\
         ingest_cron_schedule: \"* * * * * *\"\n\
         ingest_default_schedule_status: RUNNING\n",
    );
    let (mut a, url_a) = worker(f.path(), &cluster.url, "a");
    let (mut b, _) = worker(f.path(), &cluster.url, "b");
    let mut pg = postgres::Client::connect(&cluster.url, postgres::NoTls).expect("connect");
    // ctl's runs of ticks after `t`: all of them, and those that succeeded.
    let ticks_after = |pg: &mut postgres::Client, t: std::time::SystemTime| -> (i64, i64) {
        let r = pg
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') \
                 FROM sandstack_runs WHERE batch = 'ctl' AND scheduled_at > $1",
                &[&t],
            )
            .expect("ctl's runs");
        (r.get(0), r.get(1))
    };
    eventually(Duration::from_secs(60), || {
        let (_, ok) = ticks_after(&mut pg, std::time::UNIX_EPOCH);
        (ok > 0).then_some(()).ok_or("the batch runs".into())
    });

    let (status, body) = post(&format!("{url_a}/api/batches/ctl/pause"), None);
    assert_eq!(status, 200, "{body}");
    let paused = std::time::SystemTime::now();
    // Worker b hears of it at its next heartbeat (every third of the
    // lease): after a whole lease, no worker starts a tick of it. Three
    // more seconds of ticks go by to show it.
    let heard = paused + Duration::from_secs(LEASE_SECS);
    std::thread::sleep(Duration::from_secs(LEASE_SECS + 3));
    let (late, _) = ticks_after(&mut pg, heard);
    assert_eq!(late, 0, "no worker runs a paused batch");

    let (status, body) = post(&format!("{url_a}/api/batches/ctl/resume"), None);
    assert_eq!(status, 200, "{body}");
    // A tick after the resume runs (a count could move with a run from
    // before the pause, recorded late).
    let resumed = std::time::SystemTime::now();
    eventually(Duration::from_secs(60), || {
        let (_, ok) = ticks_after(&mut pg, resumed);
        (ok > 0)
            .then_some(())
            .ok_or("runs again after resume".into())
    });
    for child in [&a, &b] {
        terminate(child);
    }
    wait_exit(&mut a);
    wait_exit(&mut b);
}

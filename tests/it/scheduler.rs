//! The scheduler driven by a manual clock: ticks fire at their instants,
//! overlapping runs are skipped, a failing batch does not stop the others,
//! hot reload adds, changes and removes jobs and keeps a broken batch's last
//! good version, catch_up replays missed ticks, and shutdown waits for
//! running jobs. Plus one run with the real runner and run history.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use sandstack::config::{Job, MetricsFolder};
use sandstack::scheduler::clock::{Clock, ManualClock};
use sandstack::scheduler::plan::Plan;
use sandstack::scheduler::runner::{
    JobRunner, RunLog, RunResult, RunTicket, StoreRunLog, StoreRunner,
};
use sandstack::scheduler::{Event, Options, Scheduler, Shutdown};
use sandstack::store::{Retention, RunFilter, RunRecord, RunStatus, Store};
use tokio::sync::{mpsc, watch};

use crate::support::{key, Folder, TestSandbox};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("time")
        + TimeDelta::milliseconds(500)
}

/// A batch with SQL ingest and the given extra YAML.
fn sql_batch(f: &Folder, name: &str, extra: &str) {
    f.write(
        &format!("b/{name}.yaml"),
        &format!(
            "metric_batch: \"{name}\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1.0 AS metric_value\"\n{extra}\n"
        ),
    );
}

fn every(job: &str, cron: &str) -> String {
    format!("{job}_cron_schedule: \"{cron}\"\n{job}_default_schedule_status: RUNNING\n")
}

/// A run the fake runner saw: batch, job, tick, replayed.
type Ran = (String, Job, DateTime<Utc>, bool);

/// Records tickets; fails batches named `bad*`; blocks batches named
/// `slow*` until released.
#[derive(Default)]
struct FakeRunner {
    ran: Mutex<Vec<Ran>>,
    gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl JobRunner for FakeRunner {
    fn run(&self, t: &RunTicket) -> RunResult {
        self.ran.lock().expect("lock").push((
            t.spec.metric_batch.clone(),
            t.job,
            t.scheduled,
            t.catch_up,
        ));
        if t.spec.metric_batch.starts_with("slow") {
            if let Some(rx) = self.gate.lock().expect("lock").as_ref() {
                let _ = rx.recv_timeout(Duration::from_secs(20));
            }
        }
        if t.spec.metric_batch.starts_with("bad") {
            return RunResult::failed("ingest_sql failed: boom");
        }
        RunResult::ok(1)
    }
}

#[derive(Default)]
struct MemLog(Mutex<Vec<RunRecord>>);

impl RunLog for MemLog {
    fn record(&self, r: &RunRecord) -> i64 {
        let mut v = self.0.lock().expect("lock");
        v.push(r.clone());
        v.len() as i64
    }
    fn prune(&self, _now: DateTime<Utc>) {}
}

struct Harness {
    clock: Arc<ManualClock>,
    events: mpsc::UnboundedReceiver<Event>,
    seen: Vec<Event>,
    reload: mpsc::Sender<MetricsFolder>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Shutdown>,
}

impl Harness {
    fn start(
        plan: Plan,
        runner: Arc<dyn JobRunner>,
        log: Arc<dyn RunLog>,
        grace: Duration,
    ) -> Harness {
        let clock = Arc::new(ManualClock::new(t0()));
        let (tx, events) = mpsc::unbounded_channel();
        let (reload, reload_rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let sched = Scheduler {
            clock: clock.clone(),
            runner,
            log,
            options: Options {
                max_concurrent: 4,
                grace,
                prune_every: Duration::from_secs(3600),
            },
            events: Some(tx),
            controls: Default::default(),
            fleet: None,
        };
        let task = tokio::spawn(sched.run(plan, reload_rx, stop_rx));
        Harness {
            clock,
            events,
            seen: Vec::new(),
            reload,
            stop,
            task,
        }
    }

    /// Wait (real time) for an event matching `f`, keeping every event.
    async fn wait_for(&mut self, what: &str, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    self.seen.push(e.clone());
                    if f(&e) {
                        return e;
                    }
                }
                _ => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }

    /// Move the clock to `t0 + secs` one second at a time; after each step
    /// wait until the scheduler has dispatched everything due (it is asleep
    /// until a later instant) and every run started (except blocked `slow*`
    /// ones) has finished.
    async fn advance_to(&mut self, secs: i64) {
        let target = t0() + TimeDelta::seconds(secs);
        while self.clock.now() < target {
            let next = (self.clock.now() + TimeDelta::seconds(1)).min(target);
            self.clock.set(next);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                while let Ok(e) = self.events.try_recv() {
                    self.seen.push(e);
                }
                let asleep = self.clock.sleeping_until().is_some_and(|t| t > next)
                    || self
                        .seen
                        .iter()
                        .any(|e| matches!(e, Event::Idle { now } if *now >= next));
                if asleep && self.unfinished() == 0 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "scheduler stuck; saw {:#?}",
                    self.seen
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// Runs started and not finished, except those of `slow*` batches.
    fn unfinished(&self) -> usize {
        let started = self
            .seen
            .iter()
            .filter(|e| matches!(e, Event::Started { key, .. } if !key.0.starts_with("slow")))
            .count();
        let finished = self
            .seen
            .iter()
            .filter(|e| matches!(e, Event::Finished(r) if !r.batch.starts_with("slow")))
            .count();
        started - finished
    }

    fn started(&self) -> Vec<(String, Job, i64)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Started { key, scheduled } => {
                    Some((key.0.clone(), key.1, (*scheduled - t0()).num_milliseconds()))
                }
                _ => None,
            })
            .collect()
    }

    fn skipped(&self) -> usize {
        self.seen
            .iter()
            .filter(|e| matches!(e, Event::Skipped { .. }))
            .count()
    }
}

fn no_history(_: &str, _: Job) -> Option<DateTime<Utc>> {
    None
}

fn offsets(started: &[(String, Job, i64)], batch: &str, job: Job) -> Vec<i64> {
    started
        .iter()
        .filter(|(b, j, _)| b == batch && *j == job)
        .map(|(_, _, ms)| ms)
        .copied()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_fire_at_their_instants_and_stopped_schedules_do_not() {
    let f = Folder::with_defaults();
    sql_batch(&f, "a", &every("ingest", "*/10 * * * * *"));
    sql_batch(
        &f,
        "b",
        &format!(
            "{}{}",
            every("train", "*/15 * * * * *"),
            "score_cron_schedule: \"* * * * * *\"\n"
        ),
    );
    sql_batch(
        &f,
        "c",
        &format!("{}disable_batch: true\n", every("ingest", "* * * * * *")),
    );
    let folder = f.load(&[]);
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let plan = Plan::new(&folder, t0(), &no_history);
    let runner = Arc::new(FakeRunner::default());
    let mut h = Harness::start(
        plan,
        runner.clone(),
        Arc::new(MemLog::default()),
        Duration::from_secs(5),
    );
    h.advance_to(60).await;
    let started = h.started();
    // Ticks are whole seconds; t0 is half a second past one.
    assert_eq!(
        offsets(&started, "a", Job::Ingest),
        vec![9_500, 19_500, 29_500, 39_500, 49_500, 59_500]
    );
    assert_eq!(
        offsets(&started, "b", Job::Train),
        vec![14_500, 29_500, 44_500, 59_500]
    );
    assert!(
        offsets(&started, "b", Job::Score).is_empty(),
        "score is STOPPED by default"
    );
    assert!(
        offsets(&started, "c", Job::Ingest).is_empty(),
        "c is disabled"
    );
    assert_eq!(h.skipped(), 0);
    let _ = h.stop.send(true);
    let out = h.task.await.expect("join");
    assert!(out.interrupted.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_tick_is_skipped_and_a_failing_batch_does_not_stop_others() {
    let f = Folder::with_defaults();
    sql_batch(&f, "slow", &every("ingest", "* * * * * *"));
    sql_batch(&f, "bad", &every("ingest", "* * * * * *"));
    sql_batch(&f, "good", &every("ingest", "* * * * * *"));
    let plan = Plan::new(&f.load(&[]), t0(), &no_history);
    let (release, gate) = std::sync::mpsc::channel();
    let runner = Arc::new(FakeRunner {
        gate: Mutex::new(Some(gate)),
        ..Default::default()
    });
    let log = Arc::new(MemLog::default());
    let mut h = Harness::start(plan, runner.clone(), log.clone(), Duration::from_secs(5));
    h.advance_to(3).await;
    let started = h.started();
    assert_eq!(
        offsets(&started, "slow", Job::Ingest),
        vec![500],
        "one run of slow while it blocks"
    );
    assert_eq!(
        offsets(&started, "good", Job::Ingest),
        vec![500, 1_500, 2_500]
    );
    assert_eq!(
        offsets(&started, "bad", Job::Ingest),
        vec![500, 1_500, 2_500]
    );
    assert_eq!(h.skipped(), 2, "slow's ticks at 1.5 s and 2.5 s");
    release.send(()).expect("release");
    h.wait_for(
        "slow to finish",
        |e| matches!(e, Event::Finished(r) if r.batch == "slow"),
    )
    .await;
    h.advance_to(4).await;
    assert_eq!(offsets(&h.started(), "slow", Job::Ingest), vec![500, 3_500]);
    let _ = h.stop.send(true);
    h.task.await.expect("join");
    let log = log.0.lock().expect("lock");
    let failed: Vec<&RunRecord> = log.iter().filter(|r| r.batch == "bad").collect();
    assert!(failed.len() >= 3);
    assert!(failed
        .iter()
        .all(|r| r.status == RunStatus::Failed
            && r.error.as_deref() == Some("ingest_sql failed: boom")));
    let skipped: Vec<&RunRecord> = log
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped.iter().all(|r| r.batch == "slow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_changes_and_removes_jobs_and_keeps_a_broken_batch() {
    let f = Folder::with_defaults();
    sql_batch(&f, "a", &every("ingest", "*/2 * * * * *"));
    sql_batch(&f, "b", &every("ingest", "*/2 * * * * *"));
    let plan = Plan::new(&f.load(&[]), t0(), &no_history);
    let runner = Arc::new(FakeRunner::default());
    let mut h = Harness::start(
        plan,
        runner.clone(),
        Arc::new(MemLog::default()),
        Duration::from_secs(5),
    );
    h.advance_to(2).await;

    // Add c, change a to every 3 s, break b, at t0+2.
    sql_batch(&f, "c", &every("ingest", "* * * * * *"));
    sql_batch(&f, "a", &every("ingest", "*/3 * * * * *"));
    f.write("b/b.yaml", "metric_batch: \"b\"\ningest_sql: [unclosed\n");
    h.reload.send(f.load(&[])).await.expect("send");
    let Event::Reloaded(report) = h
        .wait_for("the reload", |e| matches!(e, Event::Reloaded(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(report.added, vec!["c"]);
    assert_eq!(report.changed, vec!["a"]);
    assert_eq!(report.kept, vec!["b"]);
    assert!(report.removed.is_empty());
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("b.yaml") && e.contains("invalid YAML")),
        "{:?}",
        report.errors
    );
    h.wait_for("the scheduler to sleep again", |e| {
        matches!(e, Event::Idle { .. })
    })
    .await;
    let before = h.seen.len();
    h.advance_to(8).await;
    let after: Vec<(String, Job, i64)> = h.seen[before..]
        .iter()
        .filter_map(|e| match e {
            Event::Started { key, scheduled } => {
                Some((key.0.clone(), key.1, (*scheduled - t0()).num_milliseconds()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        offsets(&after, "a", Job::Ingest),
        vec![2_500, 5_500],
        "every 3 s now"
    );
    assert_eq!(
        offsets(&after, "b", Job::Ingest),
        vec![3_500, 5_500, 7_500],
        "last good b keeps its timing"
    );
    assert_eq!(
        offsets(&after, "c", Job::Ingest),
        vec![2_500, 3_500, 4_500, 5_500, 6_500, 7_500]
    );

    // Remove c's file and fix b: c goes, b is reloaded.
    std::fs::remove_file(f.path().join("b/c.yaml")).expect("rm");
    sql_batch(&f, "b", &every("ingest", "*/2 * * * * *"));
    h.reload.send(f.load(&[])).await.expect("send");
    let Event::Reloaded(report) = h
        .wait_for("the second reload", |e| matches!(e, Event::Reloaded(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(report.removed, vec!["c"]);
    assert!(
        report.kept.is_empty() && report.errors.is_empty(),
        "{report:?}"
    );
    h.wait_for("the scheduler to sleep again", |e| {
        matches!(e, Event::Idle { .. })
    })
    .await;
    let before = h.seen.len();
    h.advance_to(12).await;
    let later: Vec<String> = h.seen[before..]
        .iter()
        .filter_map(|e| match e {
            Event::Started { key, .. } => Some(key.0.clone()),
            _ => None,
        })
        .collect();
    assert!(!later.contains(&"c".to_string()), "{later:?}");
    assert!(later.contains(&"b".to_string()));
    let _ = h.stop.send(true);
    h.task.await.expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_watcher_picks_up_edits_within_seconds() {
    let f = Folder::with_defaults();
    sql_batch(&f, "a", &every("ingest", "* * * * * *"));
    let plan = Plan::new(&f.load(&[]), t0(), &no_history);
    let mut h = Harness::start(
        plan,
        Arc::new(FakeRunner::default()),
        Arc::new(MemLog::default()),
        Duration::from_secs(5),
    );
    let dir = f.path().to_path_buf();
    let loader: sandstack::scheduler::watch::Loader =
        Arc::new(move || sandstack::config::load(&dir, &BTreeMap::new()));
    let _w = sandstack::scheduler::watch::watch(
        f.path(),
        loader,
        h.reload.clone(),
        Duration::from_millis(200),
    )
    .expect("watch");
    let started = std::time::Instant::now();
    sql_batch(&f, "new_one", &every("ingest", "* * * * * *"));
    let Event::Reloaded(report) = h
        .wait_for(
            "the watcher's reload",
            |e| matches!(e, Event::Reloaded(r) if !r.added.is_empty()),
        )
        .await
    else {
        unreachable!()
    };
    assert_eq!(report.added, vec!["new_one"]);
    eprintln!(
        "reload seen {} ms after the write",
        started.elapsed().as_millis()
    );
    h.advance_to(2).await;
    assert!(!offsets(&h.started(), "new_one", Job::Ingest).is_empty());
    let _ = h.stop.send(true);
    h.task.await.expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_replays_missed_ticks_in_order_and_is_off_by_default() {
    let f = Folder::with_defaults();
    sql_batch(
        &f,
        "late",
        &format!("{}catch_up: true\n", every("ingest", "*/10 * * * * *")),
    );
    sql_batch(&f, "ontime", &every("ingest", "*/10 * * * * *"));
    let last = t0() - TimeDelta::milliseconds(40_500); // 11:59:20
    let plan = Plan::new(&f.load(&[]), t0(), &|_, _| Some(last));
    let runner = Arc::new(FakeRunner::default());
    let mut h = Harness::start(
        plan,
        runner.clone(),
        Arc::new(MemLog::default()),
        Duration::from_secs(5),
    );
    for _ in 0..4 {
        h.wait_for(
            "a replayed run",
            |e| matches!(e, Event::Finished(r) if r.batch == "late"),
        )
        .await;
    }
    let ran = runner.ran.lock().expect("lock").clone();
    let replayed: Vec<i64> = ran
        .iter()
        .filter(|(b, _, _, c)| b == "late" && *c)
        .map(|(_, _, t, _)| (*t - t0()).num_milliseconds())
        .collect();
    assert_eq!(
        replayed,
        vec![-30_500, -20_500, -10_500, -500],
        "11:59:30, :40, :50, 12:00:00"
    );
    assert!(
        !ran.iter().any(|(b, _, _, _)| b == "ontime"),
        "no catch_up, nothing replayed"
    );
    let _ = h.stop.send(true);
    h.task.await.expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_running_jobs_then_records_what_is_left_as_interrupted() {
    let f = Folder::with_defaults();
    sql_batch(&f, "slow", &every("ingest", "* * * * * *"));
    // Within the grace period: the run finishes and is recorded normally.
    let (release, gate) = std::sync::mpsc::channel();
    let runner = Arc::new(FakeRunner {
        gate: Mutex::new(Some(gate)),
        ..Default::default()
    });
    let log = Arc::new(MemLog::default());
    let mut h = Harness::start(
        Plan::new(&f.load(&[]), t0(), &no_history),
        runner,
        log.clone(),
        Duration::from_secs(10),
    );
    h.advance_to(1).await;
    let _ = h.stop.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    release.send(()).expect("release");
    let out = h.task.await.expect("join");
    assert_eq!((out.finished_in_grace, out.interrupted.len()), (1, 0));
    assert_eq!(log.0.lock().expect("lock")[0].status, RunStatus::Succeeded);

    // Past the grace period: recorded as interrupted.
    let (_keep, gate) = std::sync::mpsc::channel::<()>();
    let runner = Arc::new(FakeRunner {
        gate: Mutex::new(Some(gate)),
        ..Default::default()
    });
    let log = Arc::new(MemLog::default());
    let mut h = Harness::start(
        Plan::new(&f.load(&[]), t0(), &no_history),
        runner,
        log.clone(),
        Duration::from_millis(300),
    );
    h.advance_to(1).await;
    let _ = h.stop.send(true);
    let out = h.task.await.expect("join");
    assert_eq!(out.interrupted, vec![("slow".to_string(), Job::Ingest)]);
    let log = log.0.lock().expect("lock");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, RunStatus::Interrupted);
    assert!(log[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("grace period"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_jobs_store_rows_and_history() {
    let f = Folder::with_defaults();
    sql_batch(&f, "sql_ok", &every("ingest", "* * * * * *"));
    f.write(
        "b/sql_bad.yaml",
        &format!(
            "metric_batch: \"sql_bad\"\ningest_sql: \"SELECT * FROM no_such_table\"\n{}",
            every("ingest", "* * * * * *")
        ),
    );
    f.write("b/py.py", "import pandas as pd\ndef ingest():\n    return pd.DataFrame({'metric_name': ['x'], 'metric_value': [2.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})\n");
    f.write(
        "b/py.yaml",
        &format!("metric_batch: \"py\"\ningest_fn: >\n  {{% include \"./b/py.py\" %}}\nrecord_runs: true\n{}", every("ingest", "* * * * * *")),
    );
    let db = tempfile::tempdir().expect("tmp");
    let db_path = db.path().join("m.duckdb");
    let store = Store::open(&db_path).expect("db");
    let runner = Arc::new(StoreRunner::new(
        store.try_clone().expect("conn"),
        Arc::new(TestSandbox),
        BTreeMap::new(),
        db.path().join("m.cassettes"),
        db.path().join("m.plots"),
    ));
    let log = Arc::new(StoreRunLog::new(
        store.try_clone().expect("conn"),
        Retention::default(),
    ));
    let mut h = Harness::start(
        Plan::new(&f.load(&[]), t0(), &no_history),
        runner,
        log,
        Duration::from_secs(30),
    );
    h.advance_to(1).await;
    let finished = h
        .seen
        .iter()
        .filter(|e| matches!(e, Event::Finished(_)))
        .count();
    assert_eq!(finished, 3, "advance_to waits for every run");
    let _ = h.stop.send(true);
    h.task.await.expect("join");
    assert_eq!(
        store.count_rows(&key("metrics")).expect("count"),
        2,
        "sql_ok and py stored a row each"
    );
    let runs = store
        .list_runs(&RunFilter {
            limit: 10,
            ..Default::default()
        })
        .expect("runs");
    assert_eq!(runs.len(), 3);
    let by: HashMap<&str, &RunRecord> = runs.iter().map(|r| (r.batch.as_str(), r)).collect();
    assert_eq!(by["sql_ok"].status, RunStatus::Succeeded);
    assert_eq!(by["sql_ok"].rows, 1);
    assert_eq!(by["py"].status, RunStatus::Succeeded);
    assert!(by["py"].fuel > 0, "Python runs report fuel");
    let cassette = by["py"]
        .cassette
        .as_deref()
        .expect("record_runs writes a cassette");
    assert!(std::path::Path::new(cassette).is_file(), "{cassette}");
    assert_eq!(by["sql_bad"].status, RunStatus::Failed);
    let err = by["sql_bad"].error.as_deref().unwrap_or("");
    assert!(
        err.contains("batch sql_bad") && err.contains("no_such_table"),
        "{err}"
    );
    assert_eq!(
        by["sql_ok"].scheduled_us,
        (t0() + TimeDelta::milliseconds(500)).timestamp_micros()
    );
    assert!(runs.iter().all(|r| r.run_id > 0));
}

#[test]
fn a_job_past_its_time_limit_is_recorded_as_timeout() {
    let f = Folder::with_defaults();
    f.write(
        "b/slow.yaml",
        "metric_batch: \"slow\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, count(*) AS metric_value FROM range(1000000000000) t(i) WHERE i % 7 = 3\"\ningest_timeout_s: 1\njob_timeout_s: 1\ntrain_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, count(*) AS metric_value FROM range(1000000000000) t(i) WHERE i % 7 = 3\"\n",
    );
    let spec = Arc::new(f.spec("slow", &[]));
    let db = tempfile::tempdir().expect("tmp");
    let store = Store::open(&db.path().join("t.duckdb")).expect("db");
    let runner = StoreRunner::new(
        store.try_clone().expect("conn"),
        Arc::new(TestSandbox),
        BTreeMap::new(),
        db.path().join("c"),
        db.path().join("p"),
    );
    for (job, limit) in [
        (Job::Ingest, "ingest_timeout_s=1"),
        (Job::Train, "job_timeout_s=1"),
    ] {
        let t = std::time::Instant::now();
        let result = runner.run(&RunTicket {
            spec: spec.clone(),
            job,
            scheduled: Utc::now(),
            catch_up: false,
            attempt: 1,
            peers: Vec::new(),
        });
        assert_eq!(
            result.status,
            RunStatus::TimedOut,
            "{job:?}: {:?}",
            result.error
        );
        assert!(
            result.error.as_deref().unwrap_or("").contains(limit),
            "{job:?}: {:?}",
            result.error
        );
        crate::support::assert_stopped_in_time(t, Duration::from_secs(1), &format!("{job:?}"));
    }
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 0);
}

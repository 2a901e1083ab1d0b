//! The PostgreSQL backend against a real server this test starts
//! ([`super::cluster::TempCluster`]), for what each method must do.

use std::time::Duration;

use super::cluster::TempCluster;
use super::PgStore;
use crate::store::contract;
use crate::store::test_rows::{key, run_record};
use crate::store::{
    Claim, FleetStore, RunFilter, RunHistory, RunRecord, RunStatus, StoreError, WorkerInfo,
};

fn cluster() -> TempCluster {
    TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps installs it)")
}

fn store(c: &TempCluster) -> crate::store::Store {
    crate::store::Store::from_backend(Box::new(PgStore::open(&c.url).expect("open")))
}

const T0: i64 = 1_700_000_000_000_000;

#[test]
fn metrics_rows_round_trip_as_arrow() {
    let c = cluster();
    contract::metrics_rows_round_trip_as_arrow(&mut store(&c));
}

/// On PostgreSQL the batch's SQL never reaches the server.
#[test]
fn a_batchs_sql_never_reaches_the_server_and_deletes_only_its_own_rows() {
    let c = cluster();
    contract::a_batchs_sql_sees_and_deletes_only_its_own_rows(&mut store(&c));
}

#[test]
fn a_batchs_sql_runs_at_the_stores_clock() {
    let c = cluster();
    contract::a_batchs_sql_runs_at_the_stores_clock(&mut store(&c));
}

#[test]
fn runs_and_pauses() {
    let c = cluster();
    contract::runs_and_pauses(&mut store(&c));
}

#[test]
fn feedback_only_on_a_stored_anomaly() {
    let c = cluster();
    contract::feedback_only_on_a_stored_anomaly(&mut store(&c));
}

#[test]
fn ticks_are_claimed_once_and_a_silent_workers_taken_over_once() {
    let c = cluster();
    let s = PgStore::open(&c.url).expect("open");
    let t0 = 1_700_000_000_000_000i64;
    // The first claim wins; a running earlier tick makes the next busy.
    let other = PgStore::open(&c.url).expect("second connection");
    for w in ["w1", "w2"] {
        s.register_worker(&WorkerInfo {
            worker: w.into(),
            host: "h".into(),
            pid: 1,
        })
        .expect("register");
    }
    let lease = Duration::from_secs(30);
    assert_eq!(
        s.claim_tick("w1", "a", "ingest", t0, lease).expect("claim"),
        Claim::Mine
    );
    assert_eq!(
        other
            .claim_tick("w2", "a", "ingest", t0, lease)
            .expect("claim"),
        Claim::Taken {
            worker: "w1".into()
        }
    );
    assert_eq!(
        other
            .claim_tick("w2", "a", "ingest", t0 + 1_000_000, lease)
            .expect("claim"),
        Claim::Busy {
            worker: "w1".into()
        }
    );
    assert!(s.finish_tick("w1", "a", "ingest", t0).expect("finish"));
    assert_eq!(
        other
            .claim_tick("w2", "a", "ingest", t0 + 2_000_000, lease)
            .expect("claim"),
        Claim::Mine
    );
    // w2 goes silent with a short lease: w1 takes its run over, once.
    assert_eq!(
        other
            .claim_tick("w2", "b", "ingest", t0, Duration::from_millis(1))
            .expect("claim"),
        Claim::Mine
    );
    std::thread::sleep(Duration::from_millis(20));
    s.heartbeat("w1", lease, &[]).expect("beat");
    let taken = s.take_over_expired("w1").expect("take over");
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        (taken[0].batch.as_str(), taken[0].worker.as_str()),
        ("b", "w2")
    );
    assert!(
        other.take_over_expired("w2").expect("again").is_empty(),
        "exactly once"
    );
    let interrupted = s
        .list_runs(&RunFilter {
            batch: Some("b".into()),
            limit: 10,
            ..Default::default()
        })
        .expect("list")
        .into_iter()
        .filter(|r| r.status == RunStatus::Interrupted)
        .collect::<Vec<_>>();
    assert_eq!(interrupted.len(), 1);
    assert!(interrupted[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("w2 stopped renewing"));
    assert!(
        !other.finish_tick("w2", "b", "ingest", t0).expect("late"),
        "taken over"
    );
    let workers = s.workers(Duration::from_secs(3600)).expect("workers");
    assert_eq!(workers.len(), 2);
    s.worker_stopped("w1").expect("stop");
}

#[test]
fn opening_refuses_what_it_cannot_use() {
    let c = cluster();
    let wrong = c.url.replace(":sandstack@", ":wrong@");
    let e = PgStore::open(&wrong)
        .err()
        .expect("a wrong password")
        .to_string();
    let port = c.port;
    assert_eq!(
        e,
        format!(
            "cannot connect to PostgreSQL at postgres://sandstack:***@127.0.0.1:{port}/sandstack: \
             password authentication failed for user \"sandstack\" (check that the server is up \
             and that the URL's host, port, user, password and database are right)"
        )
    );
    let missing = format!("postgres://sandstack:sandstack@127.0.0.1:{port}/nope");
    let e = PgStore::open(&missing)
        .err()
        .expect("no such database")
        .to_string();
    assert_eq!(
        e,
        format!(
            "cannot connect to PostgreSQL at postgres://sandstack:***@127.0.0.1:{port}/nope: \
             database \"nope\" does not exist (check that the server is up and that the URL's \
             host, port, user, password and database are right)"
        )
    );
    let e = PgStore::open("postgres://127.0.0.1:1/x")
        .err()
        .expect("nothing listens")
        .to_string();
    assert!(
        e.starts_with("cannot connect to PostgreSQL at postgres://127.0.0.1:1/x: "),
        "{e}"
    );
    // A database migrated by a newer sandstack is refused.
    let mut admin = postgres::Client::connect(&c.url, postgres::NoTls).expect("connect");
    PgStore::open(&c.url).expect("migrates");
    admin
        .execute(
            "INSERT INTO sandstack_migrations (version, description) VALUES (999, 'future')",
            &[],
        )
        .expect("insert");
    let e = PgStore::open(&c.url).err().expect("newer").to_string();
    assert!(e.contains("newer sandstack"), "{e}");
    let _: Option<StoreError> = None;
}

#[test]
fn a_batchs_sql_past_its_time_limit_is_stopped() {
    let c = cluster();
    let mut store =
        crate::store::Store::from_backend(Box::new(PgStore::open(&c.url).expect("open")));
    let t = std::time::Instant::now();
    let (out, ran_out) = store.with_time_limit(Duration::from_millis(500), |s| {
        s.query_batch_sql(
            &key("metrics"),
            "a",
            "SELECT count(*) AS n FROM range(10000000000)",
            crate::store::ResultCaps::TEMPLATE,
        )
    });
    assert!(ran_out, "the limit ran out");
    let e = out.expect_err("stopped").to_string();
    assert!(e.contains("time limit"), "{e}");
    // Unstopped, the count runs for hours.
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 0);
}

#[test]
fn a_claimed_runs_record_ends_its_claim_and_replaces_a_take_over() {
    let c = cluster();
    let s = PgStore::open(&c.url).expect("open");
    let other = PgStore::open(&c.url).expect("open");
    let lease = Duration::from_secs(30);
    let ours = |at: i64| RunRecord {
        worker: Some("w1".into()),
        ..run_record("a", at, RunStatus::Succeeded)
    };
    // Recorded with its claim: nothing left for a take-over.
    assert_eq!(
        s.claim_tick("w1", "a", "ingest", T0, lease).expect("claim"),
        Claim::Mine
    );
    s.record_claimed_run(&ours(T0)).expect("record");
    assert_eq!(
        other
            .claim_tick("w2", "a", "ingest", T0 + 1, lease)
            .expect("claim"),
        Claim::Mine,
        "the job is not busy any more"
    );
    other
        .record_claimed_run(&RunRecord {
            worker: Some("w2".into()),
            ..run_record("a", T0 + 1, RunStatus::Succeeded)
        })
        .expect("record");
    // Outlived its lease: taken over, then its own record replaces that.
    let t1 = T0 + 10_000_000;
    s.claim_tick("w1", "a", "ingest", t1, Duration::from_millis(1))
        .expect("claim");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(other.take_over_expired("w2").expect("take over").len(), 1);
    s.record_claimed_run(&ours(t1)).expect("record");
    let at_t1: Vec<RunRecord> = s
        .list_runs(&RunFilter {
            batch: Some("a".into()),
            limit: 100,
            ..Default::default()
        })
        .expect("list")
        .into_iter()
        .filter(|r| r.scheduled_us == t1)
        .collect();
    assert_eq!(at_t1.len(), 1, "{at_t1:?}");
    assert_eq!(at_t1[0].status, RunStatus::Succeeded);
    assert!(other.take_over_expired("w2").expect("again").is_empty());
}

#[test]
fn the_heartbeat_renews_only_the_claims_its_worker_holds() {
    let c = cluster();
    let s = PgStore::open(&c.url).expect("open");
    let short = Duration::from_millis(300);
    for batch in ["kept", "lost"] {
        assert_eq!(
            s.claim_tick("w1", batch, "ingest", T0, short)
                .expect("claim"),
            Claim::Mine
        );
    }
    let held = vec![("kept".to_string(), "ingest".to_string(), T0)];
    s.heartbeat("w1", Duration::from_secs(30), &held)
        .expect("beat");
    std::thread::sleep(Duration::from_millis(400));
    let taken = s.take_over_expired("w2").expect("take over");
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(taken[0].batch, "lost", "the claim no one holds runs out");
}

/// A worker that claimed a tick as skipped (its batch's earlier run still
/// held the job) and died before recording it leaves a claim another
/// worker takes over, recording the tick as skipped, so no tick is left
/// without a run.
#[test]
fn a_skipped_claim_whose_worker_died_is_recorded_by_another() {
    let c = cluster();
    let s = PgStore::open(&c.url).expect("open");
    let long = Duration::from_secs(30);
    assert_eq!(
        s.claim_tick("w1", "a", "ingest", T0, long).expect("claim"),
        Claim::Mine
    );
    assert_eq!(
        s.claim_tick(
            "w2",
            "a",
            "ingest",
            T0 + 1_000_000,
            Duration::from_millis(1)
        )
        .expect("claim"),
        Claim::Busy {
            worker: "w1".into()
        }
    );
    std::thread::sleep(Duration::from_millis(20));
    let taken = s.take_over_expired("w3").expect("take over");
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        (taken[0].worker.as_str(), taken[0].scheduled_us),
        ("w2", T0 + 1_000_000)
    );
    assert!(
        s.take_over_expired("w3").expect("again").is_empty(),
        "exactly once"
    );
    let runs = s
        .list_runs(&RunFilter {
            batch: Some("a".into()),
            limit: 10,
            ..Default::default()
        })
        .expect("list");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Skipped);
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("before recording the tick as skipped"),
        "{:?}",
        runs[0].error
    );
    // w1's own running claim, renewed, is untouched.
    assert!(s.finish_tick("w1", "a", "ingest", T0).expect("finish"));
}

//! The PostgreSQL backend against a real server this test starts
//! ([`super::cluster::TempCluster`]), for what each method must do.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use super::cluster::TempCluster;
use super::PgStore;
use crate::store::test_rows::{rows, run_record};
use crate::store::{
    Claim, DashboardStore, FleetStore, MetricsStore, Retention, RunFilter, RunHistory, RunRecord,
    RunStatus, StoreError, Vote, WorkerInfo,
};

fn cluster() -> TempCluster {
    TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps installs it)")
}

/// A run as a fleet's worker records it: with its worker, a retry.
fn run(batch: &str, started_us: i64, status: RunStatus) -> RunRecord {
    RunRecord {
        attempt: 2,
        worker: Some("w1".into()),
        ..run_record(batch, started_us, status)
    }
}

const T0: i64 = 1_700_000_000_000_000;

/// A store with three rows: batch a's m1 at T0 and T0+1, batch b's m2.
fn seeded(c: &TempCluster) -> PgStore {
    let mut s = PgStore::open(&c.url).expect("open");
    let n = s
        .append_metrics(
            "Metrics",
            &[rows(&[
                (T0, "a", "m1", "metric", 1.5),
                (T0 + 1, "a", "m1", "metric", 2.5),
                (T0, "b", "m2", "metric", 7.0),
            ])],
        )
        .expect("append");
    assert_eq!(n, 3);
    s
}

#[test]
fn metrics_rows_round_trip_as_arrow() {
    let c = cluster();
    let s = seeded(&c);
    let t0 = T0;
    assert_eq!(
        s.count_rows("metrics").expect("count"),
        3,
        "folded like unquoted SQL"
    );
    assert!(s.batch_has_rows("Metrics", "a").expect("has"));
    assert!(!s.batch_has_rows("Metrics", "zzz").expect("has"));
    assert_eq!(s.count_rows("nothing_here").expect("count"), 0);

    // A batch's rows read back as Arrow, timestamps exact to the µs.
    let out = s.read_rows("metrics", Some("a")).expect("read");
    let b = &out[0];
    assert_eq!(b.num_rows(), 2);
    let types = |s: &arrow::datatypes::Schema| -> Vec<(String, arrow::datatypes::DataType)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(types(&b.schema()), types(&crate::store::metrics_schema()));
    let ts = b
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let mut got = vec![ts.value(0), ts.value(1)];
    got.sort();
    assert_eq!(got, vec![t0, t0 + 1]);
    assert_eq!(s.read_rows("metrics", None).expect("all")[0].num_rows(), 3);
    assert!(s.read_rows("nothing_here", None).expect("none").is_empty());

    let newest = s.newest_values("metrics", "a", "m1", 5).expect("newest");
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].timestamp_us, t0 + 1);
    let seen = s
        .timestamps_of_type("metrics", "a", crate::domain::MetricType::Metric)
        .expect("ts");
    assert_eq!(seen["m1"], BTreeSet::from([t0, t0 + 1]));
}

/// A batch's SQL on a PostgreSQL store: DuckDB's SQL, in a scratch
/// database with only the batch's rows; nothing reaches the server.
#[test]
fn a_batchs_sql_never_reaches_the_server_and_deletes_only_its_own_rows() {
    let c = cluster();
    let mut store = crate::store::Store::from_backend(Box::new(seeded(&c)));
    let query = |store: &crate::store::Store, sql: &str| {
        store.query_batch_sql("Metrics", "a", sql, crate::store::ResultCaps::TEMPLATE)
    };
    let seen = query(
        &store,
        "SELECT count(*) AS n, count(DISTINCT metric_batch) AS batches, \
         epoch_us(max(metric_timestamp)) AS last FROM metrics",
    )
    .expect("DuckDB's SQL runs");
    assert_eq!(seen[0].column(0).as_primitive::<Int64Type>().value(0), 2);
    assert_eq!(seen[0].column(1).as_primitive::<Int64Type>().value(0), 1);
    assert_eq!(
        seen[0].column(2).as_primitive::<Int64Type>().value(0),
        T0 + 1
    );
    for (sql, says) in [
        ("SELECT * FROM metrics WHERE metric_batch = 'b'", ""),
        ("SELECT * FROM sandstack_runs", "does not exist"),
        ("SELECT * FROM pg_stat_activity", "does not exist"),
        ("SELECT pg_terminate_backend(1)", "does not exist"),
        ("SELECT pg_read_file('/etc/passwd')", "does not exist"),
        ("SELECT 1; DROP TABLE metrics", "must be exactly one"),
    ] {
        match query(&store, sql) {
            Ok(out) => {
                assert!(says.is_empty(), "{sql} ran");
                assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 0, "{sql}");
            }
            Err(e) => assert!(
                !says.is_empty() && e.to_string().contains(says),
                "{sql}: {e}"
            ),
        }
    }
    // Writes change the scratch copy only.
    query(
        &store,
        "WITH d AS (DELETE FROM metrics RETURNING *) SELECT count(*) AS n FROM d",
    )
    .expect("runs in the scratch database");
    assert_eq!(store.count_rows("metrics").expect("count"), 3);

    // delete_sql: whatever it says, only the batch's own rows go.
    assert_eq!(
        store
            .delete_batch_sql("Metrics", "a", "DELETE FROM metrics WHERE metric_value < 2")
            .expect("own rows"),
        1
    );
    assert_eq!(
        store
            .delete_batch_sql("Metrics", "a", "DELETE FROM metrics")
            .expect("all of its own"),
        1
    );
    assert_eq!(
        store.count_rows("metrics").expect("count"),
        1,
        "b's row stays"
    );
    let e = store
        .delete_batch_sql("Metrics", "b", "SELECT 1")
        .expect_err("not a delete");
    assert!(e.to_string().contains("must be a DELETE"), "{e}");
}

#[test]
fn runs_and_pauses() {
    let c = cluster();
    let s = PgStore::open(&c.url).expect("open");
    let day = 86_400_000_000i64;
    let now = 20_000 * day;
    for i in 0..10 {
        let status = if i % 3 == 0 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        s.record_run(&run(if i < 5 { "a" } else { "b" }, now - i * day, status))
            .expect("record");
    }
    let all = s
        .list_runs(&RunFilter {
            limit: 100,
            ..Default::default()
        })
        .expect("list");
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].started_us, now, "newest first");
    assert_eq!(all[0].worker.as_deref(), Some("w1"));
    assert_eq!(all[0].attempt, 2);
    let failed_a = s
        .list_runs(&RunFilter {
            batch: Some("a".into()),
            failed_only: true,
            limit: 100,
            ..Default::default()
        })
        .expect("list");
    assert_eq!(failed_a.len(), 2);
    assert_eq!(s.last_scheduled("a", "ingest").expect("last"), Some(now));
    assert_eq!(s.last_scheduled("a", "train").expect("last"), None);
    let gone = s
        .prune_runs(
            Retention {
                max_age_days: 7,
                max_rows: 4,
            },
            now + 1,
        )
        .expect("prune");
    assert_eq!(gone, 6);
    assert_eq!(s.last_ingests().expect("last").len(), 1);

    s.set_paused("a", true).expect("pause");
    s.set_paused("a", true).expect("twice");
    s.set_paused("b", true).expect("pause");
    s.set_paused("b", false).expect("resume");
    assert_eq!(
        s.paused_batches().expect("paused"),
        BTreeSet::from(["a".to_string()])
    );
}

#[test]
fn feedback_only_on_a_stored_anomaly() {
    let c = cluster();
    let mut s = PgStore::open(&c.url).expect("open");
    let t0 = 1_700_000_000_000_000i64;
    s.append_metrics("m", &[rows(&[(t0, "a", "x", "alert", 1.0)])])
        .expect("append");
    assert_eq!(
        s.record_feedback("m", "a", "x", t0, Vote::Up)
            .expect("vote"),
        Some(1)
    );
    assert_eq!(
        s.record_feedback("m", "a", "x", t0, Vote::Up)
            .expect("vote"),
        Some(2)
    );
    assert_eq!(
        s.record_feedback("m", "a", "x", t0 + 1, Vote::Up)
            .expect("vote"),
        None
    );
    let anomalies = s.anomalies(&[("m", "a")], 10, 0).expect("anomalies");
    assert_eq!((anomalies.len(), anomalies[0].up), (1, 2));
    assert!(s.card_figures("m").expect("cards").contains_key("a"));
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
    // trust auth takes any password; a missing database is refused.
    let missing = c.url.replace("/sandstack", "/nope");
    let e = PgStore::open(&missing)
        .err()
        .expect("no such database")
        .to_string();
    assert!(e.contains("PostgreSQL") && e.contains("nope"), "{e}");
    assert!(!e.contains(":sandstack@"), "password shown: {e}");
    let _ = wrong;
    let e = PgStore::open("postgres://127.0.0.1:1/x")
        .err()
        .expect("nothing listens")
        .to_string();
    assert!(e.contains("cannot open PostgreSQL"), "{e}");
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
            "metrics",
            "a",
            "SELECT count(*) AS n FROM range(10000000000)",
            crate::store::ResultCaps::TEMPLATE,
        )
    });
    assert!(ran_out, "the limit ran out");
    let e = out.expect_err("stopped").to_string();
    assert!(e.contains("time limit"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(store.count_rows("metrics").expect("count"), 0);
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

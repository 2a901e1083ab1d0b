//! The PostgreSQL backend against a real server this test starts
//! ([`super::cluster::TempCluster`]), for what each method must do.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};

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
    let mut s = seeded(&c);
    let t0 = T0;
    assert_eq!(
        s.count_rows("metrics").expect("count"),
        3,
        "folded like unquoted SQL"
    );
    assert!(s.batch_has_rows("Metrics", "a").expect("has"));
    assert!(!s.batch_has_rows("Metrics", "zzz").expect("has"));
    assert_eq!(s.count_rows("nothing_here").expect("count"), 0);

    // A template reads back Arrow, timestamps exact to the µs.
    let out = s
        .query_template(
            "SELECT metric_timestamp, metric_name, metric_value, count(*) OVER () AS n, 1.25::numeric AS d, true AS b \
             FROM metrics WHERE metric_batch = 'a' ORDER BY metric_timestamp",
        )
        .expect("query");
    let b = &out[0];
    assert_eq!(b.num_rows(), 2);
    let ts = b
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!((ts.value(0), ts.value(1)), (t0, t0 + 1));
    assert_eq!(b.column(2).as_primitive::<Float64Type>().value(1), 2.5);
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(0), 2);
    assert_eq!(b.column(4).as_primitive::<Float64Type>().value(0), 1.25);
    assert!(b.column(5).as_boolean().value(0));

    let newest = s.newest_values("metrics", "a", "m1", 5).expect("newest");
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].timestamp_us, t0 + 1);
    let seen = s.timestamps_of_type("metrics", "a", "metric").expect("ts");
    assert_eq!(seen["m1"], BTreeSet::from([t0, t0 + 1]));

    // SQL ingest's transaction: nothing is written unless committed.
    let tx = s.begin().expect("tx");
    tx.append_metrics("metrics", &[rows(&[(t0 + 5, "a", "m1", "metric", 9.0)])])
        .expect("append");
    tx.rollback().expect("rollback");
    assert_eq!(s.count_rows("metrics").expect("count"), 3);
    let tx = s.begin().expect("tx");
    tx.query_template("SELECT 1 AS x").expect("query");
    tx.append_metrics("metrics", &[rows(&[(t0 + 5, "a", "m1", "metric", 9.0)])])
        .expect("append");
    tx.commit().expect("commit");
    assert_eq!(s.count_rows("metrics").expect("count"), 4);
}

#[test]
fn templates_are_read_only_and_delete_sql_removes_only_its_batchs_rows() {
    let c = cluster();
    let mut s = seeded(&c);
    // Hostile templates: writes, several statements, settings, DuckDB SQL.
    for (sql, says) in [
        ("DELETE FROM metrics", "read-only transaction"),
        ("SELECT 1; DROP TABLE metrics", "multiple commands"),
        (
            "WITH d AS (DELETE FROM metrics RETURNING 1) SELECT * FROM d",
            "read-only",
        ),
        ("SELECT epoch_us(now())", "rewritten in PostgreSQL"),
        ("SELECT '1 day'::interval AS i", "cast it in the query"),
    ] {
        let e = s.query_template(sql).expect_err(sql).to_string();
        assert!(e.contains(says), "{sql}: {e}");
    }
    s.query_template("SELECT set_config('statement_timeout', '1', false)")
        .expect("runs, and is rolled back");
    s.query_template("SELECT 1 AS x FROM pg_sleep(0.05)")
        .expect("the setting did not outlive its template");
    assert_eq!(
        s.count_rows("metrics").expect("count"),
        3,
        "nothing removed"
    );

    // delete_sql: one DELETE of the batch's own rows only.
    let e = s
        .delete_with_template("metrics", "a", "DELETE FROM metrics", "delete_sql")
        .expect_err("other batches' rows");
    assert!(e.to_string().contains("other batches"), "{e}");
    let e = s
        .delete_with_template("metrics", "a", "SELECT 1", "delete_sql")
        .expect_err("not a delete");
    assert!(e.to_string().contains("not a DELETE"), "{e}");
    let gone = s
        .delete_with_template(
            "metrics",
            "a",
            "DELETE FROM metrics WHERE metric_batch = 'a' AND metric_value < 2",
            "delete_sql",
        )
        .expect("own rows");
    assert_eq!(gone, 1);
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
fn a_template_ending_other_sessions_costs_them_one_statement_and_can_be_forbidden() {
    let c = cluster();
    let s = PgStore::open(&c.url).expect("open");
    let victim = PgStore::open(&c.url).expect("open");
    assert_eq!(victim.count_rows("metrics").expect("count"), 0);
    let hostile = "SELECT count(pg_terminate_backend(pid)) AS ended FROM pg_stat_activity \
                   WHERE usename = current_user AND pid <> pg_backend_pid()";
    s.query_template(hostile)
        .expect("allowed until the operator revokes it");
    // The victim's next statement may fail; the one after reconnects.
    let _ = victim.count_rows("metrics");
    assert_eq!(victim.count_rows("metrics").expect("connected again"), 0);

    // The operator's hardening: the same template is refused.
    let admin_here = c.admin_url.replace("/postgres", "/sandstack");
    let mut admin = postgres::Client::connect(&admin_here, postgres::NoTls).expect("admin");
    admin.batch_execute(super::REVOKE_SIGNALS).expect("revoke");
    let e = s.query_template(hostile).expect_err("revoked").to_string();
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(victim.count_rows("metrics").expect("untouched"), 0);
}

#[test]
fn a_template_past_its_time_limit_is_cancelled_on_the_server() {
    let c = cluster();
    let mut store =
        crate::store::Store::from_backend(Box::new(PgStore::open(&c.url).expect("open")));
    let t = std::time::Instant::now();
    let (out, ran_out) = store.with_time_limit(Duration::from_millis(500), |s| {
        s.query_template("SELECT 1 AS x FROM pg_sleep(30)")
    });
    assert!(ran_out, "the limit ran out");
    let e = out.expect_err("cancelled").to_string();
    assert!(e.contains("cancel"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // The connection is still good.
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

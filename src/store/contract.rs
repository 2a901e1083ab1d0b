//! What every storage backend must do, as functions each backend's tests
//! run against a store of its own: DuckDB in memory (`store/duck/`) and a
//! PostgreSQL cluster the test starts (`store/pg/tests.rs`). A new backend
//! runs these too.

use std::collections::BTreeSet;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use crate::store::test_rows::{key, rows, run_record};
use crate::store::{Retention, RunFilter, RunRecord, RunStatus, Store, Vote};

pub(crate) const T0: i64 = 1_700_000_000_000_000;

/// Three rows: batch a's m1 at T0 and T0+1, batch b's m2.
fn seed(s: &mut Store) {
    let n = s
        .append_metrics(
            &key("Metrics"),
            &[rows(&[
                (T0, "a", "m1", "metric", 1.5),
                (T0 + 1, "a", "m1", "metric", 2.5),
                (T0, "b", "m2", "metric", 7.0),
            ])],
        )
        .expect("append");
    assert_eq!(n, 3);
}

/// A run as a fleet's worker records it: with its worker, a retry.
fn run(batch: &str, started_us: i64, status: RunStatus) -> RunRecord {
    RunRecord {
        attempt: 2,
        worker: Some("w1".into()),
        ..run_record(batch, started_us, status)
    }
}

/// Rows appended read back whole, as Arrow, exact to the µs; a table's
/// key is folded as unquoted SQL folds it.
pub(crate) fn metrics_rows_round_trip_as_arrow(s: &mut Store) {
    seed(s);
    let t0 = T0;
    assert_eq!(
        s.count_rows(&key("metrics")).expect("count"),
        3,
        "folded like unquoted SQL"
    );
    assert!(s.batch_has_rows(&key("Metrics"), "a").expect("has"));
    assert!(!s.batch_has_rows(&key("Metrics"), "zzz").expect("has"));
    assert_eq!(s.count_rows(&key("nothing_here")).expect("count"), 0);

    // A batch's rows read back as Arrow, timestamps exact to the µs.
    let out = s.read_rows(&key("metrics"), Some("a")).expect("read");
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
    assert_eq!(
        s.read_rows(&key("metrics"), None).expect("all")[0].num_rows(),
        3
    );
    assert!(s
        .read_rows(&key("nothing_here"), None)
        .expect("none")
        .is_empty());

    let newest = s
        .newest_values(&key("metrics"), "a", "m1", 5)
        .expect("newest");
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].timestamp_us, t0 + 1);
    let seen = s
        .timestamps_of_type(&key("metrics"), "a", crate::domain::MetricType::Metric)
        .expect("ts");
    assert_eq!(seen["m1"], BTreeSet::from([t0, t0 + 1]));
}

/// A batch's SQL reads the store's clock: every function of DuckDB's that
/// tells the time gives the instant set, and the real time once it is unset.
pub(crate) fn a_batchs_sql_runs_at_the_stores_clock(store: &mut Store) {
    seed(store);
    let at = 1_714_568_400_123_456; // 2024-05-01T13:00:00.123456Z
    let sql =
        "SELECT epoch_us(now()), epoch_us(current_timestamp), epoch_us(get_current_timestamp()), \
               epoch_us(transaction_timestamp()), epoch_us(make_timestamp(epoch_us(now()))), \
               CAST(current_date AS VARCHAR) || ' ' || CAST(today() AS VARCHAR), \
               count(*) FILTER (WHERE metric_timestamp < now() - INTERVAL '1 day') FROM metrics";
    let ask = |store: &Store| {
        store
            .query_batch_sql(
                &key("Metrics"),
                "a",
                sql,
                crate::store::ResultCaps::TEMPLATE,
            )
            .expect("runs")
    };
    assert_eq!(store.set_clock(Some(at)), None);
    let got = ask(store);
    for c in 0..5 {
        assert_eq!(
            got[0].column(c).as_primitive::<Int64Type>().value(0),
            at,
            "column {c}"
        );
    }
    assert_eq!(
        got[0].column(5).as_string::<i32>().value(0),
        "2024-05-01 2024-05-01"
    );
    assert_eq!(
        got[0].column(6).as_primitive::<Int64Type>().value(0),
        2,
        "a's rows are older"
    );
    assert_eq!(store.set_clock(None), Some(at));
    let real = ask(store)[0].column(0).as_primitive::<Int64Type>().value(0);
    assert!(
        (real - chrono::Utc::now().timestamp_micros()).abs() < 600_000_000,
        "{real}"
    );
}

/// A batch's SQL: DuckDB's SQL, in a scratch database with only the
/// batch's rows; nothing else is reachable and only its own rows can go.
pub(crate) fn a_batchs_sql_sees_and_deletes_only_its_own_rows(store: &mut Store) {
    seed(store);
    let query = |store: &Store, sql: &str| {
        store.query_batch_sql(
            &key("Metrics"),
            "a",
            sql,
            crate::store::ResultCaps::TEMPLATE,
        )
    };
    let seen = query(
        store,
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
        match query(store, sql) {
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
        store,
        "WITH d AS (DELETE FROM metrics RETURNING *) SELECT count(*) AS n FROM d",
    )
    .expect("runs in the scratch database");
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 3);

    // delete_sql: whatever it says, only the batch's own rows go.
    assert_eq!(
        store
            .delete_batch_sql(
                &key("Metrics"),
                "a",
                "DELETE FROM metrics WHERE metric_value < 2"
            )
            .expect("own rows"),
        1
    );
    assert_eq!(
        store
            .delete_batch_sql(&key("Metrics"), "a", "DELETE FROM metrics")
            .expect("all of its own"),
        1
    );
    assert_eq!(
        store.count_rows(&key("metrics")).expect("count"),
        1,
        "b's row stays"
    );
    let e = store
        .delete_batch_sql(&key("Metrics"), "b", "SELECT 1")
        .expect_err("not a delete");
    assert!(e.to_string().contains("must be a DELETE"), "{e}");
}

/// The run history newest first, filtered and pruned; pauses set and
/// lifted.
pub(crate) fn runs_and_pauses(s: &mut Store) {
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
    assert_eq!(failed_a[0].error.as_deref(), Some("boom"));
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
    // 7 days keeps the 7 newest; then the cap keeps the newest 4.
    assert_eq!(gone, 6);
    let left = s
        .list_runs(&RunFilter {
            limit: 100,
            ..Default::default()
        })
        .expect("list");
    assert_eq!(
        left.iter().map(|r| r.started_us).collect::<Vec<_>>(),
        (0..4).map(|i| now - i * day).collect::<Vec<_>>()
    );
    assert_eq!(s.last_ingests().expect("last").len(), 1);

    s.set_paused("a", true).expect("pause");
    s.set_paused("a", true).expect("twice");
    s.set_paused("b", true).expect("pause");
    s.set_paused("b", false).expect("resume");
    s.set_paused("c", false)
        .expect("resuming what is not paused is fine");
    assert_eq!(
        s.paused_batches().expect("paused"),
        BTreeSet::from(["a".to_string()])
    );
}

/// Votes only on an anomaly that is stored, counted.
pub(crate) fn feedback_only_on_a_stored_anomaly(s: &mut Store) {
    let t0 = 1_700_000_000_000_000i64;
    s.append_metrics(&key("m"), &[rows(&[(t0, "a", "x", "alert", 1.0)])])
        .expect("append");
    assert_eq!(
        s.record_feedback(&key("m"), "a", "x", t0, Vote::Up)
            .expect("vote"),
        Some(1)
    );
    assert_eq!(
        s.record_feedback(&key("m"), "a", "x", t0, Vote::Up)
            .expect("vote"),
        Some(2)
    );
    assert_eq!(
        s.record_feedback(&key("m"), "a", "x", t0 + 1, Vote::Up)
            .expect("vote"),
        None
    );
    let anomalies = s.anomalies(&[(&key("m"), "a")], 10, 0).expect("anomalies");
    assert_eq!((anomalies.len(), anomalies[0].up), (1, 2));
    assert!(s.card_figures(&key("m")).expect("cards").contains_key("a"));
}

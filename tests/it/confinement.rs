//! A batch's SQL sees only its own rows and changes nothing but through
//! sandstack (issue 29): the hostile templates a batch author could write,
//! on DuckDB and on PostgreSQL, each checked by comparing the other
//! batches' rows, the run history and the pauses before and after.

use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use sandstack::config::BatchSpec;
use sandstack::store::pg::cluster::TempCluster;
use sandstack::store::pg::PgStore;
use sandstack::store::{ResultCaps, RunFilter, RunRecord, RunStatus, Store};
use sandstack::web::charts::Window;

use crate::support::{key, run_ingest, Folder};

const SQL_INGEST: &str =
    "ingest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n";

/// What a batch must not be able to change: every row of the table, the
/// run history and the pauses.
#[derive(Debug, PartialEq)]
struct World {
    rows: Vec<String>,
    runs: Vec<String>,
    paused: Vec<String>,
}

fn texts(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<_> = b
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).expect("as text"))
            .collect();
        for i in 0..b.num_rows() {
            let row: Vec<String> = cols
                .iter()
                .map(|c| {
                    let s = c.as_string::<i32>();
                    if s.is_null(i) {
                        "NULL".to_string()
                    } else {
                        s.value(i).to_string()
                    }
                })
                .collect();
            out.push(row.join("|"));
        }
    }
    out.sort();
    out
}

fn world(store: &Store) -> World {
    let runs = store
        .list_runs(&RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .expect("runs")
        .iter()
        .map(|r| format!("{}|{}|{}|{:?}", r.batch, r.job, r.status.as_str(), r.error))
        .collect();
    World {
        rows: texts(&store.read_rows(&key("metrics"), None).expect("rows")),
        runs,
        paused: store
            .paused_batches()
            .expect("paused")
            .into_iter()
            .collect(),
    }
}

/// A folder with a victim batch and `hostile` batches (name, YAML lines).
fn folder(hostile: &[(&str, String)]) -> Folder {
    let f = Folder::with_defaults();
    f.write(
        "victim/victim.yaml",
        &format!("metric_batch: victim\n{SQL_INGEST}"),
    );
    for (name, yaml) in hostile {
        f.write(
            &format!("{name}/{name}.yaml"),
            &format!("metric_batch: {name}\n{yaml}"),
        );
    }
    f
}

/// The victim's rows, one recorded run and a pause, in `store`.
fn seed(f: &Folder, store: &mut Store) {
    store.ensure_runs_table().expect("runs table");
    run_ingest(&f.spec("victim", &[]), store, &[]).unwrap_or_else(|e| panic!("{e}"));
    store
        .record_run(&RunRecord {
            run_id: 0,
            batch: "victim".into(),
            job: "ingest".into(),
            scheduled_us: 1,
            started_us: 1,
            ended_us: 2,
            status: RunStatus::Succeeded,
            error: None,
            rows: 1,
            fuel: 0,
            wall_ms: 1.0,
            cassette: None,
            log: None,
            attempt: 1,
            worker: None,
        })
        .expect("record");
    store.set_paused("victim", true).expect("pause");
}

/// Templates a hostile batch might write, whatever their job: each must
/// leave the rest of the store as it was.
fn writes() -> Vec<(&'static str, &'static str)> {
    vec![
        ("cte_delete", "WITH d AS (DELETE FROM metrics WHERE metric_batch = 'victim' RETURNING *) SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value"),
        ("cte_update", "WITH u AS (UPDATE metrics SET metric_value = 666 WHERE metric_batch = 'victim' RETURNING *) SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value"),
        ("cte_forge", "WITH i AS (INSERT INTO metrics VALUES (now(), 'victim', 'm', 'alert', 1, NULL) RETURNING *) SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value"),
        ("cte_unpause", "WITH p AS (DELETE FROM sandstack_paused RETURNING *) SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value"),
        ("cte_history", "WITH r AS (DELETE FROM sandstack_runs RETURNING *) SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value"),
    ]
}

/// Every hostile write as `ingest_sql` and as `train_sql`, then as
/// `delete_sql`s that name the whole table, the history and the pauses:
/// only the batches' own rows may change, and only through sandstack.
fn nothing_but_own_rows_change(mut store: Store) {
    let mut hostile: Vec<(&str, String)> = writes()
        .into_iter()
        .map(|(name, sql)| {
            (
                name,
                format!("ingest_sql: \"{sql}\"\ntrain_sql: \"{sql}\"\n"),
            )
        })
        .collect();
    hostile.push((
        "own_table",
        format!("table_key: mine\n{SQL_INGEST}delete_sql: \"DELETE FROM metrics\"\n"),
    ));
    hostile.push((
        "wipe_runs",
        format!("{SQL_INGEST}delete_sql: \"DELETE FROM sandstack_runs\"\n"),
    ));
    hostile.push((
        "wipe_pauses",
        format!("{SQL_INGEST}delete_sql: \"DELETE FROM sandstack_paused\"\n"),
    ));
    hostile.push((
        "wipe_all",
        format!("{SQL_INGEST}delete_sql: \"DELETE FROM metrics\"\n"),
    ));
    let f = folder(&hostile);
    seed(&f, &mut store);
    let before = world(&store);
    let models = tempfile::tempdir().expect("tmp");
    for (name, _) in writes() {
        let spec = f.spec(name, &[]);
        // A write to the metrics table changes the scratch copy only, so
        // the ingest stores its one row of its own; the run history and
        // the pauses do not exist where its SQL runs.
        match run_ingest(&spec, &mut store, &[]) {
            Ok(report) => assert_eq!(report.stored, 1, "{name}"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("does not exist") && e.contains("sees one table, metrics"),
                    "{name}: {e}"
                );
                assert!(
                    name == "cte_unpause" || name == "cte_history",
                    "{name}: {e}"
                );
            }
        }
        let _ = sandstack::jobs::train::run(&spec, &store, models.path(), &Default::default());
    }
    for name in ["wipe_runs", "wipe_pauses"] {
        let spec = f.spec(name, &[]);
        run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
        let err = sandstack::jobs::maintenance::delete(&spec, &mut store)
            .expect_err("no such table where it runs")
            .to_string();
        assert!(err.contains("does not exist"), "{name}: {err}");
        assert!(err.contains("sees one table, metrics"), "{name}: {err}");
    }
    // `DELETE FROM metrics` removes exactly the batch's own rows, in its
    // own table (another table_key), or in the shared one.
    let own = f.spec("own_table", &[]);
    run_ingest(&own, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let err = sandstack::jobs::maintenance::delete(&own, &mut store)
        .expect_err("its SQL sees only its own table, `mine`")
        .to_string();
    assert!(err.contains("sees one table, mine"), "{err}");
    let wipe = f.spec("wipe_all", &[]);
    run_ingest(&wipe, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sandstack::jobs::maintenance::delete(&wipe, &mut store).expect("own rows"),
        1
    );

    let after = world(&store);
    assert_eq!(after.runs, before.runs, "the run history");
    assert_eq!(after.paused, before.paused, "the pauses");
    let victims = |w: &World| -> Vec<String> {
        w.rows
            .iter()
            .filter(|r| r.contains("|victim|"))
            .cloned()
            .collect()
    };
    assert_eq!(victims(&after), victims(&before), "the victim's rows");
    let others: Vec<&String> = after
        .rows
        .iter()
        .filter(|r| !r.contains("|victim|"))
        .collect();
    assert!(
        others.iter().all(|r| r.ends_with("|m|metric|1.0|NULL")),
        "only the hostile batches' own ingested rows: {others:?}"
    );
}

/// Sandstack's refusal of SQL over the memory cap (not the engine's own
/// words, which would mean the cap was not the one that held).
const OVER_MEMORY: &str = "it needs more memory than a batch's SQL may use (";

#[test]
fn on_duckdb_a_batchs_sql_changes_nothing_but_its_own_rows() {
    nothing_but_own_rows_change(Store::in_memory().expect("store"));
}

#[test]
fn on_postgresql_a_batchs_sql_changes_nothing_but_its_own_rows() {
    let c = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    nothing_but_own_rows_change(Store::from_backend(Box::new(
        PgStore::open(&c.url).expect("open"),
    )));
}

fn rows_seen(store: &Store, spec: &BatchSpec, sql: &str) -> Result<Vec<String>, String> {
    store
        .query_batch_sql(
            &spec.table_key,
            &spec.metric_batch,
            sql,
            ResultCaps::TEMPLATE,
        )
        .map(|b| texts(&b))
        .map_err(|e| e.to_string())
}

/// Reads: other batches' rows, the run history, the engine's settings.
fn reads_reach_only_its_own_rows(mut store: Store) {
    let f = folder(&[("reader", SQL_INGEST.to_string())]);
    seed(&f, &mut store);
    let reader = f.spec("reader", &[]);
    run_ingest(&reader, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let seen =
        rows_seen(&store, &reader, "SELECT DISTINCT metric_batch FROM metrics").expect("own");
    assert_eq!(seen, vec!["reader"]);
    assert!(rows_seen(
        &store,
        &reader,
        "SELECT * FROM metrics WHERE metric_batch = 'victim'"
    )
    .expect("runs")
    .is_empty());
    assert!(rows_seen(
        &store,
        &reader,
        "SELECT * FROM query_table('metrics') WHERE metric_batch <> 'reader'"
    )
    .expect("runs")
    .is_empty());
    for sql in [
        "SELECT * FROM sandstack_runs",
        "SELECT * FROM sandstack_paused",
        "SELECT * FROM main.sandstack_runs",
        "SELECT * FROM query_table('sandstack_runs')",
    ] {
        let e = rows_seen(&store, &reader, sql).expect_err(sql);
        assert!(e.contains("does not exist"), "{sql}: {e}");
    }
    // The settings name no host path: not the database, the home folder
    // or the working directory.
    let settings =
        rows_seen(&store, &reader, "SELECT name, value FROM duckdb_settings()").expect("settings");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cwd = std::env::current_dir().expect("cwd").display().to_string();
    for s in &settings {
        assert!(!s.contains(&home) || home == "/", "{s}");
        assert!(!s.contains(&cwd) || cwd == "/", "{s}");
        assert!(!s.contains(".duckdb|") && !s.contains("postgres"), "{s}");
    }
    let dbs = rows_seen(
        &store,
        &reader,
        "SELECT database_name, path FROM duckdb_databases()",
    )
    .expect("databases");
    assert!(dbs.iter().all(|d| d.ends_with("|NULL")), "{dbs:?}");
}

#[test]
fn on_duckdb_a_batchs_sql_reads_only_its_own_rows() {
    reads_reach_only_its_own_rows(Store::in_memory().expect("store"));
}

#[test]
fn on_postgresql_a_batchs_sql_reads_only_its_own_rows() {
    let c = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    reads_reach_only_its_own_rows(Store::from_backend(Box::new(
        PgStore::open(&c.url).expect("open"),
    )));
}

#[test]
fn an_operator_may_let_a_batchs_sql_read_the_other_batches_rows_and_no_more() {
    let mut store = Store::in_memory().expect("store").with_confined_settings(
        sandstack::store::ConfinedSettings {
            reads_other_batches: true,
            ..Default::default()
        },
    );
    let f = folder(&[("reader", SQL_INGEST.to_string())]);
    seed(&f, &mut store);
    let reader = f.spec("reader", &[]);
    run_ingest(&reader, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let seen = rows_seen(
        &store,
        &reader,
        "SELECT DISTINCT metric_batch FROM metrics ORDER BY 1",
    )
    .expect("all");
    assert_eq!(seen, vec!["reader", "victim"]);
    assert!(rows_seen(&store, &reader, "SELECT * FROM sandstack_runs").is_err());
    // Its delete_sql still removes only its own rows.
    let removed = store
        .delete_batch_sql(&key("metrics"), "reader", "DELETE FROM metrics")
        .expect("delete");
    assert_eq!(removed, 1);
    assert_eq!(
        store.count_rows(&key("metrics")).expect("count"),
        1,
        "the victim's row"
    );
}

/// The engine's memory holds for what it allocates outside its buffer
/// manager, a result is cut off at its cap as it streams, and nothing
/// spills to disk.
#[test]
fn a_batchs_sql_is_held_to_the_operators_memory_and_result_caps() {
    let store = Store::in_memory().expect("store").with_confined_settings(
        sandstack::store::ConfinedSettings {
            memory_mb: 256,
            ..Default::default()
        },
    );
    let f = folder(&[]);
    let spec = f.spec("victim", &[]);
    let t = Instant::now();
    let e = rows_seen(
        &store,
        &spec,
        "SELECT len(list_sort(range((2^27)::BIGINT))) AS n",
    )
    .expect_err("a list of 2^27 values");
    assert!(
        e.contains("more memory than a batch's SQL may use (256 MiB"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());

    let e = rows_seen(
        &store,
        &spec,
        "SELECT i FROM range(500000000) t(i) ORDER BY i DESC",
    )
    .expect_err("too large to sort in memory, and no temporary files");
    assert!(e.contains(OVER_MEMORY), "{e}");

    let t = Instant::now();
    let caps = ResultCaps {
        max_rows: Some(1000),
        max_bytes: None,
        rows_key: "ingest_max_rows",
        bytes_key: "ingest_max_result_kb",
    };
    let e = store
        .query_batch_sql(
            &key("metrics"),
            "victim",
            "SELECT now() AS metric_timestamp, 'm' || i AS metric_name, i AS metric_value FROM range(60000000) t(i)",
            caps,
        )
        .expect_err("60 million rows")
        .to_string();
    assert_eq!(
        e,
        "its result has more than 1000 rows (ingest_max_rows); return fewer rows"
    );
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stopped as it streamed: {:?}",
        t.elapsed()
    );
}

/// Other ways out, beyond the issue's examples: host files by every reader
/// DuckDB has, statements run through `query()`, results and values built
/// to exhaust the process that reads them.
#[test]
fn no_other_way_out_of_the_scratch_database() {
    let mut store = Store::in_memory().expect("store").with_confined_settings(
        sandstack::store::ConfinedSettings {
            memory_mb: 256,
            ..Default::default()
        },
    );
    let f = folder(&[("probe", SQL_INGEST.to_string())]);
    seed(&f, &mut store);
    let probe = f.spec("probe", &[]);
    run_ingest(&probe, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let before = world(&store);
    for sql in [
        "SELECT * FROM read_text('/proc/self/environ')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM read_parquet('/tmp/x.parquet')",
        "SELECT * FROM read_json_auto('/etc/os-release')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM glob('/*')",
    ] {
        let e = rows_seen(&store, &probe, sql).expect_err(sql);
        assert!(
            e.contains("disabled by configuration")
                || e.contains("does not exist")
                || e.contains("is not in the catalog"),
            "{sql}: {e}"
        );
    }
    // A statement run by query() runs where the query does.
    let ran = rows_seen(
        &store,
        &probe,
        "SELECT count(*) AS n FROM query('SELECT * FROM metrics')",
    )
    .expect("query() reads the scratch table");
    assert_eq!(ran, vec!["1"]);
    for sql in [
        "SELECT * FROM query('DELETE FROM metrics RETURNING *')",
        "SELECT * FROM query('INSERT INTO sandstack_paused VALUES (''x'')')",
    ] {
        let _ = rows_seen(&store, &probe, sql);
    }
    // Values and results built to exhaust memory end in a refusal.
    for sql in [
        "SELECT length(repeat('x', 2000000000)) AS n",
        "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r WHERE length(s) < 4000000000) \
         SELECT max(length(s)) AS n FROM r",
    ] {
        let e = rows_seen(&store, &probe, sql).expect_err(sql);
        assert!(e.contains(OVER_MEMORY), "{sql}: {e}");
    }
    let t = Instant::now();
    let e = rows_seen(
        &store,
        &probe,
        "SELECT repeat('x', 1000000) AS metric_name FROM range(1000)",
    )
    .expect_err("a gigabyte of result");
    // Whichever of sandstack's two caps it meets first as it streams.
    assert!(
        e.contains("its result is larger than 262144 KiB") || e.contains(OVER_MEMORY),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert_eq!(world(&store), before, "nothing changed");
}

/// The dashboard's SQL runs within the batch's job_timeout_s, as a job's
/// does: a page cannot hold a helper longer.
#[test]
fn a_dashboard_query_is_stopped_at_the_batchs_job_timeout() {
    let f = Folder::with_defaults();
    f.write(
        "slow/slow.yaml",
        &format!(
            "metric_batch: slow\n{SQL_INGEST}job_timeout_s: 1\ndashboard_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, \
             count(*) AS metric_value FROM range(1000000000000)\"\n"
        ),
    );
    let spec = f.spec("slow", &[]);
    let mut store = Store::in_memory().expect("store");
    let t = Instant::now();
    let e = sandstack::web::data::chart_series(&spec, &mut store, Window::LastPoints(100), 0)
        .expect_err("stopped");
    assert_eq!(
        e,
        "batch slow: dashboard_sql ran past job_timeout_s=1 and was stopped"
    );
    crate::support::assert_stopped_in_time(t, Duration::from_secs(1), "dashboard_sql");
}

/// A metrics table is the batch's to name, within bounds: not one of
/// sandstack's own tables, and whatever its case or schema, its SQL sees
/// the rows it stored.
#[test]
fn a_table_key_cannot_claim_sandstacks_tables_and_any_case_or_schema_reads_its_rows() {
    let f = Folder::with_defaults();
    for (name, key) in [
        ("runs", "sandstack_runs"),
        ("pauses", "main.sandstack_paused"),
    ] {
        f.write(
            &format!("{name}/{name}.yaml"),
            &format!("metric_batch: {name}\n{SQL_INGEST}table_key: {key}\n"),
        );
    }
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors
        .iter()
        .all(|e| e.contains("key `table_key`") && e.contains("is reserved")));

    let mut store = Store::in_memory().expect("store");
    for (name, key) in [("upper", "METRICS"), ("schema", "main.metrics")] {
        let g = Folder::with_defaults();
        g.write(
            &format!("{name}/{name}.yaml"),
            &format!("metric_batch: {name}\n{SQL_INGEST}table_key: {key}\n"),
        );
        let spec = g.spec(name, &[]);
        run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seen = rows_seen(&store, &spec, &format!("SELECT count(*) FROM {key}")).expect(name);
        assert_eq!(seen, vec!["1"], "{name}");
        assert_eq!(
            store
                .delete_batch_sql(&spec.table_key, name, &format!("DELETE FROM {key}"))
                .expect(name),
            1,
            "{name}"
        );
    }
}

/// An error echoes what a batch wrote; it is cut before it reaches the
/// run history or a log.
#[test]
fn an_error_made_of_the_batchs_text_is_cut() {
    let f = Folder::with_defaults();
    f.write(
        "loud/loud.yaml",
        "metric_batch: loud\ningest_sql: \"SELECT error((SELECT string_agg(md5(i::VARCHAR), '') FROM range(300000) t(i)))\"\n",
    );
    let spec = f.spec("loud", &[]);
    let mut store = Store::in_memory().expect("store");
    let e = run_ingest(&spec, &mut store, &[])
        .expect_err("error()")
        .to_string();
    assert!(e.len() < 17 << 10, "{} bytes", e.len());
    assert!(e.contains("more bytes cut)"), "{}", &e[e.len() - 200..]);
    store.ensure_runs_table().expect("runs");
    let id = store
        .record_run(&RunRecord {
            run_id: 0,
            batch: "loud".into(),
            job: "ingest".into(),
            scheduled_us: 1,
            started_us: 1,
            ended_us: 2,
            status: RunStatus::Failed,
            error: Some("x".repeat(10 << 20)),
            rows: 0,
            fuel: 0,
            wall_ms: 1.0,
            cassette: None,
            log: None,
            attempt: 1,
            worker: None,
        })
        .expect("record");
    let stored = store.run_by_id(id).expect("read").expect("run");
    assert!(
        stored.error.expect("error").len() < 17 << 10,
        "the history keeps at most 16 KiB of an error"
    );
}

/// A result's size is what the helper sends, counted before a frame is
/// read: a 1 MiB value fits a 4 MiB cap, and 8 MiB of values do not,
/// refused at the cap.
#[test]
fn a_result_is_measured_as_sent_and_refused_before_it_is_read() {
    let f = Folder::with_defaults();
    let one = "SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value, repeat('x', 1048576) AS metadata";
    let eight = "SELECT now() AS metric_timestamp, 'm' || i AS metric_name, i AS metric_value, repeat('x', 1048576) AS metadata FROM range(8) t(i)";
    f.write(
        "one/one.yaml",
        &format!("metric_batch: one\ningest_sql: \"{one}\"\ningest_max_result_kb: 4096\n"),
    );
    f.write(
        "eight/eight.yaml",
        &format!("metric_batch: eight\ningest_sql: \"{eight}\"\ningest_max_result_kb: 4096\n"),
    );
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&f.spec("one", &[]), &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.stored, 1);
    let e = run_ingest(&f.spec("eight", &[]), &mut store, &[])
        .expect_err("8 MiB")
        .to_string();
    assert!(
        e.ends_with("its result is larger than 4096 KiB (the limit of ingest_max_result_kb); return fewer or smaller rows"),
        "{e}"
    );
}

/// A template's result becomes a series per metric in sandstack's own
/// process: their number is bounded (a job's 10,000, a page's 1,000), and
/// only so many helpers run at once, however many pages are asked for.
#[test]
fn results_of_countless_metrics_are_refused_and_helpers_run_a_few_at_a_time() {
    let f = Folder::with_defaults();
    f.write(
        "wide/wide.yaml",
        &format!(
            "metric_batch: wide\n{SQL_INGEST}dashboard_sql: \"SELECT now() AS metric_timestamp, 'm' || i AS metric_name, \
             1 AS metric_value FROM range(2000) t(i)\"\ntrain_sql: \"SELECT now() AS metric_timestamp, 'm' || i AS \
             metric_name, 1 AS metric_value FROM range(20000) t(i)\"\n"
        ),
    );
    let spec = f.spec("wide", &[]);
    let mut store = Store::in_memory().expect("store");
    let e = sandstack::web::data::chart_series(&spec, &mut store, Window::LastPoints(100), 0)
        .expect_err("2000 charts");
    assert_eq!(
        e,
        "batch wide: dashboard SQL returned more than 1000 metrics; a batch's job reads at most 1000"
    );
    let models = tempfile::tempdir().expect("tmp");
    let e = sandstack::jobs::train::run(&spec, &store, models.path(), &Default::default())
        .expect_err("20000 metrics")
        .to_string();
    assert!(
        e.contains("train SQL returned more than 10000 metrics"),
        "{e}"
    );

    // Six queries at once with two slots: they all finish, and at most two
    // helpers run at any moment.
    // A memory limit no other test uses tells these helpers apart.
    let store = Store::in_memory().expect("store").with_confined_settings(
        sandstack::store::ConfinedSettings {
            max_helpers: 2,
            memory_mb: 777,
            ..Default::default()
        },
    );
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let n = helpers_running();
                peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let workers: Vec<_> = (0..6)
            .map(|_| {
                let st = store.try_clone().expect("clone");
                s.spawn(move || {
                    st.query_batch_sql(
                        &key("metrics"),
                        "wide",
                        "SELECT count(*) AS n FROM range(300000000)",
                        ResultCaps::TEMPLATE,
                    )
                    .expect("runs")
                })
            })
            .collect();
        for w in workers {
            w.join().expect("join");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(peak, 2, "helpers at once");
}

/// This process's SQL helpers with a 777 MiB memory limit (their data
/// limit is 777 + 256 MiB).
fn helpers_running() -> usize {
    let me = std::process::id().to_string();
    let data_limit = ((777u64 + 256) << 20).to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let limits = std::fs::read_to_string(e.path().join("limits")).unwrap_or_default();
            let ppid = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1))
                .unwrap_or("");
            ppid == me
                && limits.lines().any(|l| {
                    l.starts_with("Max data size")
                        && l.split_whitespace().nth(3) == Some(&data_limit)
                })
        })
        .count()
}

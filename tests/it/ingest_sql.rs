//! `ingest_sql` batches: stored through the same validation as Python
//! results, in one transaction.

use std::process::Command;

use sandstack::store::Store;

use crate::support::{key, repo, run_ingest, Folder};

fn count(store: &Store, table: &str) -> u64 {
    store.count_rows(&key(table)).expect("count")
}

#[test]
fn the_shipped_sql_example_stores_rows_that_duckdb_reads_back() {
    let folder = sandstack::config::load(&repo().join("metrics"), &Default::default());
    let spec = folder.batch("example_sql").expect("example_sql").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("t.duckdb");
    {
        let mut store = Store::open(&db).expect("open");
        let r = run_ingest(&spec, &mut store, &[]).expect("ingest");
        assert_eq!(r.stored, 3);
        run_ingest(&spec, &mut store, &[]).expect("second ingest");
        assert_eq!(
            count(&store, "metrics"),
            6,
            "running twice stores twice as many"
        );
    }
    // A separate connection to the file sees the committed rows.
    let conn = duckdb::Connection::open(&db).expect("reopen");
    let (n, batches, types, names): (i64, i64, String, String) = conn
        .query_row(
            "select count(*), count(distinct metric_batch), string_agg(distinct metric_type, ','), \
             string_agg(distinct metric_name, ',' order by metric_name) from metrics",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("query");
    assert_eq!((n, batches, types.as_str()), (6, 1, "metric"));
    assert_eq!(names, "sql_count,sql_noise,sql_sine");
}

#[test]
fn time_zone_sql_ingests_as_anomstack_users_write_it() {
    let f = Folder::with_defaults();
    f.write(
        "tz.yaml",
        "metric_batch: tz\n\
         ingest_sql: >\n  \
         select date_trunc('day', get_current_timestamp()) as metric_timestamp, 'day_start' as metric_name, 1.0 as metric_value\n  \
         union all\n  \
         select current_timestamp - interval '1' hour, 'an_hour_ago', \
         extract(hour from (timestamptz '2026-06-01 12:00:00+00' at time zone 'Europe/Paris'))\n",
    );
    let spec = f.spec("tz", &[]);
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.stored, 2);
    let paris_hour: f64 = crate::support::duck(&store)
        .query_row(
            "select metric_value from metrics where metric_name = 'an_hour_ago'",
            [],
            |row| row.get(0),
        )
        .expect("row");
    assert_eq!(paris_hour, 14.0, "12:00 UTC is 14:00 in Paris in June");
}

#[test]
fn a_failing_sql_leaves_the_table_unchanged() {
    let f = Folder::with_defaults();
    f.write("b.yaml", "metric_batch: b\ningest_sql: \"select now() as metric_timestamp, 'm' as metric_name, 1.5 as metric_value\"\n");
    let mut store = Store::in_memory().expect("store");
    run_ingest(&f.spec("b", &[]), &mut store, &[]).expect("first ingest");
    assert_eq!(count(&store, "metrics"), 1);

    f.write(
        "b.yaml",
        "metric_batch: b\ningest_sql: \"select * from no_such_table\"\n",
    );
    let err = run_ingest(&f.spec("b", &[]), &mut store, &[]).expect_err("must fail");
    assert!(
        err.to_string().starts_with("batch b: ingest_sql failed: Catalog Error: Table with name no_such_table does not exist"),
        "{err}"
    );
    assert_eq!(count(&store, "metrics"), 1);

    f.write("b.yaml", "metric_batch: b\ningest_sql: \"select now() as metric_timestamp, 'm' as metric_name, 'abc' as metric_value\"\n");
    let err = run_ingest(&f.spec("b", &[]), &mut store, &[]).expect_err("must fail");
    assert_eq!(
        err.to_string(),
        "batch b: metric_value must be numeric: row 0 (metric `m`) has \"abc\""
    );
    assert_eq!(count(&store, "metrics"), 1);
}

#[test]
fn rounding_nan_dropping_and_zero_rows() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        "metric_batch: b\ningest_metric_rounding: 2\ningest_sql: >\n  select now() as metric_timestamp, n as metric_name, v as metric_value\n  from (values ('a', 1.23456), ('b', 'nan'::double)) t(n, v)\n",
    );
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&f.spec("b", &[]), &mut store, &[]).expect("ingest");
    assert_eq!((r.stored, r.dropped_nan), (1, 1));
    let v: f64 = crate::support::duck(&store)
        .query_row("select metric_value from metrics", [], |r| r.get(0))
        .expect("value");
    assert_eq!(v, 1.23);

    f.write("b.yaml", "metric_batch: b\ningest_sql: \"select now() as metric_timestamp, 'm' as metric_name, 1.0 as metric_value where false\"\n");
    let err = run_ingest(&f.spec("b", &[]), &mut store, &[]).expect_err("zero rows");
    assert_eq!(
        err.to_string(),
        "batch b: ingest returned no rows: return at least one row with metric_name, metric_value and metric_timestamp"
    );
}

fn sandstack(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(args)
        .env_remove("SANDSTACK_METRICS")
        .env_remove("SANDSTACK_DB")
        .output()
        .expect("run sandstack")
}

#[test]
fn cli_validate_lists_every_batch_and_exits_1_on_errors() {
    let metrics = repo().join("metrics");
    let out = sandstack(&["validate", "--metrics", metrics.to_str().expect("utf8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["example_random", "example_sql", "hn_top_stories_scores"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name} missing from:\n{stdout}"
        );
    }
    assert!(stdout.contains("ingest \"45 6 * * *\" STOPPED"), "{stdout}");

    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        "metric_batch: b\ningest_sql: x\nalert_threshold: high\n",
    )
    .write("c.yaml", "ingest_sql: x\n");
    let out = sandstack(&["validate", "--metrics", f.path().to_str().expect("utf8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("key `alert_threshold`: expected a number"),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing required key `metric_batch`"),
        "{stderr}"
    );
    assert!(stderr.contains("2 errors in"), "{stderr}");
}

#[test]
fn cli_ingest_stores_and_dry_run_does_not() {
    let metrics = repo().join("metrics");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("cli.duckdb");
    let (m, d) = (metrics.to_str().expect("utf8"), db.to_str().expect("utf8"));
    let out = sandstack(&[
        "ingest",
        "example_sql",
        "--metrics",
        m,
        "--db",
        d,
        "--dry-run",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("batch example_sql: would store 3 rows"));
    assert!(!db.exists(), "a dry run must not create the database");
    let out = sandstack(&["ingest", "example_sql", "--metrics", m, "--db", d]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("batch example_sql: stored 3 rows in metrics"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sql_sine"),
        "the rows are printed:\n{stdout}"
    );
    assert_eq!(
        Store::open(&db)
            .expect("open")
            .count_rows(&key("metrics"))
            .expect("count"),
        3
    );
    let out = sandstack(&["ingest", "nope", "--metrics", m, "--db", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no batch named `nope`"));
}

/// Anomstack's `example_simple` ingest, as written there: SQLite's
/// `DATETIME('now')`, which DuckDB lacks, reads the run's clock (the real
/// one, or a backfill's) as a UTC timestamp.
#[test]
fn sqlite_datetime_now_ingests_at_the_runs_clock() {
    let f = Folder::with_defaults();
    f.write(
        "simple.yaml",
        "metric_batch: simple\n\
         ingest_sql: >\n  \
         WITH metric_1 AS (SELECT DATETIME('now') AS metric_timestamp, 'metric_1' AS metric_name, \
         RANDOM() / 9223372036854775807.0 AS metric_value),\n  \
         metric_2 AS (SELECT datetime('2026-03-01 10:00:00') AS metric_timestamp, 'metric_2' AS metric_name, \
         2.0 AS metric_value)\n  \
         SELECT metric_timestamp, metric_name, metric_value FROM (SELECT * FROM metric_1 UNION ALL SELECT * FROM metric_2);\n",
    );
    let spec = f.spec("simple", &[]);
    let mut store = Store::in_memory().expect("store");
    let before = chrono::Utc::now().timestamp_micros();
    let r = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.stored, 2);
    let stamps = |store: &Store| -> Vec<i64> {
        let conn = crate::support::duck(store);
        let mut q = conn
            .prepare("SELECT epoch_us(metric_timestamp) FROM metrics WHERE metric_name = 'metric_1' ORDER BY 1")
            .expect("prepare");
        q.query_map([], |row| row.get(0))
            .expect("query")
            .map(|v| v.expect("row"))
            .collect()
    };
    let now = stamps(&store)[0];
    assert!(
        (before - 1_000_000..=chrono::Utc::now().timestamp_micros()).contains(&now),
        "DATETIME('now') is the run's time in UTC: {now} vs {before}"
    );
    let other: i64 = crate::support::duck(&store)
        .query_row(
            "SELECT epoch_us(metric_timestamp) FROM metrics WHERE metric_name = 'metric_2'",
            [],
            |row| row.get(0),
        )
        .expect("metric_2");
    assert_eq!(other, 1_772_359_200_000_000, "2026-03-01 10:00:00 UTC");
    // A backfill's clock.
    let at = 1_700_000_000_000_000;
    store.set_clock(Some(at));
    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(stamps(&store).contains(&at), "{:?}", stamps(&store));
}

/// `ANOMSTACK_DUCKDB_PATH=md:...` (a MotherDuck database, which Anomstack
/// reaches through DuckDB's extension) is refused saying why and what to
/// use, where DuckDB's own error spoke of extensions and of another
/// process holding the file; nothing is created in the working directory.
#[test]
fn a_motherduck_database_is_refused_with_the_reason() {
    let metrics = repo().join("metrics");
    let dir = tempfile::tempdir().expect("tempdir");
    for db in ["md:my_db", "MotherDuck:my_db?motherduck_token=t0ken"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sandstack"))
            .args(["ingest", "example_sql", "--metrics"])
            .arg(&metrics)
            .env_remove("SANDSTACK_DB")
            .env("ANOMSTACK_DUCKDB_PATH", db)
            .current_dir(dir.path())
            .output()
            .expect("run sandstack");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{db}: {err}");
        assert!(
            err.contains("names a MotherDuck database") && err.contains("--db postgres://"),
            "{db}: {err}"
        );
        assert!(!err.contains("another process"), "{db}: {err}");
        assert!(!err.contains("t0ken"), "the token is never said: {err}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(left.is_empty(), "{left:?}");
}

//! `sandstack backtest`: the replay equals what the scheduler's path
//! stores for the same rows and schedule, and the command's inputs
//! (labels, overrides, ranges) are refused with clear errors when wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use sandstack::config::{BatchSpec, Job};
use sandstack::domain::MetricType;
use sandstack::pipeline::backtest::schedule::Schedule;
use sandstack::pipeline::backtest::{self, Replayed};
use sandstack::pipeline::{dispatch, JobContext, RunMode};
use sandstack::store::{metrics_schema, Store};

use crate::support::{run_sandstack, Folder};

const MIN: i64 = 60_000_000;
/// 2024-01-01 00:00 UTC.
const T0: i64 = 1_704_067_200_000_000;

/// Two metrics every 5 minutes for 9 hours: noise, spikes, a level shift,
/// and values past a threshold bound.
fn history() -> Vec<(i64, &'static str, f64)> {
    let mut rows = Vec::new();
    for i in 0..108i64 {
        let t = T0 + i * 5 * MIN;
        let noise = ((i * 37) % 11) as f64 * 0.1;
        let cpu = match i {
            40 | 41 | 75 | 99 => 40.0 + noise,
            _ => 10.0 + noise,
        };
        let latency = if i < 80 {
            100.0 + noise * 3.0
        } else {
            160.0 + noise * 3.0
        };
        rows.push((t, "cpu", cpu));
        rows.push((t, "latency", latency));
    }
    rows
}

fn batch() -> (Folder, BatchSpec) {
    let f = Folder::with_defaults();
    f.write(
        "b/ops.yaml",
        "metric_batch: ops\n\
         ingest_sql: SELECT 1\n\
         ingest_cron_schedule: '*/5 * * * *'\n\
         train_cron_schedule: '0 * * * *'\n\
         score_cron_schedule: '*/10 * * * *'\n\
         alert_cron_schedule: '*/10 * * * *'\n\
         change_cron_schedule: '5-55/10 * * * *'\n\
         alert_smooth_n: 2\n\
         alert_threshold: 0.7\n\
         change_detect_last_n: 2\n\
         tholdalert_thresholds:\n  cpu: {upper: 35}\n",
    );
    let spec = f.spec("ops", &[]);
    (f, spec)
}

fn append(store: &mut Store, spec: &BatchSpec, rows: &[(i64, &'static str, f64)]) {
    if rows.is_empty() {
        return;
    }
    let n = rows.len();
    let b = RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.0),
            )),
            Arc::new(StringArray::from(vec![spec.metric_batch.as_str(); n])),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from(vec!["metric"; n])),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
        ],
    )
    .expect("rows");
    store.append_metrics(&spec.table_key, &[b]).expect("append");
}

/// What the store holds of `kind`: per metric, timestamp and value.
fn stored(
    store: &Store,
    spec: &BatchSpec,
    kind: MetricType,
) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for (metric, t, value, _) in stored_rows(store, spec, kind) {
        out.entry(metric).or_default().insert(t, value);
    }
    out
}

/// Every stored row of `kind`: metric, timestamp, value, metadata.
fn stored_rows(
    store: &Store,
    spec: &BatchSpec,
    kind: MetricType,
) -> Vec<(String, i64, f64, Option<String>)> {
    let mut out = Vec::new();
    for b in store
        .read_rows(&spec.table_key, Some(&spec.metric_batch))
        .expect("rows")
    {
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let names = b.column(2).as_string::<i32>();
        let types = b.column(3).as_string::<i32>();
        let values = b.column(4).as_primitive::<Float64Type>();
        let meta = b.column(5).as_string::<i32>();
        for r in 0..b.num_rows() {
            if types.value(r) == kind.as_str() && !values.is_null(r) {
                let m = (!meta.is_null(r)).then(|| meta.value(r).to_string());
                out.push((names.value(r).to_string(), ts.value(r), values.value(r), m));
            }
        }
    }
    out
}

fn times(js: &[sandstack::domain::Judgement]) -> BTreeSet<i64> {
    js.iter().map(|j| j.timestamp_us).collect()
}

/// Run the scheduler's path over `rows` (arriving every `step` from T0),
/// then the backtest, and compare every score, alert, threshold alert and
/// change; returns how many of each were compared.
fn scheduler_vs_backtest(
    spec: &BatchSpec,
    rows: &[(i64, &'static str, f64)],
    step: i64,
) -> [usize; 4] {
    let spec = spec.clone();
    let dir = tempfile::tempdir().expect("dir");
    let mut store = Store::open(&dir.path().join("db.duckdb")).expect("store");
    store.ensure_metrics_table(&spec.table_key).expect("table");
    let env = BTreeMap::new();
    let ctx = JobContext {
        model_base: dir.path(),
        plot_dir: dir.path(),
        channels: None,
        env: &env,
        sandboxes: &sandstack::jobs::ingest::DefaultSandbox,
        peers: &[],
        mode: RunMode::default(),
    };
    let schedule = Schedule::of(&spec);
    let last = rows.iter().map(|r| r.0).max().expect("rows");
    // The scheduler's path: at every `step`, the rows that arrived,
    // then each job due at that instant through the pipeline, on the clock
    // of the tick, in the order the backtest runs them.
    let mut tick = T0;
    let mut ran = 0;
    while tick <= last + 2 * step {
        let arrived: Vec<_> = rows
            .iter()
            .filter(|r| r.0 <= tick && r.0 > tick - step)
            .copied()
            .collect();
        append(&mut store, &spec, &arrived);
        if !arrived.is_empty() {
            // What a live ingest does as it stores them.
            sandstack::jobs::alert::threshold_run(&spec, &mut store).expect("thresholds");
        }
        for job in [Job::Train, Job::Score, Job::Alert, Job::Change] {
            if schedule.next(job, tick) == Some(tick) {
                dispatch::run(&spec, &mut store, job, &ctx.at(tick)).expect("job");
                ran += 1;
            }
        }
        tick += step;
    }

    let history = backtest::load_history(&spec, &store, None, None, usize::MAX).expect("history");
    let replayed: BTreeMap<String, Replayed> =
        backtest::run(&spec, &history, &|_| ()).expect("replay");

    let scores = stored(&store, &spec, MetricType::Score);
    let alerts = stored(&store, &spec, MetricType::Alert);
    let held = stored(&store, &spec, MetricType::ThresholdAlert);
    let changes = stored(&store, &spec, MetricType::Change);
    let keys = |m: &BTreeMap<String, BTreeMap<i64, f64>>, metric: &str| {
        m.get(metric)
            .map(|x| x.keys().copied().collect())
            .unwrap_or_default()
    };
    let mut totals = [0usize; 4];
    for (metric, r) in &replayed {
        let mine: BTreeMap<i64, f64> = r
            .timestamps_us
            .iter()
            .zip(&r.score)
            .filter(|(_, s)| !s.is_nan())
            .map(|(t, s)| (*t, *s))
            .collect();
        assert_eq!(
            Some(&mine),
            scores.get(metric),
            "{metric}: every score, bit for bit"
        );
        assert_eq!(times(&r.alerts), keys(&alerts, metric), "{metric}: alerts");
        assert_eq!(
            times(&r.threshold_alerts),
            keys(&held, metric),
            "{metric}: threshold alerts"
        );
        assert_eq!(
            times(&r.changes),
            keys(&changes, metric),
            "{metric}: changes"
        );
        totals[0] += mine.len();
        totals[1] += r.alerts.len();
        totals[2] += r.threshold_alerts.len();
        totals[3] += r.changes.len();
    }
    // The alerts say the same: value, scores, threshold and driver.
    for (metric, t, _, meta) in stored_rows(&store, &spec, MetricType::Alert) {
        let mine = replayed[&metric]
            .alerts
            .iter()
            .find(|j| j.timestamp_us == t)
            .expect("alert");
        let theirs: serde_json::Value =
            serde_json::from_str(&meta.expect("metadata")).expect("json");
        assert_eq!(mine.metadata.as_ref(), Some(&theirs), "{metric} at {t}");
    }
    eprintln!(
        "compared {} scores, {} alerts, {} threshold alerts, {} changes over {ran} job runs",
        totals[0], totals[1], totals[2], totals[3]
    );
    totals
}

#[test]
fn the_backtest_equals_what_the_scheduler_stores_for_the_same_rows_and_ticks() {
    let (_folder, spec) = batch();
    let totals = scheduler_vs_backtest(&spec, &history(), 5 * MIN);
    // Otherwise the comparison proves little.
    assert!(
        totals.iter().all(|n| *n > 0),
        "scores, alerts, threshold alerts, changes: {totals:?}"
    );
}

#[test]
fn the_backtest_follows_day_windows_that_move_with_the_clock_across_a_gap() {
    // Hourly rows, then nothing for a day and a half: the one-day windows
    // of train, alert and change lose rows as the clock moves on alone.
    let f = Folder::with_defaults();
    f.write(
        "b/gap.yaml",
        "metric_batch: gap\n\
         ingest_sql: SELECT 1\n\
         ingest_cron_schedule: '0 * * * *'\n\
         train_cron_schedule: '0 */3 * * *'\n\
         score_cron_schedule: '0 * * * *'\n\
         alert_cron_schedule: '0 * * * *'\n\
         change_cron_schedule: '30 * * * *'\n\
         train_metric_timestamp_max_days_ago: 1\n\
         alert_metric_timestamp_max_days_ago: 1\n\
         change_metric_timestamp_max_days_ago: 1\n\
         train_min_n: 10\n\
         alert_threshold: 0.6\n\
         alert_smooth_n: 3\n\
         alert_snooze_n: 2\n\
         alert_max_n: 2\n\
         change_smooth_n: 2\n",
    );
    let spec = f.spec("gap", &[]);
    let hour = 60 * MIN;
    let mut rows = Vec::new();
    for i in 0..70i64 {
        if (30..66).contains(&i) {
            continue;
        }
        let noise = ((i * 37) % 11) as f64 * 0.1;
        let v = match i {
            20 | 27 | 67 => 30.0 + noise,
            _ if i >= 66 => 18.0 + noise,
            _ => 10.0 + noise,
        };
        rows.push((T0 + i * hour, "cpu", v));
    }
    let totals = scheduler_vs_backtest(&spec, &rows, 30 * MIN);
    assert!(
        totals[0] > 0 && totals[1] > 0 && totals[3] > 0,
        "{totals:?}"
    );
}

/// `sandstack import` of the history, written as a CSV, into `ops`.
fn imported() -> (Folder, tempfile::TempDir, std::path::PathBuf) {
    let (folder, _) = batch();
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("history.csv");
    let mut text = String::from("metric_timestamp,metric_name,metric_value\n");
    for (t, m, v) in history() {
        text.push_str(&format!("{},{m},{v}\n", sandstack::domain::fmt_us(t)));
    }
    std::fs::write(&csv, text).expect("csv");
    let db = dir.path().join("db.duckdb");
    let out = run_sandstack(
        &["import", "ops", csv.to_str().expect("path")],
        &folder,
        &db,
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (folder, dir, db)
}

fn backtest(folder: &Folder, db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["backtest", "ops"];
    all.extend_from_slice(args);
    let out = run_sandstack(&all, folder, db, &[]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn import_then_backtest_against_labels_writes_points_plots_and_json() {
    let (folder, dir, db) = imported();
    let labels = dir.path().join("labels.csv");
    std::fs::write(
        &labels,
        "metric_name,start,end\ncpu,2024-01-01 03:15,2024-01-01 03:40\nlatency,2024-01-01 06:35,2024-01-01 07:00\n",
    )
    .expect("labels");
    let out = dir.path().join("report");
    let l = labels.to_str().expect("path");
    let (ok, stdout, stderr) = backtest(
        &folder,
        &db,
        &["--labels", l, "--out", out.to_str().expect("path")],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("cpu: 108 observations") && stdout.contains("against the labels"),
        "{stdout}"
    );
    assert!(
        stdout.contains("window scores (0 = never alerts, 100 = perfect): standard"),
        "{stdout}"
    );
    let points = std::fs::read_to_string(out.join("points.csv")).expect("points");
    let mut lines = points.lines();
    assert_eq!(
        lines.next(),
        Some("metric_name,metric_timestamp,metric_value,score,score_smooth,alert,change")
    );
    assert_eq!(lines.count(), 216, "one row per stored observation");
    let first = points.lines().nth(1).expect("a row");
    assert!(
        first.starts_with("cpu,2024-01-01 00:00:00,10") && first.ends_with(",,,0,0"),
        "no score before the first model: {first}"
    );
    for m in ["cpu", "latency"] {
        let png = std::fs::read(out.join(format!("{m}.png"))).expect("plot");
        assert_eq!(&png[1..4], b"PNG");
    }
    // The batch's own table has no scores, alerts or models from it.
    let (ok, stdout, _) = backtest(
        &folder,
        &db,
        &[
            "--json",
            "--sweep",
            "alert_threshold=0.6,0.9",
            "--labels",
            l,
        ],
    );
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["values"]["alert_threshold"], "0.9");
    assert!(
        runs[0]["overall"]["score_standard"].is_number(),
        "{}",
        runs[0]["overall"]
    );
    let a = |r: &serde_json::Value| r["metrics"]["cpu"]["alerts"].as_array().map(Vec::len);
    assert!(
        a(&runs[0]) >= a(&runs[1]),
        "a lower threshold alerts at least as often"
    );
    let store = Store::open(&db).expect("db");
    let (_, spec) = batch();
    for kind in [MetricType::Score, MetricType::Alert, MetricType::Change] {
        assert!(
            stored(&store, &spec, kind).is_empty(),
            "{kind:?} written to the batch's table"
        );
    }
}

#[test]
fn wrong_labels_keys_ranges_and_templates_are_refused_clearly() {
    let (folder, dir, db) = imported();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("path").to_string()
    };
    let other_metric = file(
        "a.csv",
        "metric_name,start,end\nmemory,2024-01-01 01:00,2024-01-01 02:00\n",
    );
    let other_year = file(
        "b.csv",
        "metric_name,start,end\ncpu,2023-01-01 01:00,2023-01-01 02:00\n",
    );
    let points = file("c.csv", "metric_name,timestamp\ncpu,2024-01-01 03:20\n");
    let garbage = file("d.json", "{\"cpu\": 5}");
    let afile = file("e.txt", "not a folder");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--labels", &other_metric],
            "metric `memory`: the batch has no observations of it",
        ),
        (
            vec!["--labels", &other_year],
            "is outside its data (2024-01-01 00:00:00 to 2024-01-01 08:55:00)",
        ),
        (vec!["--labels", &points], "give --window"),
        (
            vec!["--labels", &garbage],
            "expected a list of [start, end] windows",
        ),
        (vec!["--labels", "/dev/zero"], "not a regular file"),
        (vec!["--window", "1h"], "give --labels FILE too"),
        (
            vec!["--labels", &points, "--window", "99999999999d"],
            "more than 100 years",
        ),
        (
            vec!["--set", "alert_treshold=0.5"],
            "did you mean alert_threshold",
        ),
        (vec!["--set", "alert_threshold=high"], "alert_threshold"),
        (
            vec!["--set", "train_sql=SELECT 1"],
            "replaces the shipped train_sql",
        ),
        (
            vec!["--set", "preprocess_params={freq: 30min}"],
            "resamples its metrics (preprocess_params.freq: 30min)",
        ),
        (
            vec!["--from", "2030-01-01"],
            "no stored observations in the range asked for",
        ),
        (vec!["--from", "soon"], "`soon` is not a time"),
        (
            vec!["--from", "2024-02-01", "--to", "2024-01-01"],
            "--from is after --to",
        ),
        (
            vec!["--max-observations", "100"],
            "more than 100 stored observations",
        ),
        (vec!["--out", &afile], "it is a file, not a folder"),
        (
            vec!["--sweep", "alert_threshold=0.6,0.7,high"],
            "with alert_threshold=high (from --set/--sweep)",
        ),
    ];
    for (args, want) in cases {
        let (ok, _, stderr) = backtest(&folder, &db, &args);
        assert!(!ok && stderr.contains(want), "{args:?}: {stderr}");
    }
    let (ok, stdout, stderr) = backtest(&folder, &db, &["--labels", &points, "--window", "30m"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("overall against the labels"), "{stdout}");
}

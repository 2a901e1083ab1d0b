//! The detection pipeline end to end on synthetic data with anomalies at
//! known times, and its edge cases (repeats, snooze, no data).

use sandstack::config::BatchSpec;
use sandstack::jobs::{alert, change, score, train};
use sandstack::store::Store;

use crate::support::{key, run_ingest, Folder};

const PERIOD_US: i64 = 600_000_000; // 10 minutes
const N: usize = 400;

/// Deterministic noise in [-1, 1).
fn noise(i: usize, salt: u64) -> f64 {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(salt.wrapping_mul(1442695040888963407));
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    (x % 2_000_000) as f64 / 1_000_000.0 - 1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Spike,
    Drop,
    LevelShift,
}

struct Synthetic {
    /// (metric, index, kind)
    events: Vec<(String, usize, Kind)>,
    start_us: i64,
    /// Every row, as a table expression for `ingest_sql` (a batch's SQL
    /// reads no table but its own).
    rows: String,
}

/// Five metrics of a wave (±10 over 12 hours) plus noise; spikes (+40) and
/// drops (to 20) after the first 200 points, and on two metrics a level
/// shift (+60, well beyond the wave's swing) 8 points before the end.
fn generate() -> Synthetic {
    let start_us = chrono::Utc::now().timestamp_micros() - N as i64 * PERIOD_US;
    let mut events = Vec::new();
    let mut sql = String::from("(VALUES ");
    for m in 0..5usize {
        let name = format!("m{m}");
        let spikes = [220 + m * 7, 290 + m * 5, 350 + m * 3];
        let drops = [250 + m * 6, 320 + m * 4];
        // Metrics 3 and 4 shift level near the end, for change detection.
        let shift = (m >= 3).then_some(N - 8);
        for (i, kind) in spikes
            .iter()
            .map(|i| (*i, Kind::Spike))
            .chain(drops.iter().map(|i| (*i, Kind::Drop)))
        {
            events.push((name.clone(), i, kind));
        }
        if let Some(s) = shift {
            events.push((name.clone(), s, Kind::LevelShift));
        }
        for i in 0..N {
            let base = 100.0
                + 10.0 * (2.0 * std::f64::consts::PI * i as f64 / 72.0).sin()
                + 1.5 * noise(i, m as u64);
            let mut v = base;
            if spikes.contains(&i) {
                v += 40.0;
            }
            if drops.contains(&i) {
                v = 20.0;
            }
            if shift.is_some_and(|s| i >= s) {
                v += 60.0;
            }
            let ts = start_us + i as i64 * PERIOD_US;
            sql.push_str(&format!("(make_timestamp({ts}), '{name}', {v}),"));
        }
    }
    sql.pop();
    sql.push_str(") t(metric_timestamp, metric_name, metric_value)");
    Synthetic {
        events,
        start_us,
        rows: sql,
    }
}

/// The batch, for tests that write its rows themselves.
fn batch(extra: &str) -> (Folder, BatchSpec) {
    batch_sql(
        "select now() as metric_timestamp, 'x' as metric_name, 1 as metric_value",
        extra,
    )
}

/// The batch, ingesting the synthetic rows that match `filter`.
fn batch_where(synth: &Synthetic, filter: &str, extra: &str) -> (Folder, BatchSpec) {
    batch_sql(
        &format!("select * from {} where {filter}", synth.rows),
        extra,
    )
}

fn batch_sql(ingest_sql: &str, extra: &str) -> (Folder, BatchSpec) {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!("metric_batch: synth\ningest_sql: \"{ingest_sql}\"\ningest_metric_rounding: 4\n{extra}\n"),
    );
    let spec = f.spec("synth", &[]);
    (f, spec)
}

fn index_of(s: &Synthetic, ts_us: i64) -> usize {
    ((ts_us - s.start_us) / PERIOD_US) as usize
}

/// What one set of detection defaults finds in the synthetic data.
struct Measured {
    recall: std::collections::BTreeMap<Kind, f64>,
    alert_precision: f64,
    change_precision: f64,
    report: String,
}

/// Anomstack's set, on which these floors were first measured: spikes
/// 13/15, drops 10/10, level shifts 2/2, alert precision 24/33, change
/// precision 2/2. Data, noise and model seeds are fixed, so a drop below a
/// floor means a change made detection worse, not bad luck.
#[test]
fn detects_injected_anomalies_with_measured_precision_and_recall() {
    let m = measure("detection_defaults: anomstack");
    assert!(m.recall[&Kind::Spike] >= 0.8, "{}", m.report);
    assert!(m.recall[&Kind::Drop] >= 0.9, "{}", m.report);
    assert!(m.recall[&Kind::LevelShift] >= 1.0, "{}", m.report);
    assert!(m.alert_precision >= 0.65, "{}", m.report);
    assert!(m.change_precision >= 1.0, "{}", m.report);
}

/// sandstack's set (chosen on the evaluation corpus, README "Tuning
/// detection"): fewer alerts, more of them right. Here, where single-point
/// events come 30 points apart and the models train once, it finds fewer
/// of them (spikes 10/15, drops 4/10 when written: `alert_threshold` 0.95
/// needs both models near certain, and `alert_snooze_n` 20 silences
/// what follows a false alert) and is wrong less (precision 15/17). The
/// change job tests against the 60 observations before (`change_baseline_n`)
/// at `change_threshold` 5: one of the two level shifts (+60 on a wave of
/// ±10, whose spread over 60 observations is wide) passes it and the other
/// does not, where Anomstack's whole-window baseline at 3.5 finds both. The floors
/// sit just under those figures.
#[test]
fn sandstacks_defaults_trade_recall_for_precision_on_the_same_data() {
    let m = measure("detection_defaults: sandstack");
    assert!(m.recall[&Kind::Spike] >= 0.6, "{}", m.report);
    assert!(m.recall[&Kind::Drop] >= 0.4, "{}", m.report);
    assert!(m.recall[&Kind::LevelShift] >= 0.5, "{}", m.report);
    assert!(m.alert_precision >= 0.85, "{}", m.report);
    assert!(m.change_precision >= 1.0, "{}", m.report);
}

/// Run the synthetic data through train, score, alert and change with
/// `defaults` (a `detection_defaults` line), as deployed: the history so far
/// is ingested and trained on; then new observations arrive and are judged.
fn measure(defaults: &str) -> Measured {
    let extra = format!("score_max_n: 200\nalert_recent_n: 1000\nalert_max_n: 1000\nchange_detect_last_n: 10\nchange_snooze_n: 10\n{defaults}");
    let extra = extra.as_str();
    let mut store = Store::in_memory().expect("store");
    let synth = generate();
    let cutoff = format!("make_timestamp({})", synth.start_us + 200 * PERIOD_US);
    let (f, history) = batch_where(&synth, &format!("metric_timestamp < {cutoff}"), extra);
    let r = run_ingest(&history, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(r.stored, 5 * 200);
    let t = train::run(&history, &store, f.path(), &Default::default()).expect("train");
    assert_eq!(t.trained.len(), 10, "{:?}", t.skipped);
    let (_g, spec) = batch_where(&synth, &format!("metric_timestamp >= {cutoff}"), extra);
    let r = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(r.stored, 5 * (N - 200));
    let s = score::run(&spec, &mut store, f.path(), &Default::default()).expect("score");
    assert!(s.scored > 5 * (N - 200 - 10), "scored {}", s.scored);
    let alerts = alert::run(&spec, &mut store).expect("alert").alerts;
    let changes = change::run(&spec, &mut store).expect("change");

    // Recall: an event counts as found if an alert (or change) lands on it
    // or within 3 periods after it. Precision: an alert is caused by an event
    // if it lands within the 8 periods the event stays in the feature vector
    // (diff_n 1 + smooth_n 3 - 1 + lags_n 5), or after a level shift.
    let window = |kind: Kind| if kind == Kind::LevelShift { 8 } else { 3 };
    const HORIZON: usize = 8;
    let found = |metric: &str, i: usize, kind: Kind, hits: &[(String, usize)]| {
        hits.iter()
            .any(|(m, j)| m == metric && *j >= i && *j <= i + window(kind))
    };
    let alert_hits: Vec<(String, usize)> = alerts
        .iter()
        .map(|a| (a.metric_name.clone(), index_of(&synth, a.timestamp_us)))
        .collect();
    let change_hits: Vec<(String, usize)> = changes
        .iter()
        .map(|c| (c.metric_name.clone(), index_of(&synth, c.timestamp_us)))
        .collect();
    let mut report = String::new();
    let mut recall = std::collections::BTreeMap::new();
    for kind in [Kind::Spike, Kind::Drop, Kind::LevelShift] {
        let events: Vec<&(String, usize, Kind)> =
            synth.events.iter().filter(|e| e.2 == kind).collect();
        let hits = if kind == Kind::LevelShift {
            &change_hits
        } else {
            &alert_hits
        };
        let detected = events
            .iter()
            .filter(|(m, i, k)| found(m, *i, *k, hits))
            .count();
        let r = detected as f64 / events.len() as f64;
        recall.insert(kind, r);
        report.push_str(&format!(
            "{kind:?}: recall {detected}/{} = {r:.2}\n",
            events.len()
        ));
    }
    let true_alerts = alert_hits
        .iter()
        .filter(|(m, j)| {
            synth.events.iter().any(|(em, i, k)| {
                em == m && *j >= *i && (*j <= *i + HORIZON || *k == Kind::LevelShift)
            })
        })
        .count();
    let alert_precision = true_alerts as f64 / alert_hits.len().max(1) as f64;
    let true_changes = change_hits
        .iter()
        .filter(|(m, j)| {
            synth
                .events
                .iter()
                .any(|(em, i, k)| *k == Kind::LevelShift && em == m && *j >= *i && *j <= *i + 8)
        })
        .count();
    let change_precision = true_changes as f64 / change_hits.len().max(1) as f64;
    report.push_str(&format!(
        "alerts: {} stored, precision {true_alerts}/{} = {alert_precision:.2}\nchanges: {} stored, precision {true_changes}/{} = {change_precision:.2}\n",
        alert_hits.len(),
        alert_hits.len(),
        change_hits.len(),
        change_hits.len()
    ));
    eprintln!("detection on synthetic data:\n{report}");
    if std::env::var_os("SANDSTACK_DEBUG_DETECTION").is_some() {
        for a in &alerts {
            eprintln!(
                "alert {} {} {}",
                a.metric_name,
                index_of(&synth, a.timestamp_us),
                a.metadata.clone().unwrap_or_default()
            );
        }
    }
    // Running score and alert again adds nothing.
    fn count(store: &Store, t: &str) -> i64 {
        crate::support::duck(store)
            .query_row(
                &format!("select count(*) from metrics where metric_type = '{t}'"),
                [],
                |r| r.get(0),
            )
            .expect("count")
    }
    let (scores, alert_rows, change_rows) = (
        count(&store, "score"),
        count(&store, "alert"),
        count(&store, "change"),
    );
    assert_judging_jobs_add_nothing(&spec, &mut store, f.path());
    assert_eq!(
        (
            count(&store, "score"),
            count(&store, "alert"),
            count(&store, "change")
        ),
        (scores, alert_rows, change_rows)
    );
    Measured {
        recall,
        alert_precision,
        change_precision,
        report,
    }
}

#[test]
fn the_alert_job_stores_exactly_the_expected_rows() {
    let (_f, spec) =
        batch("alert_smooth_n: 3\nalert_snooze_n: 3\nalert_threshold: 0.8\nalert_recent_n: 100");
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let scores = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    crate::support::insert_scored_series(&store, "synth", &scores);
    let alerts = alert::run(&spec, &mut store).expect("alert").alerts;
    let values: Vec<f64> = alerts
        .iter()
        .map(|a| {
            a.metadata
                .as_ref()
                .and_then(|m| m["value"].as_f64())
                .unwrap_or(-1.0)
        })
        .collect();
    // Observations 0 and 9 (by value): the first high run, then snoozed until
    // the smoothed score is back over the threshold.
    assert_eq!(values, vec![0.0, 9.0]);
    assert!(
        alert::run(&spec, &mut store)
            .expect("again")
            .alerts
            .is_empty(),
        "no duplicate alerts"
    );
}

/// Score, alert and change find nothing new to write.
fn assert_judging_jobs_add_nothing(spec: &BatchSpec, store: &mut Store, models: &std::path::Path) {
    assert_eq!(
        score::run(spec, store, models, &Default::default())
            .expect("score")
            .scored,
        0
    );
    assert!(alert::run(spec, store).expect("alert").alerts.is_empty());
    assert!(change::run(spec, store).expect("change").is_empty());
}

#[test]
fn jobs_on_no_data_or_too_little_store_nothing() {
    let (f, spec) = batch("train_min_n: 14");
    let mut store = Store::in_memory().expect("store");
    let t = train::run(&spec, &store, f.path(), &Default::default()).expect("train on nothing");
    assert!(t.trained.is_empty() && t.skipped.is_empty());
    assert_judging_jobs_add_nothing(&spec, &mut store, f.path());
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 0);

    crate::support::duck(&store)
        .execute_batch("insert into metrics select make_timestamp(epoch_us(now())) - to_minutes(i), 'synth', 'short', 'metric', i, null from range(10) t(i)")
        .expect("insert");
    let t = train::run(&spec, &store, f.path(), &Default::default()).expect("train on too little");
    assert_eq!(
        t.skipped,
        vec![(
            "short".to_string(),
            "10 observations, train_min_n is 14".to_string()
        )]
    );
    let s = score::run(&spec, &mut store, f.path(), &Default::default()).expect("score");
    assert_eq!(
        (s.scored, s.skipped.clone()),
        (
            0,
            vec![("short".to_string(), "no trained model".to_string())]
        )
    );
    assert_eq!(
        store.count_rows(&key("metrics")).expect("count"),
        10,
        "only the ten metric rows"
    );
}

const OWN_PREPROCESS: &str = r#"import pandas as pd


def preprocess(df, diff_n=1, smooth_n=3, lags_n=5, freq=None, freq_agg="mean"):
    X = df.sort_values("metric_timestamp").set_index("metric_timestamp")[["metric_value"]]
    X["change"] = X["metric_value"].diff()
    X["change_lag_1"] = X["change"].shift(1)
    return X.dropna()
"#;

#[test]
fn a_batch_with_its_own_preprocess_fn_runs_it_in_the_sandbox() {
    let mut store = Store::in_memory().expect("store");
    let synth = generate();
    let f = Folder::with_defaults();
    f.write("b/own.py", OWN_PREPROCESS);
    f.write(
        "b/b.yaml",
        &format!(
            "metric_batch: synth\ningest_sql: \"select * from {}\"\npreprocess_fn: >\n  {{% include \"./b/own.py\" %}}\n",
            synth.rows
        ),
    );
    let spec = f.spec("synth", &[]);
    let own = spec.preprocess_fn.as_ref().expect("a custom preprocess");
    assert_eq!(own.filename, "b/own.py");
    assert!(
        Folder::with_defaults()
            .write("c.yaml", "metric_batch: c\ningest_sql: select 1\n")
            .spec("c", &[])
            .preprocess_fn
            .is_none(),
        "the shipped default runs natively"
    );

    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
    let t =
        train::run(&spec, &store, f.path(), &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.trained.len(), 10, "{:?}", t.skipped);
    assert_eq!(t.trained[0].2, N - 2, "diff and one lag drop two rows");
    let models =
        sandstack::models::store::ModelStore::open(&spec.model_path, f.path(), &Default::default())
            .expect("store");
    let saved = models.load("synth", "pca_default").expect("load");
    let m = &saved.get("m0").expect("saved").model;
    assert_eq!(m.n_features, 3, "value, change and its lag");
    assert_eq!(saved.len(), 5, "one file holds every metric's model");
    assert_eq!(saved["m0"].trained_on.observations, N);
    assert!(
        score::run(&spec, &mut store, f.path(), &Default::default())
            .expect("score")
            .scored
            > 0
    );

    f.write(
        "b/own.py",
        "def preprocess(df, **params):\n    raise ValueError('no features today')\n",
    );
    let spec = f.spec("synth", &[]);
    let err = train::run(&spec, &store, f.path(), &Default::default())
        .expect_err("raises")
        .to_string();
    assert!(
        err.starts_with("batch synth: preprocess_fn: ValueError: no features today"),
        "{err}"
    );
    assert!(
        err.contains("File \"b/own.py\", line 2, in preprocess"),
        "{err}"
    );
}

#[test]
fn threshold_alerts_fire_once_and_snooze() {
    let (_f, spec) =
        batch("tholdalert_thresholds:\n  m:\n    upper: 50\n    lower: 5\ntholdalert_snooze_n: 2");
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let add = |store: &Store, minutes_ago: i64, v: f64| {
        crate::support::duck(store)
            .execute_batch(&format!(
                "insert into metrics values (make_timestamp(epoch_us(now())) - interval '{minutes_ago} minutes', 'synth', 'm', 'metric', {v}, null)"
            ))
            .expect("insert");
    };
    add(&store, 10, 20.0);
    assert!(
        alert::run(&spec, &mut store)
            .expect("alert")
            .threshold_alerts
            .is_empty(),
        "inside the bounds"
    );
    add(&store, 9, 80.0);
    let first = alert::run(&spec, &mut store)
        .expect("alert")
        .threshold_alerts;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].metadata.as_ref().map(|m| m["bound"].clone()),
        Some(serde_json::json!("upper"))
    );
    assert!(
        alert::run(&spec, &mut store)
            .expect("again")
            .threshold_alerts
            .is_empty(),
        "not twice for one row"
    );
    add(&store, 8, 1.0);
    assert!(
        alert::run(&spec, &mut store)
            .expect("snoozed")
            .threshold_alerts
            .is_empty(),
        "snoozed"
    );
    add(&store, 7, 20.0);
    add(&store, 6, 20.0);
    add(&store, 5, 2.0);
    let later = alert::run(&spec, &mut store)
        .expect("alert")
        .threshold_alerts;
    assert_eq!(later.len(), 1, "past the snooze, the lower bound fires");
}

#[test]
fn threshold_alerts_honour_disable_tholdalert_and_recent_n() {
    let bounds = "tholdalert_thresholds:\n  m:\n    upper: 50\ntholdalert_snooze_n: 0";
    let (_f1, off) = batch(&format!("{bounds}\ndisable_tholdalert: true"));
    let (_f2, newest_only) = batch(bounds);
    let (_f3, recent_3) = batch(&format!("{bounds}\ntholdalert_recent_n: 3"));
    let (_f4, excluded) = batch(&format!(
        "{bounds}\ntholdalert_recent_n: 3\ntholdalert_exclude_metrics: [m]"
    ));
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let duck = crate::support::duck(&store);
    for (minutes_ago, v) in [(10, 20.0), (9, 80.0), (8, 20.0)] {
        duck.execute_batch(&format!(
            "insert into metrics values (make_timestamp(epoch_us(now())) - interval '{minutes_ago} minutes', 'synth', 'm', 'metric', {v}, null)"
        ))
        .expect("insert");
    }
    let fired = |spec, store: &mut Store| alert::run(spec, store).expect("alert").threshold_alerts;
    assert!(
        fired(&off, &mut store).is_empty(),
        "disable_tholdalert: true"
    );
    assert!(
        fired(&newest_only, &mut store).is_empty(),
        "the breach is the second newest; recent_n 1 checks the newest only"
    );
    assert!(
        fired(&excluded, &mut store).is_empty(),
        "tholdalert_exclude_metrics"
    );
    let recent = fired(&recent_3, &mut store);
    assert_eq!(recent.len(), 1, "recent_n 3 reaches the breach");
    assert_eq!(
        recent[0].metadata.as_ref().map(|m| m["value"].clone()),
        Some(serde_json::json!(80.0))
    );
}

#[test]
fn cli_backfill_then_summary_and_delete() {
    let repo = crate::support::repo();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bf.duckdb");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
            .args(args)
            .arg("--metrics")
            .arg(repo.join("metrics"))
            .arg("--db")
            .arg(&db)
            .current_dir(dir.path())
            .output()
            .expect("run sandstack")
    };
    let out = run(&[
        "backfill",
        "example_sql",
        "--periods",
        "40",
        "--every",
        "10m",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "batch example_sql: backfilled 40 periods every 10m: 120 rows stored, 0 periods failed"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("batch example_sql: trained 6 models"),
        "{stdout}"
    );
    assert!(
        dir.path().join("models/example_sql").is_dir(),
        "models saved under model_path"
    );
    let out = run(&["summary"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("sql_sine") && stdout.contains("score"),
        "{stdout}"
    );
    let out = run(&["delete", "example_sql"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("batch example_sql: deleted 0 rows older than 365 days"));
    let out = run(&[
        "backfill",
        "example_sql",
        "--periods",
        "3",
        "--every",
        "10x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--every `10x`: the unit must be s, m, h or d"));
}

#[test]
fn alert_always_alerts_on_the_newest_observation_whatever_its_score() {
    let (_f, quiet) = batch("alert_recent_n: 1");
    let (_g, always) = batch("alert_recent_n: 1\nalert_always: true");
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    crate::support::insert_scored_series(&store, "synth", &[0.1, 0.1, 0.1, 0.1]);
    assert!(alert::run(&quiet, &mut store)
        .expect("alert")
        .alerts
        .is_empty());
    let forced = alert::run(&always, &mut store).expect("alert").alerts;
    assert_eq!(forced.len(), 1, "{forced:?}");
    let meta = forced[0].metadata.as_ref().expect("metadata");
    assert_eq!(
        meta["value"],
        serde_json::json!(3.0),
        "the newest observation"
    );
    assert_eq!(meta["alert_always"], serde_json::json!(true));
    assert!(
        alert::run(&always, &mut store)
            .expect("again")
            .alerts
            .is_empty(),
        "once per observation"
    );
}

#[test]
fn pyods_other_detectors_train_and_score_by_name() {
    let synth = generate();
    for (model, extra) in [
        ("ECOD", ""),
        ("COPOD", ""),
        ("HBOS", ", model_params: {n_bins: 20}"),
        ("LOF", ", model_params: {n_neighbors: 10}"),
        ("MAD", ""),
        ("OCSVM", ", model_params: {nu: 0.2, gamma: scale}"),
    ] {
        let lags = if model == "MAD" {
            "preprocess_params: {lags_n: 0}\n"
        } else {
            ""
        };
        let yaml = format!(
            "{lags}score_max_n: 1000\nmodel_configs: [{{model_name: {model}, model_tag: t{extra}}}]"
        );
        let mut store = Store::in_memory().expect("store");
        let (f, spec) = batch_where(&synth, "metric_name = 'm0'", &yaml);
        run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
        let t = train::run(&spec, &store, f.path(), &Default::default()).expect("train");
        assert_eq!(t.trained.len(), 1, "{model}: {:?}", t.skipped);
        let s = score::run(&spec, &mut store, f.path(), &Default::default()).expect("score");
        assert!(s.scored > 300, "{model}: scored {}", s.scored);
    }
    // PyOD's MAD takes one feature; so does sandstack's, and says how.
    let mut store = Store::in_memory().expect("store");
    let (f, spec) = batch_where(
        &synth,
        "metric_name = 'm0'",
        "model_configs: [{model_name: MAD}]",
    );
    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
    let t = train::run(&spec, &store, f.path(), &Default::default()).expect("train");
    let why = format!("{:?}", t.skipped);
    assert!(
        why.contains("MAD scores one feature") && why.contains("preprocess_params: {lags_n: 0}"),
        "{why}"
    );
}

#[test]
fn an_alert_is_marked_on_the_observation_that_drove_it() {
    let (_f, spec) = batch("alert_smooth_n: 3\nalert_threshold: 0.6\nalert_recent_n: 100");
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    // The spike's score at observation 10; the smoothed score crosses the
    // threshold two observations later.
    let mut scores = vec![0.1; 10];
    scores.extend([1.0, 0.5, 0.5]);
    crate::support::insert_scored_series(&store, "synth", &scores);
    let alerts = alert::run(&spec, &mut store).expect("alert").alerts;
    assert_eq!(alerts.len(), 1);
    let meta = alerts[0].metadata.as_ref().expect("metadata");
    assert_eq!(
        meta["value"].as_f64(),
        Some(12.0),
        "stamped where Anomstack stamps it"
    );
    assert_eq!(
        meta["driver"]["value"].as_f64(),
        Some(10.0),
        "driven by the spike"
    );
    let series = sandstack::jobs::plot::series(&spec, &store).expect("plot data");
    let s = series.values().next().expect("a metric");
    let marked: Vec<usize> = s.extra["metric_alert"]
        .iter()
        .enumerate()
        .filter(|(_, f)| **f > 0.0)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(marked, vec![10], "the plot marks the spike");
}

#[test]
fn train_and_score_on_every_core_give_what_one_core_gives() {
    let synth = generate();
    let each_way = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let mut store = Store::in_memory().expect("store");
        let (f, spec) = batch_where(&synth, "true", "score_max_n: 400");
        run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
        pool.install(|| {
            train::run(&spec, &store, f.path(), &Default::default()).expect("train");
            score::run(&spec, &mut store, f.path(), &Default::default()).expect("score");
        });
        let mut scores: Vec<(String, i64, u64)> = Vec::new();
        for b in store
            .read_rows(&key("metrics"), Some(&spec.metric_batch))
            .expect("rows")
        {
            use arrow::array::AsArray;
            let ts = b
                .column(0)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            let names = b.column(2).as_string::<i32>();
            let types = b.column(3).as_string::<i32>();
            let values = b.column(4).as_primitive::<arrow::datatypes::Float64Type>();
            for r in 0..b.num_rows() {
                if types.value(r) == "score" {
                    scores.push((
                        names.value(r).to_string(),
                        ts.value(r),
                        values.value(r).to_bits(),
                    ));
                }
            }
        }
        scores.sort();
        scores
    };
    let (one, all) = (each_way(1), each_way(4));
    assert!(one.len() > 5 * 300, "{} scores", one.len());
    assert_eq!(one, all, "every score, to the bit");
}

//! Nothing is lost to a hard kill: `sandstack run` ingesting, training and
//! scoring every second is killed with SIGKILL at 20 random moments. After
//! each kill the database opens, every ingest run's rows are there whole or
//! not at all, saved models read, and the run history reads. A killed run
//! has no row in the history: a run is recorded when it ends, and its
//! rows were never committed (documented in the README).

use std::time::Duration;

use sandstack::store::{RunFilter, Store};

use crate::support::{files_under, key, run_command, Daemon, Folder};

/// Rows per ingest run (one per metric, all at the run's instant).
const PER_RUN: i64 = 5;

#[test]
fn twenty_hard_kills_leave_no_partial_run() {
    let f = Folder::with_defaults();
    let tmp = tempfile::tempdir().expect("tmp");
    let models = tmp.path().join("models");
    f.write(
        "b/k.yaml",
        &format!(
            "metric_batch: \"k\"\n\
             ingest_sql: \"SELECT now() AS metric_timestamp, 'm' || i AS metric_name, random() AS metric_value FROM range({PER_RUN}) t(i)\"\n\
             train_min_n: 3\n\
             preprocess_params: {{diff_n: 0, smooth_n: 1, lags_n: 0, freq: null, freq_agg: mean}}\n\
             ingest_cron_schedule: \"* * * * * *\"\ningest_default_schedule_status: RUNNING\n\
             train_cron_schedule: \"* * * * * *\"\ntrain_default_schedule_status: RUNNING\n\
             score_cron_schedule: \"* * * * * *\"\nscore_default_schedule_status: RUNNING\n"
        ),
    );
    let db = tmp.path().join("k.duckdb");
    // A small linear congruential generator: the moments differ per run of
    // the test and are printed, so a failure can be replayed.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut moments = Vec::new();
    let mut models_read = 0;
    for kill in 1..=20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let ms = 300 + (seed >> 33) % 1700;
        moments.push(ms);
        // Models go where the operator says (a batch's own model_path must
        // stay below the working directory).
        let mut child = Daemon::spawn(run_command(&f, &db, &[]).env(
            "ANOMSTACK_MODEL_PATH",
            format!("local://{}", models.display()),
        ));
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        models_read = models_read.max(check(&db, &models, kill, &moments));
    }
    let store = Store::open(&db).expect("opens");
    let runs = store
        .list_runs(&RunFilter {
            limit: 100_000,
            ..Default::default()
        })
        .expect("history");
    eprintln!(
        "killed at {moments:?} ms; {} runs recorded, {} rows stored",
        runs.len(),
        store.count_rows(&key("metrics")).expect("count")
    );
    assert!(
        runs.iter()
            .any(|r| r.job == "ingest" && r.status.as_str() == "succeeded"),
        "some runs finished between the kills"
    );
    assert!(
        models_read > 0,
        "some models were saved between the kills (else their check above checked nothing)"
    );
}

/// Check the database and models after a kill; returns how many model
/// files there were (each read whole).
fn check(db: &std::path::Path, models: &std::path::Path, kill: usize, moments: &[u64]) -> usize {
    let context = || format!("after kill {kill} (moments so far, ms: {moments:?})");
    let store = Store::open(db)
        .unwrap_or_else(|e| panic!("{}: the database does not open: {e}", context()));
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let conn = crate::support::duck(&store);
    let partial: Vec<(i64, i64)> = conn
        .prepare(
            "SELECT epoch_us(metric_timestamp), count(*) FROM metrics WHERE metric_type = 'metric'
             GROUP BY metric_timestamp HAVING count(*) <> ?",
        )
        .and_then(|mut s| {
            s.query_map([PER_RUN], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("query");
    assert!(
        partial.is_empty(),
        "{}: partial ingest runs {partial:?}",
        context()
    );
    store
        .list_runs(&RunFilter {
            limit: 100_000,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{}: the history does not read: {e}", context()));
    // Every saved model file reads whole through the model store (a save
    // writes a temporary file and renames it over the old one).
    let saved = sandstack::models::store::ModelStore::open(
        &format!("local://{}", models.display()),
        std::path::Path::new("/"),
        &Default::default(),
    )
    .expect("the model store");
    let files: Vec<_> = files_under(models)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "models"))
        .collect();
    for file in &files {
        let batch = file
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .expect("a batch folder");
        let tag = file.file_stem().and_then(|s| s.to_str()).expect("a tag");
        let read = saved
            .load(batch, tag)
            .unwrap_or_else(|e| panic!("{}: model {} is torn: {e}", context(), file.display()));
        assert!(
            !read.is_empty(),
            "{}: {} holds no model",
            context(),
            file.display()
        );
    }
    files.len()
}

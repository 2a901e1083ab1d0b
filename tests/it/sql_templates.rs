//! The shipped SQL templates render for every example batch and run in
//! DuckDB; the alert template smooths and snoozes over earlier rows only.

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::datatypes::{Float64Type, Int32Type};

use sandstack::store::{ResultCaps, Store};

use crate::support::{key, Folder};

#[test]
fn every_default_template_runs_for_every_example() {
    let folder = crate::support::shipped_folder();
    let mut store = Store::in_memory().expect("store");
    for spec in &folder.batches {
        store.ensure_metrics_table(&spec.table_key).expect("table");
        for key in [
            "train_sql",
            "score_sql",
            "alert_sql",
            "change_sql",
            "plot_sql",
            "delete_sql",
            "summary_sql",
        ] {
            let sql = spec
                .sql
                .get(key)
                .unwrap_or_else(|| panic!("{} lacks {key}", spec.metric_batch));
            // delete_sql is the one template that writes.
            let ran = if key == "delete_sql" {
                store
                    .delete_batch_sql(&spec.table_key, &spec.metric_batch, sql)
                    .map(|_| ())
            } else {
                store
                    .query_batch_sql(
                        &spec.table_key,
                        &spec.metric_batch,
                        sql,
                        ResultCaps::TEMPLATE,
                    )
                    .map(|_| ())
            };
            ran.unwrap_or_else(|e| panic!("{} {key} does not run: {e}\n{sql}", spec.metric_batch));
        }
        // Rendered when the dashboard uses it, with its run-time variables.
        let last_n = serde_yaml_ng::Value::from(5u64);
        let sql = sandstack::config::render_at_use(spec, "dashboard_sql", &[("last_n", last_n)])
            .expect("renders")
            .expect("set");
        store
            .query_batch_sql(
                &spec.table_key,
                &spec.metric_batch,
                &sql,
                ResultCaps::TEMPLATE,
            )
            .expect("dashboard_sql runs");
    }
}

fn column_f64(batches: &[RecordBatch], name: &str) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            let c =
                cast(b.column_by_name(name).expect("column"), &DataType::Float64).expect("cast");
            c.as_primitive::<Float64Type>().values().to_vec()
        })
        .collect()
}

#[test]
fn alerts_smooth_and_snooze_over_earlier_rows_in_time_order() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        "metric_batch: b\ningest_sql: select 1\nalert_smooth_n: 3\nalert_snooze_n: 3\nalert_threshold: 0.8\n",
    );
    let spec = f.spec("b", &[]);
    let store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    // Five observations, scores 1,1,1,0,0 then 0,0,1,1,1 (oldest first).
    let scores = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    crate::support::insert_scored_series(&store, "b", &scores);
    let out = store
        .query_batch_sql(
            &spec.table_key,
            &spec.metric_batch,
            &spec.sql["alert_sql"],
            ResultCaps::TEMPLATE,
        )
        .expect("alerts");
    let smooth = column_f64(&out, "metric_score_smooth");
    let rounded: Vec<f64> = smooth.iter().map(|v| (v * 100.0).round() / 100.0).collect();
    assert_eq!(
        rounded,
        vec![1.0, 1.0, 1.0, 0.67, 0.33, 0.0, 0.0, 0.33, 0.67, 1.0]
    );
    let alerts: Vec<i32> = out
        .iter()
        .flat_map(|b| {
            let c = cast(
                b.column_by_name("metric_alert").expect("column"),
                &DataType::Int32,
            )
            .expect("cast");
            c.as_primitive::<Int32Type>().values().to_vec()
        })
        .collect();
    // Fires at the first high row, is snoozed for the next three, and fires
    // again only when the smoothed score is back over the threshold.
    assert_eq!(alerts, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let ranks = column_f64(&out, "recency_rank");
    assert_eq!(ranks.last(), Some(&1.0));
}

#[test]
fn delete_removes_only_old_rows_of_the_batch() {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        "metric_batch: b\ningest_sql: select 1\ndelete_after_n_days: 30\n",
    );
    let spec = f.spec("b", &[]);
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    crate::support::duck(&store)
        .execute_batch(
            "insert into metrics values \
             (make_timestamp(epoch_us(now())) - interval '40 days', 'b', 'm', 'metric', 1, null), \
             (make_timestamp(epoch_us(now())) - interval '1 days', 'b', 'm', 'metric', 2, null), \
             (make_timestamp(epoch_us(now())) - interval '40 days', 'other', 'm', 'metric', 3, null)",
        )
        .expect("insert");
    store
        .delete_batch_sql(&spec.table_key, &spec.metric_batch, &spec.sql["delete_sql"])
        .expect("delete");
    // b's 40-day-old row is gone; its recent one and the other batch's old
    // one stay.
    let left: Vec<(String, f64)> = crate::support::duck(&store)
        .prepare("SELECT metric_batch, metric_value FROM metrics ORDER BY metric_value")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .expect("rows left");
    assert_eq!(left, [("b".to_string(), 2.0), ("other".to_string(), 3.0)]);
}

/// Batch `name` of `f` in a fresh store holding the rows `insert_sql`
/// puts in the metrics table, trained and scored as the scheduler would.
fn trained_and_scored(
    f: &Folder,
    name: &str,
    insert_sql: &str,
) -> (
    sandstack::config::BatchSpec,
    Store,
    sandstack::jobs::score::ScoreReport,
) {
    let spec = f.spec(name, &[]);
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    crate::support::duck(&store)
        .execute_batch(insert_sql)
        .expect("observations");
    let models = tempfile::tempdir().expect("models dir");
    sandstack::jobs::train::run(&spec, &store, models.path(), &Default::default()).expect("train");
    let scored = sandstack::jobs::score::run(&spec, &mut store, models.path(), &Default::default())
        .expect("score");
    (spec, store, scored)
}

/// With `preprocess_params.freq`, scores (and alerts) are stamped on the
/// bins' labels, which no raw observation's time matches: the alert and
/// dashboard templates read observations as bins too, so such a batch
/// alerts and its charts have a score line. Anomstack's own alert SQL joins
/// raw times to bin labels and never alerts for these batches.
#[test]
fn a_resampled_batch_alerts_on_its_bins_and_charts_its_scores() {
    const BIN_US: i64 = 30 * 60 * 1_000_000;
    let f = Folder::with_defaults();
    f.write(
        "fb.yaml",
        "metric_batch: fb\ningest_sql: select 1\n\
         preprocess_params: {freq: 30min, freq_agg: mean, diff_n: 0, smooth_n: 0, lags_n: 2}\n\
         alert_threshold: 0\nalert_smooth_n: 1\nalert_snooze_n: 0\nalert_recent_n: 3\n",
    );
    // Two days of observations every 7 minutes (never on a bin's edge
    // alone), a wave and a little noise.
    let (spec, mut store, scored) = trained_and_scored(
        &f,
        "fb",
        "insert into metrics select make_timestamp(epoch_us(now())) - to_minutes(7 * i), 'fb', 'm', \
         'metric', 10 + sin(i / 9.0) + (i * 7919 % 13) / 20.0, null from range(1, 420) t(i)",
    );
    assert!(scored.scored > 0, "{scored:?}");
    let report = sandstack::jobs::alert::run(&spec, &mut store).expect("alert");
    assert!(
        !report.alerts.is_empty(),
        "a threshold of 0 alerts on every recent scored bin"
    );
    for a in &report.alerts {
        assert_eq!(
            a.timestamp_us.rem_euclid(BIN_US),
            0,
            "{a:?} is not on a bin"
        );
    }
    // The dashboard's series: one point per bin, every score on its bin.
    let now = chrono::Utc::now().timestamp_micros();
    for window in [
        sandstack::web::charts::Window::LastPoints(500),
        sandstack::web::charts::Window::LastHours(7 * 24),
    ] {
        let series = sandstack::web::data::chart_series(&spec, &mut store, window, now)
            .expect("dashboard series");
        let m = &series["m"];
        assert!(m.timestamps_us.iter().all(|t| t.rem_euclid(BIN_US) == 0));
        let scores = &m.extra["metric_score"];
        let with_score = scores.iter().filter(|s| s.is_finite()).count();
        assert_eq!(
            with_score,
            scored.scored,
            "{window:?}: {with_score} of {} bins have a score",
            m.values.len()
        );
        assert!(
            m.values.len() > 90,
            "{window:?}: two days of 30-minute bins"
        );
    }
}

/// The dashboard's windows reach past `alert_max_n`: "last 500 points" of a
/// 300-row batch is 300 points, as is "last 7 days", where both once showed
/// `alert_max_n` (250) of them.
#[test]
fn the_dashboard_windows_are_not_capped_by_alert_max_n() {
    use sandstack::web::charts::Window;
    let f = Folder::with_defaults();
    f.write(
        "w.yaml",
        "metric_batch: w\ningest_sql: select 1\nalert_max_n: 250\n",
    );
    let spec = f.spec("w", &[]);
    let mut store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    crate::support::duck(&store)
        .execute_batch(
            "insert into metrics select make_timestamp(epoch_us(now())) - to_minutes(10 * i), 'w', 'm', \
             'metric', i, null from range(0, 300) t(i)",
        )
        .expect("observations");
    let now = chrono::Utc::now().timestamp_micros();
    let mut points = |window| {
        sandstack::web::data::chart_series(&spec, &mut store, window, now).expect("series")["m"]
            .values
            .len()
    };
    assert_eq!(points(Window::LastPoints(100)), 100);
    assert_eq!(points(Window::LastPoints(500)), 300);
    assert_eq!(points(Window::LastHours(7 * 24)), 300);
    // 24 hours of one point every 10 minutes (the oldest on the edge).
    let day = points(Window::LastHours(24));
    assert!((144..=145).contains(&day), "{day}");
}

/// A resampled `count` scores its empty bins (pandas resamples them to 0):
/// the alert SQL has them, so a metric that stops reporting alerts, and a
/// timestamp stored twice counts once, as the models count it.
#[test]
fn a_resampled_count_alerts_on_its_empty_bins_and_counts_a_timestamp_once() {
    const BIN_US: i64 = 30 * 60 * 1_000_000;
    let f = Folder::with_defaults();
    f.write(
        "fc.yaml",
        "metric_batch: fc\ningest_sql: select 1\n\
         preprocess_params: {freq: 30min, freq_agg: count, diff_n: 0, smooth_n: 0, lags_n: 1}\n\
         score_max_n: 2000\nalert_threshold: 0\nalert_smooth_n: 1\nalert_snooze_n: 0\nalert_recent_n: 12\n",
    );
    // Every 5 minutes (each stored twice) for two days, then nothing for
    // the last three hours but one observation a minute ago.
    let (spec, mut store, _) = trained_and_scored(
        &f,
        "fc",
        "insert into metrics select make_timestamp(epoch_us(now())) - to_minutes(180 + 5 * i), 'fc', 'm', \
         'metric', 1.0, null from range(0, 576) t(i), range(2) d(k); \
         insert into metrics select make_timestamp(epoch_us(now())) - to_minutes(1), 'fc', 'm', 'metric', 1.0, null",
    );
    let out = store
        .query_batch_sql(
            &spec.table_key,
            "fc",
            &spec.sql["alert_sql"],
            ResultCaps::TEMPLATE,
        )
        .expect("alerts");
    let values = column_f64(&out, "metric_value");
    // A full bin holds 6 timestamps (each stored twice, counted once).
    assert!(values.contains(&6.0), "{values:?}");
    assert!(
        !values.iter().any(|v| *v > 6.0),
        "a timestamp counted twice: {values:?}"
    );
    let report = sandstack::jobs::alert::run(&spec, &mut store).expect("alert");
    let now = chrono::Utc::now().timestamp_micros();
    let empty: Vec<i64> = report
        .alerts
        .iter()
        .map(|a| a.timestamp_us)
        .filter(|t| {
            t.rem_euclid(BIN_US) == 0 && *t > now - 170 * 60_000_000 && *t < now - 35 * 60_000_000
        })
        .collect();
    assert!(
        !empty.is_empty(),
        "no alert on an empty bin: {:?}",
        report
            .alerts
            .iter()
            .map(|a| a.timestamp_us)
            .collect::<Vec<_>>()
    );
}

//! `sandstack bench detect`: the train and score jobs, as a batch of the
//! metrics folder configures them (its SQL, preprocess and models), on
//! synthetic metrics in a scratch database: core-seconds in all and per
//! metric, for each model alone and for the batch's own set. Beside them,
//! the read of `train_sql` alone, which every model pays.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use super::super::{find_batch, load_folder, Cli};
use super::{build_profile, cpu_seconds};
use crate::config::{BatchSpec, Choice, ModelConfig, ModelKind};
use crate::domain::{Judgement, MetricType};
use crate::jobs::rows::write;
use crate::jobs::{score, train};
use crate::models::store::ModelStore;
use crate::store::{ResultCaps, Store};

/// What `bench detect` was asked to do.
pub struct Options<'a> {
    pub batch: &'a str,
    pub metrics: usize,
    pub points: usize,
    /// Points of the backtest measured after (0: none).
    pub backtest_points: usize,
}

pub fn detect(cli: &Cli, opts: &Options<'_>) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, opts.batch)?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let path = scratch.path().join("bench.duckdb");
    let mut store = Store::open(&path).with_context(|| format!("opening {}", path.display()))?;
    errln!(
        "storing {} metrics x {} points of batch {}...",
        opts.metrics,
        opts.points,
        spec.metric_batch
    );
    fill(&mut store, spec, opts.metrics, opts.points)?;
    outln!(
        "sandstack bench detect: {} metrics x {} points, batch {}'s SQL, preprocess and models, {} build",
        opts.metrics,
        opts.points,
        spec.metric_batch,
        build_profile()
    );
    let train_sql = spec
        .sql
        .get("train_sql")
        .context("the batch has no train_sql")?;
    let (wall, cpu) = timed(|| {
        store
            .query_batch_sql(
                &spec.table_key,
                &spec.metric_batch,
                train_sql,
                ResultCaps::TEMPLATE,
            )
            .map(|_| ())
    })?;
    println!(
        "{:<34} {:>8.2} s wall {:>8.2} core-s  (reference: the read every model pays)",
        "reading train_sql alone", wall, cpu
    );
    println!(
        "{:<56} {:>8} {:>9} {:>9} {:>10} {:>8}",
        "models (core-seconds)", "train", "score", "core-s", "µs/metric", "wall-s"
    );
    let sets = model_sets(spec);
    let last = sets.len() - 1;
    for (i, (label, configs)) in sets.into_iter().enumerate() {
        let mut one = spec.clone();
        one.train.model_configs = configs;
        one.model_path = format!("local://./models-{i}");
        // The batch's own set also on one thread: the reference for what
        // every core buys (the results are the same).
        let threads: &[Option<usize>] = if i == last { &[Some(1), None] } else { &[None] };
        for t in threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t.unwrap_or(0))
                .build()
                .context("starting the worker threads")?;
            let started = Instant::now();
            let (train_cpu, score_cpu) =
                pool.install(|| train_and_score(&one, &mut store, scratch.path()))?;
            let wall = started.elapsed().as_secs_f64();
            let total = train_cpu + score_cpu;
            let on = match t {
                Some(1) => ", one thread".to_string(),
                _ => format!(", {} threads", pool.current_num_threads()),
            };
            // The label holds the batch's model_tag.
            outln!(
                "{:<56} {train_cpu:>8.2} {score_cpu:>9.2} {total:>9.2} {:>10.0} {wall:>8.2}",
                format!("{label}{on}"),
                total * 1e6 / opts.metrics.max(1) as f64
            );
        }
    }
    model_files(spec, scratch.path(), last)?;
    knn_training(spec, opts.metrics.min(1000), opts.points)?;
    if opts.backtest_points > 0 {
        backtest(spec, opts.backtest_points)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// KNN's training scores on `metrics` training sets of `points` rows
/// (the batch's preprocess of the synthetic series), by the sorted sweep
/// it trains with, beside every pair (the previous way), on one thread.
fn knn_training(spec: &BatchSpec, metrics: usize, points: usize) -> anyhow::Result<()> {
    let sets: Vec<Vec<Vec<f64>>> = (0..metrics)
        .map(|m| {
            let ts: Vec<i64> = (0..points as i64).map(|p| p * 600_000_000).collect();
            let values: Vec<f64> = (0..points)
                .map(|p| {
                    let noise = ((m * 7919 + p * 104_729) % 1000) as f64 / 1000.0 - 0.5;
                    10.0 + (p as f64 * std::f64::consts::TAU / 144.0).sin() + 0.2 * noise
                })
                .collect();
            crate::models::preprocess::preprocess(&ts, &values, &spec.preprocess_params)
                .map(|f| f.rows)
        })
        .collect::<Result<_, _>>()?;
    let mut took = [0.0; 2];
    for (i, every_pair) in [false, true].into_iter().enumerate() {
        let cpu = cpu_seconds();
        for rows in &sets {
            std::hint::black_box(crate::models::knn_training_scores(rows, 5, every_pair));
        }
        took[i] = cpu_seconds() - cpu;
    }
    outln!(
        "KNN training scores, {metrics} metrics x {} rows: sorted sweep {:.2} core-s; every pair (the previous way) {:.2} core-s",
        sets.first().map_or(0, Vec::len),
        took[0],
        took[1]
    );
    Ok(())
}

/// The models the batch's own set saved (in `models-{set}`), read as
/// they are kept, beside the previous layout: a JSON file per metric and
/// model, written and read back.
fn model_files(spec: &BatchSpec, base: &Path, set: usize) -> anyhow::Result<()> {
    let store = ModelStore::open(
        &format!("local://./models-{set}"),
        base,
        &Default::default(),
    )?;
    let tags: Vec<String> = spec.train.model_configs.iter().map(|c| c.tag()).collect();
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let mut saved = Vec::new();
    for tag in &tags {
        saved.push((tag, store.load(&spec.metric_batch, tag)?));
    }
    let read = started.elapsed().as_secs_f64();
    let bytes: u64 = tags
        .iter()
        .filter_map(|t| store.path(&spec.metric_batch, t))
        .map(|p| size(&p))
        .sum();
    let previous = base.join("models-previous-layout");
    let (mut files, mut old_bytes) = (0usize, 0u64);
    let started = Instant::now();
    for (tag, models) in &saved {
        for (metric, m) in models {
            let dir = previous.join(crate::file_names::file_stem(metric));
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{}.json", crate::file_names::file_stem(tag)));
            std::fs::write(&path, serde_json::to_vec(&m.model)?)?;
            old_bytes += size(&path);
            files += 1;
        }
    }
    let old_write = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (tag, models) in &saved {
        for metric in models.keys() {
            let path = previous
                .join(crate::file_names::file_stem(metric))
                .join(format!("{}.json", crate::file_names::file_stem(tag)));
            let _: crate::models::TrainedModel = serde_json::from_slice(&std::fs::read(path)?)?;
        }
    }
    let old_read = started.elapsed().as_secs_f64();
    outln!(
        "model files: {} ({:.1} MB), read in {read:.2} s; previous layout, a JSON file per metric and model: {files} ({:.1} MB), written in {old_write:.2} s, read in {old_read:.2} s",
        tags.len(),
        bytes as f64 / 1e6,
        old_bytes as f64 / 1e6
    );
    Ok(())
}

/// A backtest of one metric of `points` observations a minute apart,
/// retrained every 20 of them, beside the reference: the same number of
/// trainings alone on the rows each had.
fn backtest(spec: &BatchSpec, points: usize) -> anyhow::Result<()> {
    let minute: i64 = 60_000_000;
    let mut h = crate::pipeline::backtest::MetricHistory::default();
    for p in 0..points {
        let noise = ((p * 104_729) % 1000) as f64 / 1000.0 - 0.5;
        let spike = if p % 997 == 500 { 5.0 } else { 0.0 };
        h.timestamps_us
            .push(1_704_067_200_000_000 + p as i64 * minute);
        h.values
            .push(10.0 + (p as f64 * std::f64::consts::TAU / 1440.0).sin() + 0.2 * noise + spike);
    }
    let every = |cron: &str| serde_yaml_ng::Value::from(cron);
    let variant = crate::config::with_values(
        spec,
        &[
            ("ingest_cron_schedule", every("* * * * *")),
            ("train_cron_schedule", every("*/20 * * * *")),
            ("score_cron_schedule", every("* * * * *")),
            ("alert_cron_schedule", every("* * * * *")),
            ("change_cron_schedule", every("* * * * *")),
        ],
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let history = std::collections::BTreeMap::from([("metric".to_string(), h.clone())]);
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let out = crate::pipeline::backtest::run(&variant, &history, &|_| ())?;
    let (bt_wall, bt_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let r = &out["metric"];
    // The reference: every training the replay did, alone.
    let max_n = variant.train.max_n as usize;
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for k in 1..=r.trainings {
        let hi = (k * 20).min(points);
        let lo = hi.saturating_sub(max_n);
        let s = crate::domain::Series {
            timestamps_us: h.timestamps_us[lo..hi].to_vec(),
            values: h.values[lo..hi].to_vec(),
            extra: Default::default(),
        };
        train::fit_metric(&variant, "metric", &s, &|| Ok(()))
            .map_err(|e| anyhow::anyhow!("training: {e}"))?;
    }
    let (tr_wall, tr_cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    outln!(
        "backtest of 1 metric x {points} points, retrained every 20: {bt_wall:.2} s wall, {bt_cpu:.2} core-s \
         ({} trainings, {} scores, {} alerts); its {} trainings alone: {tr_wall:.2} s wall, {tr_cpu:.2} core-s",
        r.trainings,
        r.score.iter().filter(|s| !s.is_nan()).count(),
        r.alerts.len(),
        r.trainings
    );
    Ok(())
}

/// What to time: each of the batch's models alone, each other kind with
/// its defaults, and the batch's set together.
fn model_sets(spec: &BatchSpec) -> Vec<(String, Vec<ModelConfig>)> {
    let configured = &spec.train.model_configs;
    let mut sets: Vec<(String, Vec<ModelConfig>)> = configured
        .iter()
        .map(|c| (c.tag(), vec![c.clone()]))
        .collect();
    for kind in ["PCA", "KNN", "IForest"] {
        let parsed = <ModelKind as Choice>::parse(kind).ok();
        let present = configured.iter().any(|c| Some(c.model_name) == parsed);
        if let (Some(model_name), false) = (parsed, present) {
            let cfg = ModelConfig {
                model_name,
                model_tag: None,
                model_params: Default::default(),
            };
            sets.push((format!("{} (defaults)", cfg.tag()), vec![cfg]));
        }
    }
    if configured.len() > 1 {
        let tags: Vec<String> = configured.iter().map(|c| c.tag()).collect();
        sets.push((
            format!("as configured ({})", tags.join(" + ")),
            configured.clone(),
        ));
    }
    sets
}

/// Core-seconds of the train job, then of the score job (whose rows are
/// removed after, so the next models score the same observations).
fn train_and_score(spec: &BatchSpec, store: &mut Store, base: &Path) -> anyhow::Result<(f64, f64)> {
    let (_, train_cpu) = timed(|| train::run(spec, store, base, &Default::default()).map(|_| ()))?;
    let (_, score_cpu) = timed(|| score::run(spec, store, base, &Default::default()).map(|_| ()))?;
    let delete = format!(
        "DELETE FROM {} WHERE metric_type = '{}'",
        spec.table_key,
        MetricType::Score
    );
    store.delete_batch_sql(&spec.table_key, &spec.metric_batch, &delete)?;
    Ok((train_cpu, score_cpu))
}

/// Wall seconds and core-seconds (this process, every thread) of `work`.
fn timed<E: std::error::Error + Send + Sync + 'static>(
    work: impl FnOnce() -> Result<(), E>,
) -> anyhow::Result<(f64, f64)> {
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    work()?;
    Ok((wall.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

/// `metrics` series of `points` observations, one every 10 minutes up to
/// now: a daily wave with noise, and a spike now and then.
fn fill(store: &mut Store, spec: &BatchSpec, metrics: usize, points: usize) -> anyhow::Result<()> {
    let step_us: i64 = 600_000_000;
    let now_us = chrono::Utc::now().timestamp_micros();
    let first_us = now_us - step_us * points as i64;
    // About a million rows per append.
    let per_append = (1_000_000 / points.max(1)).max(1);
    for first in (0..metrics).step_by(per_append) {
        let mut rows = Vec::with_capacity(per_append * points);
        for m in first..(first + per_append).min(metrics) {
            let name = format!("metric_{m}");
            for p in 0..points {
                let noise = ((m * 7919 + p * 104_729) % 1000) as f64 / 1000.0 - 0.5;
                let wave = (p as f64 * std::f64::consts::TAU / 144.0).sin();
                let spike = if (m + p) % 97 == 0 { 5.0 } else { 0.0 };
                rows.push(Judgement {
                    timestamp_us: first_us + step_us * p as i64,
                    metric_name: name.clone(),
                    value: 10.0 + wave + 0.2 * noise + spike,
                    metadata: None,
                });
            }
        }
        write(
            store,
            &spec.table_key,
            &spec.metric_batch,
            MetricType::Metric,
            &rows,
        )?;
    }
    Ok(())
}

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
use crate::store::{ResultCaps, Store};

/// What `bench detect` was asked to do.
pub struct Options<'a> {
    pub batch: &'a str,
    pub metrics: usize,
    pub points: usize,
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
        "{:<34} {:>8} {:>9} {:>9} {:>10}",
        "models", "train", "score", "core-s", "µs/metric"
    );
    for (i, (label, configs)) in model_sets(spec).into_iter().enumerate() {
        let mut one = spec.clone();
        one.train.model_configs = configs;
        one.model_path = format!("local://./models-{i}");
        let (train_cpu, score_cpu) = train_and_score(&one, &mut store, scratch.path())?;
        let total = train_cpu + score_cpu;
        // The label holds the batch's model_tag.
        outln!(
            "{label:<34} {train_cpu:>8.2} {score_cpu:>9.2} {total:>9.2} {:>10.0}",
            total * 1e6 / opts.metrics.max(1) as f64
        );
    }
    Ok(ExitCode::SUCCESS)
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
    let (_, train_cpu) = timed(|| train::run(spec, store, base).map(|_| ()))?;
    let (_, score_cpu) = timed(|| score::run(spec, store, base).map(|_| ()))?;
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

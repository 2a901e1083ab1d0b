//! The train job: `train_sql`'s observations, per metric, preprocessed and
//! fitted by every configured model, saved under `model_path`.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::features::features;
use super::rows::{load_input, JobError, JobFailure};
use crate::config::{BatchSpec, Job};
use crate::domain::Series;
use crate::models::store::{ModelStore, Saved, TrainedOn};
use crate::models::{ModelError, TrainedModel};
use crate::store::{Store, StoreError};

pub type TrainError = JobError;

#[derive(Debug, Default)]
pub struct TrainReport {
    /// (metric, model tag, training rows)
    pub trained: Vec<(String, String, usize)>,
    /// (metric, why)
    pub skipped: Vec<(String, String)>,
}

/// A stable seed per batch, metric and model, so retraining on the same
/// data gives the same model.
pub fn seed(batch: &str, metric: &str, tag: &str) -> u64 {
    let h = Sha256::digest(format!("{batch}\0{metric}\0{tag}").as_bytes());
    u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8]))
}

/// `env` is the operator's: an object store's credentials.
pub fn run(
    spec: &BatchSpec,
    store: &Store,
    base: &Path,
    env: &crate::models::remote::Env,
) -> Result<TrainReport, TrainError> {
    train(spec, store, base, env).map_err(JobError::of(spec))
}

fn train(
    spec: &BatchSpec,
    store: &Store,
    base: &Path,
    env: &crate::models::remote::Env,
) -> Result<TrainReport, JobFailure> {
    let input = load_input(spec, store, Job::Train, None)?;
    let models = ModelStore::open(&spec.model_path, base, env)?;
    let mut report = TrainReport::default();
    // Saved together at the end, so a run stopped by its time limit leaves
    // the previous models in place.
    let mut fitted = Vec::new();
    // Metrics on every core; the results, in metric order, are what one
    // core would give (each model's seed is its batch, metric and tag).
    let limit = store.time_limit();
    let each: Vec<Result<Fitted, JobFailure>> = input
        .series
        .par_iter()
        .map(|(metric, s)| {
            limit.check()?;
            fit_metric(spec, metric, s, &|| limit.check())
        })
        .collect();
    for ((metric, _), m) in input.series.iter().zip(each) {
        let m = m?;
        report
            .skipped
            .extend(m.skipped.into_iter().map(|why| (metric.clone(), why)));
        for model in m.models {
            report
                .trained
                .push((metric.clone(), model.model_tag.clone(), model.trained_rows));
            fitted.push((metric.clone(), model));
        }
    }
    store.check_time()?;
    // One file per model tag, every metric's model in it.
    let trained_at_us = store
        .clock()
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros());
    let mut by_tag: BTreeMap<String, Vec<(String, Saved)>> = BTreeMap::new();
    for (metric, model) in fitted {
        let s = &input.series[&metric];
        let trained_on = TrainedOn {
            observations: s.values.len(),
            first_us: s.timestamps_us.first().copied().unwrap_or_default(),
            last_us: s.timestamps_us.last().copied().unwrap_or_default(),
            trained_at_us,
        };
        by_tag
            .entry(model.model_tag.clone())
            .or_default()
            .push((metric, Saved { trained_on, model }));
    }
    for (tag, saved) in by_tag {
        models.save(&spec.metric_batch, &tag, saved)?;
    }
    Ok(report)
}

/// One metric's training: its models, and why any were not fitted.
#[derive(Default)]
pub struct Fitted {
    pub models: Vec<TrainedModel>,
    pub skipped: Vec<String>,
}

/// Fit every configured model on one metric's observations (oldest first),
/// as the train job does for each metric its SQL returned; `check` is asked
/// between models whether the job is out of time.
pub fn fit_metric(
    spec: &BatchSpec,
    metric: &str,
    s: &Series,
    check: &(dyn Fn() -> Result<(), StoreError> + Sync),
) -> Result<Fitted, JobFailure> {
    let mut out = Fitted::default();
    if spec.train.exclude_metrics.iter().any(|m| m == metric) {
        return Ok(out);
    }
    if (s.values.len() as u64) < spec.train.min_n {
        out.skipped.push(format!(
            "{} observations, train_min_n is {}",
            s.values.len(),
            spec.train.min_n
        ));
        return Ok(out);
    }
    let features = features(spec, &s.timestamps_us, &s.values).map_err(Box::new)?;
    for cfg in &spec.train.model_configs {
        check()?;
        match TrainedModel::fit(cfg, &features.rows, seed(&spec.metric_batch, metric, &cfg.tag())) {
            Ok(model) => out.models.push(model),
            Err(ModelError::TooFewRows { rows, .. }) => out.skipped.push(format!(
                "{rows} feature rows after preprocessing (diff, smoothing and lags use up the first rows)"
            )),
            Err(e) => out.skipped.push(format!("model {}: {e}", cfg.tag())),
        }
    }
    Ok(out)
}

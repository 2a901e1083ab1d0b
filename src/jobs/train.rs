//! The train job: `train_sql`'s observations, per metric, preprocessed and
//! fitted by every configured model, saved under `model_path`.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::features::features;
use super::rows::{load_input, JobError, JobFailure};
use crate::config::{BatchSpec, Job};
use crate::models::store::ModelStore;
use crate::models::{ModelError, TrainedModel};
use crate::store::Store;

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

pub fn run(spec: &BatchSpec, store: &Store, base: &Path) -> Result<TrainReport, TrainError> {
    train(spec, store, base).map_err(JobError::of(spec))
}

fn train(spec: &BatchSpec, store: &Store, base: &Path) -> Result<TrainReport, JobFailure> {
    let batch = spec.metric_batch.clone();
    let input = load_input(spec, store, Job::Train, None)?;
    let series = &input.series;
    let models = ModelStore::open(&spec.model_path, base)?;
    let mut report = TrainReport::default();
    // Saved together at the end, so a run stopped by its time limit leaves
    // the previous models in place.
    let mut fitted = Vec::new();
    for (metric, s) in series {
        store.check_time()?;
        if spec.train.exclude_metrics.contains(metric) {
            continue;
        }
        if (s.values.len() as u64) < spec.train.min_n {
            report.skipped.push((
                metric.clone(),
                format!(
                    "{} observations, train_min_n is {}",
                    s.values.len(),
                    spec.train.min_n
                ),
            ));
            continue;
        }
        let features = features(spec, &s.timestamps_us, &s.values).map_err(Box::new)?;
        for cfg in &spec.train.model_configs {
            store.check_time()?;
            match TrainedModel::fit(cfg, &features.rows, seed(&batch, metric, &cfg.tag())) {
                Ok(model) => {
                    report.trained.push((metric.clone(), cfg.tag(), features.rows.len()));
                    fitted.push((metric.clone(), model));
                }
                Err(ModelError::TooFewRows { rows, .. }) => report.skipped.push((
                    metric.clone(),
                    format!("{rows} feature rows after preprocessing (diff, smoothing and lags use up the first rows)"),
                )),
                Err(e) => report.skipped.push((metric.clone(), format!("model {}: {e}", cfg.tag()))),
            }
        }
    }
    store.check_time()?;
    for (metric, model) in &fitted {
        models.save(&batch, metric, model)?;
    }
    Ok(report)
}

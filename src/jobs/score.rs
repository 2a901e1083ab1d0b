//! The score job: `score_sql`'s recent observations, per metric, scored by
//! the saved models; only timestamps not scored before get a `score` row.

use std::path::Path;

use super::features::features;
use super::rows::{load_input, write, JobError, JobFailure};
use crate::config::{BatchSpec, Job};
use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use crate::domain::{Judgement, JudgementMeta, MetricType, Series};
use crate::models::store::ModelStore;
use crate::models::{combine, TrainedModel};
use crate::store::Store;

pub type ScoreError = JobError;

#[derive(Debug, Default)]
pub struct ScoreReport {
    pub scored: usize,
    /// (metric, why)
    pub skipped: Vec<(String, String)>,
}

/// `env` is the operator's: an object store's credentials.
pub fn run(
    spec: &BatchSpec,
    store: &mut Store,
    base: &Path,
    env: &crate::models::remote::Env,
) -> Result<ScoreReport, ScoreError> {
    score(spec, store, base, env).map_err(JobError::of(spec))
}

fn score(
    spec: &BatchSpec,
    store: &mut Store,
    base: &Path,
    env: &crate::models::remote::Env,
) -> Result<ScoreReport, JobFailure> {
    let batch = spec.metric_batch.clone();
    let input = load_input(spec, store, Job::Score, Some(MetricType::Score))?;
    let (series, scored_before) = (&input.series, &input.done);
    let models = ModelStore::open(&spec.model_path, base, env)?;
    let mut report = ScoreReport::default();
    let mut rows = Vec::new();
    // Metrics on every core, results taken in metric order.
    let limit = store.time_limit();
    // Each model tag's file once, every metric's model in it.
    let saved = spec
        .train
        .model_configs
        .iter()
        .map(|cfg| models.load(&batch, &cfg.tag()))
        .collect::<Result<Vec<_>, _>>()?;
    let each: Vec<Result<Option<Vec<Judgement>>, JobFailure>> = series
        .par_iter()
        .map(|(metric, s)| {
            limit.check()?;
            let loaded: Vec<&TrainedModel> = saved
                .iter()
                .filter_map(|tag| tag.get(metric).map(|m| &m.model))
                .collect();
            if loaded.is_empty() {
                return Ok(None);
            }
            score_metric(spec, metric, s, &loaded, scored_before.get(metric)).map(Some)
        })
        .collect();
    for ((metric, _), scored) in series.iter().zip(each) {
        match scored? {
            Some(r) => rows.extend(r),
            None => {
                tracing::warn!(batch = %batch, metric = %metric, "no trained model yet; run `sandstack train BATCH`");
                report
                    .skipped
                    .push((metric.clone(), "no trained model".into()));
            }
        }
    }
    report.scored = write(store, &spec.table_key, &batch, MetricType::Score, &rows)?;
    Ok(report)
}

/// Score one metric's observations (oldest first) with its `models`, as
/// the score job does for each metric its SQL returned: a `score` row for
/// every feature row whose timestamp is not in `done`.
pub fn score_metric(
    spec: &BatchSpec,
    metric: &str,
    s: &Series,
    models: &[&TrainedModel],
    done: Option<&BTreeSet<i64>>,
) -> Result<Vec<Judgement>, JobFailure> {
    let features = features(spec, &s.timestamps_us, &s.values).map_err(Box::new)?;
    let mut rows = Vec::new();
    for (ts, row) in features.timestamps_us.iter().zip(&features.rows) {
        if done.is_some_and(|d| d.contains(ts)) {
            continue;
        }
        let mut per_model = BTreeMap::new();
        let mut probs = Vec::new();
        for m in models {
            let p = m.probability(row).map_err(|source| JobFailure::Model {
                metric: metric.to_string(),
                source,
            })?;
            per_model.insert(m.model_tag.clone(), p);
            probs.push(p);
        }
        if let Some(score) = combine(&probs, spec.score.combination_method) {
            rows.push(Judgement {
                timestamp_us: *ts,
                metric_name: metric.to_string(),
                value: crate::domain::round_decimals(score, spec.score.metric_rounding),
                metadata: Some(JudgementMeta::Score { models: per_model }.to_value()),
            });
        }
    }
    Ok(rows)
}

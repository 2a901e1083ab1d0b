//! The score job: `score_sql`'s recent observations, per metric, scored by
//! the saved models; only timestamps not scored before get a `score` row.

use std::path::Path;

use super::features::{features, FeatureError};
use super::rows::{existing, series_by_metric, write, Judgement, RowsError};
use crate::config::BatchSpec;
use crate::models::store::{ModelStore, ModelStoreError};
use crate::models::{combine, ModelError};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("batch {batch}: {source}")]
    Rows {
        batch: String,
        #[source]
        source: RowsError,
    },
    #[error("batch {batch}: {source}")]
    Models {
        batch: String,
        #[source]
        source: ModelStoreError,
    },
    #[error("batch {batch}: {source}")]
    Preprocess {
        batch: String,
        #[source]
        source: Box<FeatureError>,
    },
    #[error("batch {batch}: metric {metric}: {source}")]
    Model {
        batch: String,
        metric: String,
        #[source]
        source: ModelError,
    },
    #[error("batch {batch}: {source}")]
    Store {
        batch: String,
        #[source]
        source: StoreError,
    },
    #[error("batch {batch}: the batch has no score_sql")]
    NoSql { batch: String },
}

#[derive(Debug, Default)]
pub struct ScoreReport {
    pub scored: usize,
    /// (metric, why)
    pub skipped: Vec<(String, String)>,
}

pub fn run(spec: &BatchSpec, store: &mut Store, base: &Path) -> Result<ScoreReport, ScoreError> {
    let batch = spec.metric_batch.clone();
    let b = || batch.clone();
    let sql = spec
        .sql
        .get("score_sql")
        .ok_or_else(|| ScoreError::NoSql { batch: b() })?;
    store
        .ensure_metrics_table(&spec.table_key)
        .map_err(|source| ScoreError::Store { batch: b(), source })?;
    let series = series_by_metric(store, sql, "score")
        .map_err(|source| ScoreError::Rows { batch: b(), source })?;
    let models = ModelStore::open(&spec.model_path, base)
        .map_err(|source| ScoreError::Models { batch: b(), source })?;
    let scored_before = existing(store, &spec.table_key, &batch, "score")
        .map_err(|source| ScoreError::Store { batch: b(), source })?;
    let mut report = ScoreReport::default();
    let mut rows = Vec::new();
    for (metric, s) in &series {
        let mut loaded = Vec::new();
        for cfg in &spec.model_configs {
            if let Some(m) = models
                .load(&batch, metric, &cfg.tag())
                .map_err(|source| ScoreError::Models { batch: b(), source })?
            {
                loaded.push(m);
            }
        }
        if loaded.is_empty() {
            tracing::warn!("batch {batch}: metric {metric} has no trained model yet; run `sandstack train {batch}`");
            report
                .skipped
                .push((metric.clone(), "no trained model".into()));
            continue;
        }
        let features = features(spec, &s.timestamps_us, &s.values).map_err(|source| {
            ScoreError::Preprocess {
                batch: b(),
                source: Box::new(source),
            }
        })?;
        let done = scored_before.get(metric);
        for (ts, row) in features.timestamps_us.iter().zip(&features.rows) {
            if done.is_some_and(|d| d.contains(ts)) {
                continue;
            }
            let mut per_model = serde_json::Map::new();
            let mut probs = Vec::new();
            for m in &loaded {
                let p = m.probability(row).map_err(|source| ScoreError::Model {
                    batch: b(),
                    metric: metric.clone(),
                    source,
                })?;
                per_model.insert(m.model_tag.clone(), p.into());
                probs.push(p);
            }
            if let Some(score) = combine(&probs, &spec.model_combination_method) {
                rows.push(Judgement {
                    timestamp_us: *ts,
                    metric_name: metric.clone(),
                    value: score,
                    metadata: Some(serde_json::json!({ "models": per_model })),
                });
            }
        }
    }
    report.scored = write(store, &spec.table_key, &batch, "score", &rows)
        .map_err(|source| ScoreError::Store { batch: b(), source })?;
    Ok(report)
}

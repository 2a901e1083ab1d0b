//! Anomaly models and the features they are fed ([`preprocess`]). Models
//! are named as in Anomstack's `model_configs` (PyOD's PCA, KNN, IForest,
//! ECOD, COPOD, HBOS, LOF, MAD and OCSVM, with PyOD's parameters), trained
//! on one metric's feature rows, and score a row as a 0..1 anomaly
//! probability: the raw score scaled between the lowest training score and
//! the training scores' `1 - contamination` quantile, and clipped. PyOD's
//! linear `predict_proba` (which Anomstack uses) scales to the highest
//! training score instead; with the quantile, one outlier in the training
//! window does not silence the model. Several models' probabilities combine by
//! `model_combination_method` (mean, min, max). [`store`] saves them.

mod ecdf;
mod hbos;
mod iforest;
mod knn;
mod lof;
mod mad;
mod ocsvm;
mod pca;
pub mod preprocess;
#[cfg(test)]
mod reference_tests;
pub mod remote;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::config::{CombinationMethod, ModelConfig, ModelKind};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model `{tag}`: model_params.{key} must be {expected}")]
    BadParam {
        tag: String,
        key: String,
        expected: &'static str,
    },
    #[error("cannot train on {rows} rows: at least {min} are needed (train_min_n)")]
    TooFewRows { rows: usize, min: usize },
    #[error("feature rows have {found} columns, the model was trained on {expected}")]
    Width { expected: usize, found: usize },
    #[error("MAD scores one feature, as in PyOD, but the batch's preprocessing gives {found} (set preprocess_params: {{lags_n: 0}}, or pick another model)")]
    OneFeature { found: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Tagged outside its content: an internally tagged enum is read through
// serde's buffer, which made loading large models mostly allocation.
#[serde(rename_all = "snake_case")]
enum Inner {
    Pca(pca::Pca),
    Knn(knn::Knn),
    IForest(iforest::IsolationForest),
    Ecdf(ecdf::Ecdf),
    Hbos(hbos::Hbos),
    Lof(lof::Lof),
    Mad(mad::Mad),
    Ocsvm(ocsvm::Ocsvm),
}

/// One trained model for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedModel {
    pub model_name: String,
    pub model_tag: String,
    pub n_features: usize,
    pub trained_rows: usize,
    /// Raw training scores' minimum and `1 - contamination` quantile, for
    /// calibration.
    pub score_min: f64,
    pub score_top: f64,
    inner: Inner,
}

fn param_usize(cfg: &ModelConfig, key: &str, default: usize) -> Result<usize, ModelError> {
    match cfg.model_params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| ModelError::BadParam {
                tag: cfg.tag(),
                key: key.into(),
                expected: "a whole number above 0",
            }),
    }
}

fn param_f64(
    cfg: &ModelConfig,
    key: &str,
    default: f64,
    range: (f64, f64),
) -> Result<f64, ModelError> {
    match cfg.model_params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| *x >= range.0 && *x <= range.1)
            .ok_or_else(|| ModelError::BadParam {
                tag: cfg.tag(),
                key: key.into(),
                expected: "a number between 0 and 1",
            }),
    }
}

impl TrainedModel {
    /// Train one configured model on feature rows (all the same width).
    pub fn fit(
        cfg: &ModelConfig,
        rows: &[Vec<f64>],
        seed: u64,
    ) -> Result<TrainedModel, ModelError> {
        if rows.len() < 2 {
            return Err(ModelError::TooFewRows {
                rows: rows.len(),
                min: 2,
            });
        }
        let n_features = rows[0].len();
        if let Some(bad) = rows.iter().find(|r| r.len() != n_features) {
            return Err(ModelError::Width {
                expected: n_features,
                found: bad.len(),
            });
        }
        let (inner, training): (Inner, Vec<f64>) = match cfg.model_name {
            ModelKind::Pca => {
                let n = match cfg.model_params.get("n_components") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(_) => Some(param_usize(cfg, "n_components", n_features)?),
                };
                let m = pca::Pca::fit(rows, n);
                let s = rows.iter().map(|r| m.score(r)).collect();
                (Inner::Pca(m), s)
            }
            ModelKind::Knn => {
                let m = knn::Knn::fit(rows, param_usize(cfg, "n_neighbors", 5)?);
                let s = m.training_scores();
                (Inner::Knn(m), s)
            }
            ModelKind::IForest => {
                let m = iforest::IsolationForest::fit(
                    rows,
                    param_usize(cfg, "n_estimators", 100)?,
                    param_usize(cfg, "max_samples", 256)?,
                    seed,
                );
                let s = rows.iter().map(|r| m.score(r)).collect();
                (Inner::IForest(m), s)
            }
            ModelKind::Ecod | ModelKind::Copod => {
                let tails = if cfg.model_name == ModelKind::Ecod {
                    ecdf::Tails::Ecod
                } else {
                    ecdf::Tails::Copod
                };
                let m = ecdf::Ecdf::fit(rows, tails);
                let s = m.training_scores(rows);
                (Inner::Ecdf(m), s)
            }
            ModelKind::Hbos => {
                let n_bins = param_usize(cfg, "n_bins", 10)?.max(2);
                let alpha = param_f64(cfg, "alpha", 0.1, (0.0, 1.0))?;
                let tol = param_f64(cfg, "tol", 0.5, (0.0, 1.0))?;
                let m = hbos::Hbos::fit(rows, n_bins, alpha, tol);
                let s = rows.iter().map(|r| m.score(r)).collect();
                (Inner::Hbos(m), s)
            }
            ModelKind::Lof => {
                let (m, s) = lof::Lof::fit(rows, param_usize(cfg, "n_neighbors", 20)?);
                (Inner::Lof(m), s)
            }
            ModelKind::Ocsvm => {
                let nu = param_f64(cfg, "nu", 0.5, (f64::MIN_POSITIVE, 1.0))?;
                let tol = param_f64(cfg, "tol", 1e-3, (f64::MIN_POSITIVE, 1.0))?;
                let gamma = match cfg.model_params.get("gamma") {
                    None | Some(serde_json::Value::Null) => ocsvm::Gamma::Auto,
                    Some(serde_json::Value::String(s)) if s == "auto" => ocsvm::Gamma::Auto,
                    Some(serde_json::Value::String(s)) if s == "scale" => ocsvm::Gamma::Scale,
                    Some(v) => ocsvm::Gamma::Value(
                        v.as_f64()
                            .filter(|g| *g > 0.0 && g.is_finite())
                            .ok_or_else(|| ModelError::BadParam {
                                tag: cfg.tag(),
                                key: "gamma".into(),
                                expected: "auto, scale or a number above 0",
                            })?,
                    ),
                };
                match cfg.model_params.get("kernel") {
                    None | Some(serde_json::Value::Null) => {}
                    Some(serde_json::Value::String(k)) if k == "rbf" => {}
                    Some(_) => {
                        return Err(ModelError::BadParam {
                            tag: cfg.tag(),
                            key: "kernel".into(),
                            expected: "rbf (the only kernel sandstack has)",
                        })
                    }
                }
                let (m, s) = ocsvm::Ocsvm::fit(rows, nu, gamma, tol);
                (Inner::Ocsvm(m), s)
            }
            ModelKind::Mad => {
                if n_features != 1 {
                    return Err(ModelError::OneFeature { found: n_features });
                }
                let m = mad::Mad::fit(rows);
                let s = rows.iter().map(|r| m.score(r)).collect();
                (Inner::Mad(m), s)
            }
        };
        let contamination =
            match cfg.model_params.get("contamination") {
                None | Some(serde_json::Value::Null) => 0.1,
                Some(v) => v.as_f64().filter(|c| *c > 0.0 && *c < 0.5).ok_or_else(|| {
                    ModelError::BadParam {
                        tag: cfg.tag(),
                        key: "contamination".into(),
                        expected: "a number between 0 and 0.5",
                    }
                })?,
            };
        let mut sorted = training.clone();
        sorted.sort_by(f64::total_cmp);
        let score_min = sorted[0];
        let q = ((1.0 - contamination) * (sorted.len() - 1) as f64).round() as usize;
        let score_top = sorted[q.min(sorted.len() - 1)];
        Ok(TrainedModel {
            model_name: cfg.model_name.to_string(),
            model_tag: cfg.tag(),
            n_features,
            trained_rows: rows.len(),
            score_min,
            score_top,
            inner,
        })
    }

    pub fn raw_score(&self, row: &[f64]) -> Result<f64, ModelError> {
        if row.len() != self.n_features {
            return Err(ModelError::Width {
                expected: self.n_features,
                found: row.len(),
            });
        }
        Ok(match &self.inner {
            Inner::Pca(m) => m.score(row),
            Inner::Knn(m) => m.score(row),
            Inner::IForest(m) => m.score(row),
            Inner::Ecdf(m) => m.score(row),
            Inner::Hbos(m) => m.score(row),
            Inner::Lof(m) => m.score(row),
            Inner::Mad(m) => m.score(row),
            Inner::Ocsvm(m) => m.score(row),
        })
    }

    /// The anomaly probability in 0..1.
    pub fn probability(&self, row: &[f64]) -> Result<f64, ModelError> {
        let s = self.raw_score(row)?;
        let span = self.score_top - self.score_min;
        Ok(if span > 0.0 {
            ((s - self.score_min) / span).clamp(0.0, 1.0)
        } else {
            0.0
        })
    }
}

/// KNN's training scores of `rows` with `k` neighbours, by the sorted
/// sweep it trains with or by every pair (the previous way), for `bench
/// detect` to time side by side.
pub fn knn_training_scores(rows: &[Vec<f64>], k: usize, every_pair: bool) -> Vec<f64> {
    let m = knn::Knn::fit(rows, k);
    if every_pair {
        m.training_scores_every_pair()
    } else {
        m.training_scores()
    }
}

/// Combine several models' probabilities (`model_combination_method`).
pub fn combine(probabilities: &[f64], method: CombinationMethod) -> Option<f64> {
    if probabilities.is_empty() {
        return None;
    }
    Some(match method {
        CombinationMethod::Min => probabilities.iter().copied().fold(f64::INFINITY, f64::min),
        CombinationMethod::Max => probabilities
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max),
        CombinationMethod::Mean => probabilities.iter().sum::<f64>() / probabilities.len() as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(name: &str) -> ModelConfig {
        ModelConfig {
            model_name: <ModelKind as crate::config::Choice>::parse(name).expect("a model"),
            model_tag: None,
            model_params: BTreeMap::new(),
        }
    }

    type Rows = Vec<Vec<f64>>;

    /// A noisy sine with lag features (training rows, some normal rows),
    /// and rows that break its pattern.
    fn data() -> (Rows, Rows, Rows) {
        let series: Vec<f64> = (0..400)
            .map(|i| (i as f64 / 10.0).sin() + 0.05 * ((i * 7919 % 97) as f64 / 97.0 - 0.5))
            .collect();
        let rows: Vec<Vec<f64>> = (3..series.len())
            .map(|i| vec![series[i], series[i - 1], series[i - 2], series[i - 3]])
            .collect();
        let normal = rows[100..110].to_vec();
        let odd = vec![
            vec![3.0, 0.1, -0.1, 0.0],
            vec![-2.5, 0.9, 0.95, 0.99],
            vec![0.0, 5.0, -5.0, 0.0],
        ];
        (rows, normal, odd)
    }

    #[test]
    fn every_model_scores_anomalies_above_normal_points() {
        let (train, normal, odd) = data();
        for name in ["PCA", "KNN", "IForest"] {
            let m = TrainedModel::fit(&cfg(name), &train, 42).expect("fits");
            let score = |r: &Vec<f64>| m.raw_score(r).expect("score");
            let normal_max = normal.iter().map(score).fold(0.0, f64::max);
            for r in &odd {
                assert!(
                    score(r) > normal_max,
                    "{name}: anomaly {r:?} scored {}, normal max {normal_max}",
                    score(r)
                );
                assert_eq!(m.probability(r).expect("p"), 1.0, "{name}: {r:?}");
            }
            let below = normal
                .iter()
                .filter(|r| m.probability(r).expect("p") < 1.0)
                .count();
            assert!(
                below * 2 >= normal.len(),
                "{name}: most normal rows must score below 1"
            );
        }
    }

    /// Every parameter the loader lets through (`ModelKind::params`) is one
    /// `fit` reads: a value it cannot take is refused naming that key.
    #[test]
    fn every_parameter_the_loader_accepts_is_read() {
        let (train, _, _) = data();
        let one: Vec<Vec<f64>> = train.iter().map(|r| vec![r[0]]).collect();
        for (kind, name) in <ModelKind as crate::config::Choice>::ALL {
            for key in kind.params() {
                let mut c = cfg(name);
                c.model_params
                    .insert((*key).into(), serde_json::json!("not a value"));
                let rows = if *kind == ModelKind::Mad {
                    &one
                } else {
                    &train
                };
                match TrainedModel::fit(&c, rows, 1) {
                    Err(ModelError::BadParam { key: read, .. }) => assert_eq!(read, *key),
                    other => panic!("{name}: model_params.{key} is not read: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn training_is_reproducible_and_errors_are_clear() {
        let (train, _, _) = data();
        assert_eq!(
            TrainedModel::fit(&cfg("IForest"), &train, 1).expect("fits"),
            TrainedModel::fit(&cfg("IForest"), &train, 1).expect("fits")
        );
        let mut bad = cfg("KNN");
        bad.model_params
            .insert("n_neighbors".into(), serde_json::json!("five"));
        assert_eq!(
            TrainedModel::fit(&bad, &train, 1).unwrap_err().to_string(),
            "model `knn`: model_params.n_neighbors must be a whole number above 0"
        );
        let m = TrainedModel::fit(&cfg("PCA"), &train, 1).expect("fits");
        assert_eq!(
            m.probability(&[1.0]).unwrap_err(),
            ModelError::Width {
                expected: 4,
                found: 1
            }
        );
    }

    #[test]
    fn combination_methods() {
        assert_eq!(combine(&[0.2, 0.8], CombinationMethod::Mean), Some(0.5));
        assert_eq!(combine(&[0.2, 0.8], CombinationMethod::Min), Some(0.2));
        assert_eq!(combine(&[0.2, 0.8], CombinationMethod::Max), Some(0.8));
        assert_eq!(combine(&[], CombinationMethod::Mean), None);
    }
}

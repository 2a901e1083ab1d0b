//! sandstack's detectors against PyOD's own scores on the same rows
//! (`tests/fixtures/pyod_reference.json`, written by
//! `scripts/pyod-reference.py` with pip-installed PyOD): the same ranking
//! of the test rows, by Spearman's rank correlation, and the same top rows.

use std::collections::BTreeMap;

use super::TrainedModel;
use crate::config::{Choice, ModelConfig, ModelKind};

#[derive(serde::Deserialize)]
struct Reference {
    pyod_version: String,
    train: Vec<Vec<f64>>,
    test: Vec<Vec<f64>>,
    models: BTreeMap<String, Scores>,
}

#[derive(serde::Deserialize)]
struct Scores {
    one_feature: bool,
    training_scores: Vec<f64>,
    scores: Vec<f64>,
}

fn reference() -> Reference {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pyod_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture")).expect("json")
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for k in &idx[i..=j] {
            out[*k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    out
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The `n` highest-scoring rows.
fn top(v: &[f64], n: usize) -> std::collections::BTreeSet<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
    idx.into_iter().take(n).collect()
}

/// How closely each model must follow PyOD. The deterministic ones compute
/// what PyOD computes; IForest's trees come from another random source;
/// PCA scores by the Mahalanobis distance in the principal basis, where
/// PyOD sums each row's distance to the component vectors themselves (see
/// `pca.rs`): the two agree on the extremes, less in between.
/// (least rank correlation, of the top 10 rows how many shared at least)
fn required(name: &str) -> (f64, usize) {
    match name {
        "IForest" => (0.95, 8),
        "PCA" => (0.65, 4),
        _ => (0.99, 10),
    }
}

#[test]
fn every_detector_ranks_rows_as_pyod_does() {
    let r = reference();
    let mut failures = Vec::new();
    for (name, want) in &r.models {
        let kind = ModelKind::parse(name).expect("a model sandstack has");
        let cfg = ModelConfig {
            model_name: kind,
            model_tag: None,
            model_params: BTreeMap::new(),
        };
        let cut = |rows: &[Vec<f64>]| -> Vec<Vec<f64>> {
            rows.iter()
                .map(|row| {
                    if want.one_feature {
                        row[..1].to_vec()
                    } else {
                        row.clone()
                    }
                })
                .collect()
        };
        let (train, test) = (cut(&r.train), cut(&r.test));
        let m = TrainedModel::fit(&cfg, &train, 0).expect("fits");
        let got: Vec<f64> = test
            .iter()
            .map(|row| m.raw_score(row).expect("scores"))
            .collect();
        let rho = spearman(&got, &want.scores);
        let (min_rho, min_shared) = required(name);
        let n_top = 10;
        let shared = top(&got, n_top)
            .intersection(&top(&want.scores, n_top))
            .count();
        eprintln!(
            "{name:8} rank correlation {rho:.4} (training rows {} scored), top {n_top} shared {shared}",
            want.training_scores.len()
        );
        if rho < min_rho || shared < min_shared {
            failures.push(format!(
                "{name}: rho {rho:.4} (need {min_rho}), {shared} of the top {n_top} shared"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "against PyOD {}: {failures:?}",
        r.pyod_version
    );
}

#[test]
fn the_rank_correlation_is_spearmans() {
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
    assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
}

//! KNN anomaly score, as PyOD's KNN with its defaults: the distance to the
//! k-th nearest training point (training points do not count themselves).
//! Brute force: training sets are at most `train_max_n` rows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knn {
    k: usize,
    train: Vec<Vec<f64>>,
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

impl Knn {
    pub fn fit(x: &[Vec<f64>], n_neighbors: usize) -> Knn {
        Knn {
            k: n_neighbors.max(1),
            train: x.to_vec(),
        }
    }

    fn kth(&self, row: &[f64], skip: Option<usize>) -> f64 {
        let mut d: Vec<f64> = self
            .train
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, t)| distance(row, t))
            .collect();
        if d.is_empty() {
            return 0.0;
        }
        let k = self.k.min(d.len()) - 1;
        d.select_nth_unstable_by(k, f64::total_cmp);
        d[k]
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        self.kth(row, None)
    }

    /// Scores of the training points themselves (each without itself).
    pub fn training_scores(&self) -> Vec<f64> {
        (0..self.train.len())
            .map(|i| self.kth(&self.train[i], Some(i)))
            .collect()
    }
}

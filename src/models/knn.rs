//! KNN anomaly score, as PyOD's KNN with its defaults: the distance to the
//! k-th nearest training point (training points do not count themselves).
//! Brute force: training sets are at most `train_max_n` rows.
//!
//! Distances are compared squared and the square root taken of the one
//! picked: the root is monotonic, so the result is the same to the bit.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knn {
    k: usize,
    train: Vec<Vec<f64>>,
}

/// Training sets up to this size share each pair's distance between its two
/// rows (an n x n matrix of 8 MB at most); larger ones compute it twice.
const SHARED_PAIRS_UP_TO: usize = 1024;

pub(super) fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>()
}

/// The k-th smallest of `squared` (reordered), as a distance.
fn kth(squared: &mut [f64], k: usize) -> f64 {
    if squared.is_empty() {
        return 0.0;
    }
    let k = k.min(squared.len()) - 1;
    squared.select_nth_unstable_by(k, f64::total_cmp);
    squared[k].sqrt()
}

impl Knn {
    pub fn fit(x: &[Vec<f64>], n_neighbors: usize) -> Knn {
        Knn {
            k: n_neighbors.max(1),
            train: x.to_vec(),
        }
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        let mut d: Vec<f64> = self
            .train
            .iter()
            .map(|t| squared_distance(row, t))
            .collect();
        kth(&mut d, self.k)
    }

    /// Scores of the training points themselves (each without itself).
    pub fn training_scores(&self) -> Vec<f64> {
        let n = self.train.len();
        let mut row = Vec::with_capacity(n);
        if n > SHARED_PAIRS_UP_TO {
            return (0..n)
                .map(|i| {
                    row.clear();
                    row.extend(
                        (0..n)
                            .filter(|&j| j != i)
                            .map(|j| squared_distance(&self.train[i], &self.train[j])),
                    );
                    kth(&mut row, self.k)
                })
                .collect();
        }
        let mut pairs = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let d = squared_distance(&self.train[i], &self.train[j]);
                pairs[i * n + j] = d;
                pairs[j * n + i] = d;
            }
        }
        (0..n)
            .map(|i| {
                row.clear();
                let mine = &pairs[i * n..(i + 1) * n];
                row.extend_from_slice(&mine[..i]);
                row.extend_from_slice(&mine[i + 1..]);
                kth(&mut row, self.k)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance to the k-th nearest other point, computed plainly.
    fn plain(train: &[Vec<f64>], i: usize, k: usize) -> f64 {
        let mut d: Vec<f64> = (0..train.len())
            .filter(|&j| j != i)
            .map(|j| {
                train[i]
                    .iter()
                    .zip(&train[j])
                    .map(|(x, y)| (x - y).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        d.sort_by(f64::total_cmp);
        d[k.min(d.len()) - 1]
    }

    #[test]
    fn training_scores_match_the_plain_definition_to_the_bit_on_both_paths() {
        for n in [7, SHARED_PAIRS_UP_TO + 3] {
            let train: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let x = i as f64;
                    vec![(x * 0.37).sin(), (x * 0.11).cos() * 3.0, (x % 13.0) / 7.0]
                })
                .collect();
            let m = Knn::fit(&train, 5);
            let scores = m.training_scores();
            for i in [0, 1, n / 2, n - 1] {
                assert_eq!(
                    scores[i].to_bits(),
                    plain(&train, i, 5).to_bits(),
                    "n {n}, row {i}"
                );
            }
        }
    }
}

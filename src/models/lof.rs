//! LOF, as PyOD's (scikit-learn's `LocalOutlierFactor`, novelty mode, its
//! default Euclidean metric): a row's local reachability density against
//! its `n_neighbors` nearest training rows', as a ratio. Brute force, as
//! [`super::knn`]: training sets are at most `train_max_n` rows.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lof {
    k: usize,
    train: Vec<Vec<f64>>,
    /// Each training row's distance to its k-th nearest other row.
    k_distance: Vec<f64>,
    /// Each training row's local reachability density.
    lrd: Vec<f64>,
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    super::knn::squared_distance(a, b).sqrt()
}

/// The k nearest of `candidates` (distance, index), nearest first; ties
/// by index, as a brute-force search finds them.
fn nearest(mut candidates: Vec<(f64, usize)>, k: usize) -> Vec<(f64, usize)> {
    let by = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if k < candidates.len() {
        candidates.select_nth_unstable_by(k - 1, by);
        candidates.truncate(k);
    }
    candidates.sort_by(by);
    candidates
}

/// scikit-learn's: 1 / (mean reachability distance + 1e-10).
fn density(neighbours: &[(f64, usize)], k_distance: &[f64]) -> f64 {
    let reach: f64 = neighbours.iter().map(|(d, j)| d.max(k_distance[*j])).sum();
    1.0 / (reach / neighbours.len() as f64 + 1e-10)
}

impl Lof {
    /// The model and its training rows' scores.
    pub fn fit(rows: &[Vec<f64>], n_neighbors: usize) -> (Lof, Vec<f64>) {
        let n = rows.len();
        let k = n_neighbors.min(n.saturating_sub(1)).max(1);
        let neighbours: Vec<Vec<(f64, usize)>> = (0..n)
            .map(|i| {
                let others = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| (distance(&rows[i], &rows[j]), j))
                    .collect();
                nearest(others, k)
            })
            .collect();
        let k_distance: Vec<f64> = neighbours
            .iter()
            .map(|nb| nb.last().map_or(0.0, |x| x.0))
            .collect();
        let lrd: Vec<f64> = neighbours
            .iter()
            .map(|nb| density(nb, &k_distance))
            .collect();
        let scores = neighbours
            .iter()
            .enumerate()
            .map(|(i, nb)| nb.iter().map(|(_, j)| lrd[*j]).sum::<f64>() / nb.len() as f64 / lrd[i])
            .collect();
        let model = Lof {
            k,
            train: rows.to_vec(),
            k_distance,
            lrd,
        };
        (model, scores)
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        let all = self
            .train
            .iter()
            .enumerate()
            .map(|(j, t)| (distance(row, t), j))
            .collect();
        let nb = nearest(all, self.k);
        let own = density(&nb, &self.k_distance);
        nb.iter().map(|(_, j)| self.lrd[*j]).sum::<f64>() / nb.len() as f64 / own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolated_row_has_a_high_factor_and_a_dense_one_about_one() {
        let rows: Vec<Vec<f64>> = (0..60)
            .map(|i| vec![(i % 6) as f64 * 0.1, (i / 6) as f64 * 0.1])
            .collect();
        let (m, training) = Lof::fit(&rows, 20);
        assert!(
            training.iter().all(|s| *s > 0.8 && *s < 1.5),
            "{training:?}"
        );
        assert!(m.score(&[5.0, 5.0]) > 5.0);
        assert!((m.score(&[0.25, 0.45]) - 1.0).abs() < 0.3);
    }
}

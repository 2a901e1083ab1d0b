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

    /// [`Knn::training_scores`] the way they were found before: every
    /// pair's distance. Kept as its reference (the tests and `bench
    /// detect` compare the two).
    pub fn training_scores_every_pair(&self) -> Vec<f64> {
        let n = self.train.len();
        let mut row = Vec::with_capacity(n);
        (0..n)
            .map(|i| {
                row.clear();
                row.extend(
                    (0..n)
                        .filter(|&j| j != i)
                        .map(|j| squared_distance(&self.train[i], &self.train[j])),
                );
                kth(&mut row, self.k)
            })
            .collect()
    }

    /// Scores of the training points themselves (each without itself).
    ///
    /// Exact, without computing every pair: rows are sorted by the feature
    /// with the widest spread, and each row's neighbours are visited
    /// outwards in that order until the gap in that feature alone passes
    /// the k-th nearest distance found so far. The gap is a lower bound of
    /// the distance in floating point too (a sum of non-negative terms is
    /// never rounded below one of them), so no row that could be among the
    /// k nearest is skipped, and the k-th distance is the brute force's to
    /// the bit. Hand-written: spatial-index crates compute distances their
    /// own way, and models must score the same as saved ones did.
    pub fn training_scores(&self) -> Vec<f64> {
        let n = self.train.len();
        if n < 2 {
            return vec![0.0; n];
        }
        let k = self.k.min(n - 1);
        let axis = widest_feature(&self.train);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|a, b| self.train[*a][axis].total_cmp(&self.train[*b][axis]));
        let key: Vec<f64> = order.iter().map(|i| self.train[*i][axis]).collect();
        let mut scores = vec![0.0; n];
        // The k nearest so far, largest first.
        let mut best: std::collections::BinaryHeap<Ordered> = std::collections::BinaryHeap::new();
        for p in 0..n {
            best.clear();
            let me = &self.train[order[p]];
            let (mut left, mut right) = (p.checked_sub(1), (p + 1 < n).then_some(p + 1));
            loop {
                let gap = |q: usize| (key[p] - key[q]).powi(2);
                // The nearer side in the sorted feature goes first.
                let q = match (left, right) {
                    (Some(l), Some(r)) if gap(l) <= gap(r) => l,
                    (Some(_), Some(r)) => r,
                    (Some(l), None) => l,
                    (None, Some(r)) => r,
                    (None, None) => break,
                };
                if best.len() == k && best.peek().is_some_and(|b| gap(q) > b.0) {
                    // Every row further out on either side is further still.
                    break;
                }
                let d = squared_distance(me, &self.train[order[q]]);
                if best.len() < k {
                    best.push(Ordered(d));
                } else if best.peek().is_some_and(|b| d < b.0) {
                    best.pop();
                    best.push(Ordered(d));
                }
                if q < p {
                    left = q.checked_sub(1);
                } else {
                    right = (q + 1 < n).then_some(q + 1);
                }
            }
            scores[order[p]] = best.peek().map_or(0.0, |b| b.0.sqrt());
        }
        scores
    }
}

/// The feature whose values spread widest (by variance).
fn widest_feature(rows: &[Vec<f64>]) -> usize {
    let width = rows.first().map_or(0, Vec::len);
    let n = rows.len() as f64;
    (0..width)
        .map(|c| {
            let mean = rows.iter().map(|r| r[c]).sum::<f64>() / n;
            let var = rows.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>();
            (c, var)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(c, _)| c)
}

/// A squared distance ordered by `total_cmp`, for the heap.
#[derive(PartialEq)]
struct Ordered(f64);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
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
    fn ties_and_repeated_rows_give_the_brute_force_answer() {
        let stuck: Vec<Vec<f64>> = (0..300)
            .map(|i| vec![(i % 4) as f64, 1.0, ((i / 50) % 2) as f64])
            .collect();
        for k in [1, 5, 80, 400] {
            let m = Knn::fit(&stuck, k);
            let scores = m.training_scores();
            assert_eq!(scores, m.training_scores_every_pair());
            for (i, s) in scores.iter().enumerate() {
                assert_eq!(s.to_bits(), plain(&stuck, i, k).to_bits(), "k {k}, row {i}");
            }
        }
    }

    #[test]
    fn training_scores_match_the_plain_definition_to_the_bit_on_both_paths() {
        for n in [2, 3, 7, 1027] {
            let train: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let x = i as f64;
                    vec![(x * 0.37).sin(), (x * 0.11).cos() * 3.0, (x % 13.0) / 7.0]
                })
                .collect();
            let m = Knn::fit(&train, 5);
            let scores = m.training_scores();
            for (i, s) in scores.iter().enumerate() {
                assert_eq!(s.to_bits(), plain(&train, i, 5).to_bits(), "n {n}, row {i}");
            }
        }
    }
}

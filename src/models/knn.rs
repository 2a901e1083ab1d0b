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
    /// The feature with the widest spread; `train` is sorted by it.
    axis: usize,
    train: Rows,
}

/// Feature rows in one allocation (saved models hold thousands of rows per
/// metric; one vector each made loading them mostly allocation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Rows {
    width: usize,
    #[serde(with = "f64_bits")]
    flat: Vec<f64>,
}

/// Many floats saved as their bytes (little-endian, base64): exact by
/// construction, and a fraction of the size and parsing time of decimal
/// text, which was most of a KNN model file.
mod f64_bits {
    use base64::Engine as _;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(D::Error::custom)?;
        if bytes.len() % 8 != 0 {
            return Err(D::Error::custom("f64 bytes not a multiple of 8"));
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

impl Rows {
    pub(super) fn of(rows: &[Vec<f64>]) -> Rows {
        Rows {
            width: rows.first().map_or(0, Vec::len),
            flat: rows.iter().flatten().copied().collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.flat.len().checked_div(self.width).unwrap_or(0)
    }

    pub(super) fn row(&self, i: usize) -> &[f64] {
        &self.flat[i * self.width..(i + 1) * self.width]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &[f64]> {
        (0..self.len()).map(|i| self.row(i))
    }
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
        let mut rows = Rows::of(x);
        let axis = widest_feature(&rows);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| rows.row(*a)[axis].total_cmp(&rows.row(*b)[axis]));
        rows.flat = order.iter().flat_map(|i| rows.row(*i).to_vec()).collect();
        Knn {
            k: n_neighbors.max(1),
            axis,
            train: rows,
        }
    }

    /// The distance from `row` to its k-th nearest training row.
    pub fn score(&self, row: &[f64]) -> f64 {
        let n = self.train.len();
        // The first row at or past the query in the sorted feature.
        let (mut at, mut hi) = (0, n);
        while at < hi {
            let mid = (at + hi) / 2;
            if self.train.row(mid)[self.axis] < row[self.axis] {
                at = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.kth_nearest(
            row,
            at.checked_sub(1),
            (at < n).then_some(at),
            self.k.min(n),
        )
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
                        .map(|j| squared_distance(self.train.row(i), self.train.row(j))),
                );
                kth(&mut row, self.k)
            })
            .collect()
    }

    /// Scores of the training rows themselves, each without itself, in the
    /// model's row order.
    pub fn training_scores(&self) -> Vec<f64> {
        let n = self.train.len();
        if n < 2 {
            return vec![0.0; n];
        }
        let k = self.k.min(n - 1);
        (0..n)
            .map(|p| {
                let right = (p + 1 < n).then_some(p + 1);
                self.kth_nearest(self.train.row(p), p.checked_sub(1), right, k)
            })
            .collect()
    }

    /// The distance from `query` to its k-th nearest among the rows from
    /// `left` down and from `right` up, without computing every distance:
    /// the rows are sorted by the feature with the widest spread, and are
    /// visited outwards from the query in that order until the gap in that
    /// feature alone passes the k-th nearest distance found so far. The gap
    /// is a lower bound of the distance in floating point too (a sum of
    /// non-negative terms is never rounded below one of them), so no row
    /// that could be among the k nearest is skipped, and the result is the
    /// brute force's to the bit. Hand-written: spatial-index crates compute
    /// distances their own way, and models must score as saved ones did.
    fn kth_nearest(
        &self,
        query: &[f64],
        mut left: Option<usize>,
        mut right: Option<usize>,
        k: usize,
    ) -> f64 {
        let n = self.train.len();
        let key = query[self.axis];
        let gap = |q: usize| (key - self.train.row(q)[self.axis]).powi(2);
        // The k nearest so far, largest first.
        let mut best: std::collections::BinaryHeap<Ordered> =
            std::collections::BinaryHeap::with_capacity(k + 1);
        loop {
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
            let d = squared_distance(query, self.train.row(q));
            if best.len() < k {
                best.push(Ordered(d));
            } else if best.peek().is_some_and(|b| d < b.0) {
                best.pop();
                best.push(Ordered(d));
            }
            if left == Some(q) {
                left = q.checked_sub(1);
            } else {
                right = (q + 1 < n).then_some(q + 1);
            }
        }
        best.peek().map_or(0.0, |b| b.0.sqrt())
    }
}

/// The feature whose values spread widest (by variance).
fn widest_feature(rows: &Rows) -> usize {
    let n = rows.len() as f64;
    (0..rows.width)
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

    /// Every row's plain k-th distance, sorted as bits (the model keeps
    /// its rows in its own order).
    fn all_plain(train: &[Vec<f64>], k: usize) -> Vec<u64> {
        let mut v: Vec<u64> = (0..train.len())
            .map(|i| plain(train, i, k).to_bits())
            .collect();
        v.sort_unstable();
        v
    }

    fn bits(scores: &[f64]) -> Vec<u64> {
        let mut v: Vec<u64> = scores.iter().map(|s| s.to_bits()).collect();
        v.sort_unstable();
        v
    }

    /// The k-th distance from `row` to the training rows, computed plainly.
    fn plain_query(train: &[Vec<f64>], row: &[f64], k: usize) -> f64 {
        let mut d: Vec<f64> = train.iter().map(|t| squared_distance(row, t)).collect();
        d.sort_by(f64::total_cmp);
        d[k.min(d.len()) - 1].sqrt()
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
            assert_eq!(bits(&scores), all_plain(&stuck, k), "k {k}");
            for q in [[0.0, 1.0, 0.0], [1.5, 1.0, 1.0], [9.0, -3.0, 0.5]] {
                assert_eq!(
                    m.score(&q).to_bits(),
                    plain_query(&stuck, &q, k).to_bits(),
                    "k {k}, {q:?}"
                );
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
            assert_eq!(bits(&m.training_scores()), all_plain(&train, 5), "n {n}");
            for i in 0..50 {
                let x = i as f64 * 0.77;
                let q = [x.cos(), x.sin() * 2.0, (i % 5) as f64 / 3.0];
                assert_eq!(
                    m.score(&q).to_bits(),
                    plain_query(&train, &q, 5).to_bits(),
                    "n {n}, query {i}"
                );
            }
        }
        assert_eq!(Knn::fit(&[], 5).score(&[1.0]), 0.0);
    }

    #[test]
    fn saved_rows_come_back_to_the_bit() {
        let train: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                vec![
                    (i as f64 * 0.1).sin() / 3.0,
                    f64::MIN_POSITIVE * i as f64,
                    -0.0,
                ]
            })
            .collect();
        let m = Knn::fit(&train, 3);
        let json = serde_json::to_string(&m).expect("save");
        let back: Knn = serde_json::from_str(&json).expect("load");
        assert_eq!(back, m);
        assert!(
            serde_json::from_str::<Knn>(&json.replace("\"flat\":\"", "\"flat\":\"AAA")).is_err()
        );
    }
}

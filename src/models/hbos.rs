//! HBOS, as PyOD computes it with a fixed number of bins: per feature, a
//! histogram of the training values (numpy's `histogram`, density), a value
//! scored by `-log2(density of its bin + alpha)`, summed over features. A
//! value past the outer edges by at most `tol` bin widths takes the outer
//! bin; further out, the rarest bin's score.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hbos {
    /// Per feature: the n_bins + 1 edges and each bin's `log2(density + alpha)`.
    edges: Vec<Vec<f64>>,
    logs: Vec<Vec<f64>>,
    tol: f64,
}

impl Hbos {
    pub fn fit(rows: &[Vec<f64>], n_bins: usize, alpha: f64, tol: f64) -> Hbos {
        let width = rows.first().map_or(0, Vec::len);
        let (mut edges, mut logs) = (Vec::with_capacity(width), Vec::with_capacity(width));
        for d in 0..width {
            let col: Vec<f64> = rows.iter().map(|r| r[d]).collect();
            let (e, density) = histogram(&col, n_bins);
            logs.push(density.iter().map(|h| (h + alpha).log2()).collect());
            edges.push(e);
        }
        Hbos { edges, logs, tol }
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        -row.iter()
            .enumerate()
            .map(|(d, &x)| self.feature(d, x))
            .sum::<f64>()
    }

    fn feature(&self, d: usize, x: f64) -> f64 {
        let (e, logs) = (&self.edges[d], &self.logs[d]);
        let bins = logs.len();
        let rarest = logs.iter().copied().fold(f64::INFINITY, f64::min);
        // numpy's digitize(right=True): how many edges lie below x.
        match e.partition_point(|edge| *edge < x) {
            0 => {
                let near = e[0] - x <= (e[1] - e[0]) * self.tol;
                if near {
                    logs[0]
                } else {
                    rarest
                }
            }
            i if i == bins + 1 => {
                let near = x - e[bins] <= (e[bins] - e[bins - 1]) * self.tol;
                if near {
                    logs[bins - 1]
                } else {
                    rarest
                }
            }
            i => logs[i - 1],
        }
    }
}

/// numpy's `histogram(values, bins=n, density=True)`: equal bins over the
/// values' range (widened by 0.5 each way when it is a point), each value
/// in the bin its edges put it in, the last bin closed.
fn histogram(values: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if lo == hi {
        lo -= 0.5;
        hi += 0.5;
    }
    // numpy's linspace: start + i * step, the last edge exactly `hi`.
    let step = (hi - lo) / n as f64;
    let mut edges: Vec<f64> = (0..=n).map(|i| lo + i as f64 * step).collect();
    edges[n] = hi;
    let mut counts = vec![0usize; n];
    let norm = n as f64 / (hi - lo);
    for &v in values {
        let mut i = (((v - lo) * norm) as usize).min(n - 1);
        // As numpy: the computed index corrected by the edges themselves.
        if v < edges[i] {
            i = i.saturating_sub(1);
        } else if i + 1 < n && v >= edges[i + 1] {
            i += 1;
        }
        counts[i] += 1;
    }
    let total = values.len() as f64;
    let density = counts
        .iter()
        .enumerate()
        .map(|(i, c)| *c as f64 / total / (edges[i + 1] - edges[i]))
        .collect();
    (edges, density)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_as_numpy() {
        let (e, d) = histogram(&[0.0, 1.0, 1.0, 2.0, 10.0], 5);
        assert_eq!(e, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        // numpy: [0.3, 0.1, 0, 0, 0.1]
        let want = [0.3, 0.1, 0.0, 0.0, 0.1];
        for (a, b) in d.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{d:?}");
        }
        let (e, _) = histogram(&[3.0, 3.0], 2);
        assert_eq!(e, vec![2.5, 3.0, 3.5]);
    }

    #[test]
    fn values_in_empty_or_far_bins_score_high() {
        let mut rows: Vec<Vec<f64>> = (0..95).map(|i| vec![(i % 5) as f64]).collect();
        rows.extend((0..5).map(|_| vec![9.0]));
        let m = Hbos::fit(&rows, 10, 0.1, 0.5);
        assert!(m.score(&[7.0]) > m.score(&[2.0]), "an empty bin");
        assert_eq!(
            m.score(&[100.0]),
            m.score(&[7.0]),
            "far out: the rarest bin's"
        );
        assert_eq!(
            m.score(&[9.2]),
            m.score(&[9.0]),
            "within tol of the last edge"
        );
    }
}

//! ECOD and COPOD, as PyOD computes them: per feature, the left and right
//! tail probabilities of a value under the empirical distribution
//! (`-ln F(x)` and `-ln (1 - F(x-))`), picked by the feature's skewness and
//! summed over features. PyOD scores a new row against the training rows
//! with that row added to them (its `decision_function` concatenates the
//! two), so a new row here is ranked among n + 1 values the same way.

use serde::{Deserialize, Serialize};

/// Which of the two combines a feature's tails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tails {
    /// ECOD: the larger tail, or the skewness' tail if larger still.
    Ecod,
    /// COPOD: the skewness' tail, or the mean of both if larger.
    Copod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ecdf {
    tails: Tails,
    /// Each feature's training values, sorted.
    sorted: Vec<Vec<f64>>,
    /// Each feature's sums of x, x² and x³ (for the skewness' sign).
    sums: Vec<[f64; 3]>,
}

impl Ecdf {
    pub fn fit(rows: &[Vec<f64>], tails: Tails) -> Ecdf {
        let width = rows.first().map_or(0, Vec::len);
        let mut sorted: Vec<Vec<f64>> = (0..width)
            .map(|d| rows.iter().map(|r| r[d]).collect())
            .collect();
        let sums = sorted
            .iter()
            .map(|col| {
                col.iter()
                    .fold([0.0; 3], |[a, b, c], x| [a + x, b + x * x, c + x * x * x])
            })
            .collect();
        for col in &mut sorted {
            col.sort_by(f64::total_cmp);
        }
        Ecdf {
            tails,
            sorted,
            sums,
        }
    }

    /// A new row's score, among the training values and itself.
    pub fn score(&self, row: &[f64]) -> f64 {
        let n = self.sorted.first().map_or(0, Vec::len);
        let total = (n + 1) as f64;
        row.iter()
            .enumerate()
            .map(|(d, &x)| {
                let col = &self.sorted[d];
                let le = col.partition_point(|v| *v <= x) + 1;
                let ge = n - col.partition_point(|v| *v < x) + 1;
                let [s1, s2, s3] = self.sums[d];
                let sign = skew_sign([s1 + x, s2 + x * x, s3 + x * x * x], total);
                self.combine(le as f64 / total, ge as f64 / total, sign)
            })
            .sum()
    }

    /// The training rows' own scores, as PyOD's `fit` computes them (each
    /// among the training values alone).
    pub fn training_scores(&self, rows: &[Vec<f64>]) -> Vec<f64> {
        let n = rows.len() as f64;
        let signs: Vec<f64> = self.sums.iter().map(|s| skew_sign(*s, n)).collect();
        rows.iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(d, &x)| {
                        let col = &self.sorted[d];
                        let le = col.partition_point(|v| *v <= x);
                        let ge = col.len() - col.partition_point(|v| *v < x);
                        self.combine(le as f64 / n, ge as f64 / n, signs[d])
                    })
                    .sum()
            })
            .collect()
    }

    /// One feature's score from its left and right tail probabilities.
    fn combine(&self, left: f64, right: f64, skew_sign: f64) -> f64 {
        let (ul, ur) = (-left.ln(), -right.ln());
        // PyOD: U_l * -sign(s - 1) + U_r * sign(s + 1), for s the sign.
        let by_skew = ul * -np_sign(skew_sign - 1.0) + ur * np_sign(skew_sign + 1.0);
        match self.tails {
            Tails::Ecod => by_skew.max(ul.max(ur)),
            Tails::Copod => by_skew.max((ul + ur) / 2.0),
        }
    }
}

/// The sign of the sample skewness (scipy's biased estimate: only its
/// third central moment's sign matters) from the sums of x, x², x³.
fn skew_sign([s1, s2, s3]: [f64; 3], n: f64) -> f64 {
    let mean = s1 / n;
    let m2 = s2 / n - mean * mean;
    let m3 = s3 / n - 3.0 * mean * s2 / n + 2.0 * mean.powi(3);
    // Below rounding noise of the sums, a column is symmetric (or constant).
    let noise =
        1e-12 * (s3.abs() / n + (mean.abs() * s2 / n) + mean.abs().powi(3)).max(f64::MIN_POSITIVE);
    if m2 <= 0.0 || m3.abs() <= noise {
        0.0
    } else {
        m3.signum()
    }
}

/// numpy's `sign`: 0 at 0 (Rust's `signum` gives ±1).
fn np_sign(x: f64) -> f64 {
    if x == 0.0 {
        0.0
    } else {
        x.signum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_beyond_every_training_value_scores_highest() {
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![(i as f64 * 0.7).sin(), (i % 5) as f64])
            .collect();
        for tails in [Tails::Ecod, Tails::Copod] {
            let m = Ecdf::fit(&rows, tails);
            let top = m.training_scores(&rows).into_iter().fold(0.0, f64::max);
            assert!(m.score(&[3.0, 9.0]) > top, "{tails:?}");
            assert!(m.score(&[0.0, 2.0]) < m.score(&[3.0, 9.0]), "{tails:?}");
        }
    }

    #[test]
    fn skewness_signs() {
        let sums = |xs: &[f64]| {
            xs.iter()
                .fold([0.0; 3], |[a, b, c], x| [a + x, b + x * x, c + x * x * x])
        };
        assert_eq!(skew_sign(sums(&[1.0, 1.0, 1.0, 10.0]), 4.0), 1.0);
        assert_eq!(skew_sign(sums(&[-10.0, 1.0, 1.0, 1.0]), 4.0), -1.0);
        assert_eq!(skew_sign(sums(&[1.0, 2.0, 3.0]), 3.0), 0.0);
        assert_eq!(skew_sign(sums(&[5.0, 5.0]), 2.0), 0.0);
    }
}

//! One-class SVM, as PyOD's OCSVM (scikit-learn's `OneClassSVM`, libsvm)
//! with its defaults: an RBF kernel, `gamma` "auto" (1 / features) or
//! "scale" (1 / (features x variance)) or a number, `nu` 0.5, tolerance
//! 1e-3. The dual, `min ½ aᵀQa` with `0 ≤ a ≤ 1` and `Σa = nu·n`, is solved
//! by sequential minimal optimisation with libsvm's second-order choice of
//! the pair to move; the problem is strictly convex, so the decision
//! function is libsvm's to the tolerance. The anomaly score is PyOD's, the
//! decision function negated: `rho - Σ a_i K(x_i, x)`.
//!
//! Hand-written: no maintained Rust crate solves libsvm's one-class
//! problem (the SVM crates solve classification or regression, or bind
//! libsvm's C).

use serde::{Deserialize, Serialize};

use super::knn::squared_distance;

/// How `gamma` is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gamma {
    /// 1 / features (PyOD's default).
    Auto,
    /// 1 / (features x the variance of every value).
    Scale,
    Value(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ocsvm {
    gamma: f64,
    rho: f64,
    /// The support vectors (a > 0) and their weights.
    support: Vec<Vec<f64>>,
    weights: Vec<f64>,
}

/// Kernel rows computed so far, kept while they fit in this many values
/// (256 MB); past it rows are computed again when asked for.
const CACHE_VALUES: usize = 32 << 20;

struct Kernel<'a> {
    x: &'a [Vec<f64>],
    gamma: f64,
    rows: Vec<Option<Vec<f64>>>,
    cached: usize,
}

impl Kernel<'_> {
    fn k(&self, i: usize, j: usize) -> f64 {
        (-self.gamma * squared_distance(&self.x[i], &self.x[j])).exp()
    }

    fn row(&mut self, i: usize) -> std::borrow::Cow<'_, [f64]> {
        if self.rows[i].is_none() {
            let r: Vec<f64> = (0..self.x.len()).map(|j| self.k(i, j)).collect();
            if self.cached + r.len() > CACHE_VALUES {
                return std::borrow::Cow::Owned(r);
            }
            self.cached += r.len();
            self.rows[i] = Some(r);
        }
        std::borrow::Cow::Borrowed(self.rows[i].as_deref().unwrap_or(&[]))
    }
}

impl Ocsvm {
    pub fn fit(x: &[Vec<f64>], nu: f64, gamma: Gamma, tol: f64) -> (Ocsvm, Vec<f64>) {
        let n = x.len();
        let width = x.first().map_or(1, Vec::len).max(1) as f64;
        let gamma = match gamma {
            Gamma::Auto => 1.0 / width,
            Gamma::Scale => {
                let all: Vec<f64> = x.iter().flatten().copied().collect();
                let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
                let var =
                    all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len().max(1) as f64;
                if var > 0.0 {
                    1.0 / (width * var)
                } else {
                    1.0
                }
            }
            Gamma::Value(g) => g,
        };
        let mut kernel = Kernel {
            x,
            gamma,
            rows: vec![None; n],
            cached: 0,
        };
        // libsvm's start: the first floor(nu n) weights at 1, the next the rest.
        let total = nu * n as f64;
        let mut a = vec![0.0; n];
        let whole = (total.floor() as usize).min(n);
        a[..whole].iter_mut().for_each(|v| *v = 1.0);
        if whole < n {
            a[whole] = total - whole as f64;
        }
        // The gradient Qa.
        let mut g = vec![0.0; n];
        for (i, ai) in a.iter().enumerate() {
            if *ai > 0.0 {
                let row = kernel.row(i);
                for (gj, kij) in g.iter_mut().zip(row.iter()) {
                    *gj += ai * kij;
                }
            }
        }
        let max_steps = 100 * n + 10_000;
        for _ in 0..max_steps {
            // i: the most violating weight that can grow; j: by the second
            // order gain among those that can shrink.
            let Some((i, gmax)) = (0..n)
                .filter(|&t| a[t] < 1.0)
                .map(|t| (t, -g[t]))
                .max_by(|p, q| p.1.total_cmp(&q.1))
            else {
                break;
            };
            let row_i = kernel.row(i).into_owned();
            let mut gmax2 = f64::NEG_INFINITY;
            let mut best: Option<(usize, f64)> = None;
            for t in (0..n).filter(|&t| a[t] > 0.0) {
                gmax2 = gmax2.max(g[t]);
                let diff = gmax + g[t];
                if diff > 0.0 {
                    let quad = (1.0 + 1.0 - 2.0 * row_i[t]).max(1e-12);
                    let gain = -(diff * diff) / quad;
                    if best.is_none_or(|(_, b)| gain <= b) {
                        best = Some((t, gain));
                    }
                }
            }
            let Some((j, _)) = best.filter(|_| gmax + gmax2 >= tol) else {
                break;
            };
            let quad = (2.0 - 2.0 * row_i[j]).max(1e-12);
            let (old_i, old_j) = (a[i], a[j]);
            let delta = (g[i] - g[j]) / quad;
            let sum = old_i + old_j;
            a[i] -= delta;
            a[j] += delta;
            clip_to_box(&mut a, i, j, sum);
            clip_to_box(&mut a, j, i, sum);
            let (di, dj) = (a[i] - old_i, a[j] - old_j);
            let row_j = kernel.row(j);
            for t in 0..n {
                g[t] += row_i[t] * di + row_j[t] * dj;
            }
        }
        // rho: the mean gradient of the free weights (libsvm's).
        let (mut sum, mut free, mut ub, mut lb) = (0.0, 0usize, f64::INFINITY, f64::NEG_INFINITY);
        for t in 0..n {
            if a[t] >= 1.0 {
                lb = lb.max(g[t]);
            } else if a[t] <= 0.0 {
                ub = ub.min(g[t]);
            } else {
                sum += g[t];
                free += 1;
            }
        }
        let rho = if free > 0 {
            sum / free as f64
        } else {
            (ub + lb) / 2.0
        };
        let training = g.iter().map(|gt| rho - gt).collect();
        let (support, weights) = x
            .iter()
            .zip(&a)
            .filter(|(_, w)| **w > 0.0)
            .map(|(r, w)| (r.clone(), *w))
            .unzip();
        (
            Ocsvm {
                gamma,
                rho,
                support,
                weights,
            },
            training,
        )
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        let f: f64 = self
            .support
            .iter()
            .zip(&self.weights)
            .map(|(s, w)| w * (-self.gamma * squared_distance(s, row)).exp())
            .sum();
        self.rho - f
    }
}

/// Bring the pair back into the box [0, 1] along the line `a[hi] + a[lo] =
/// sum` (libsvm's clipping for equal bounds), from `hi`'s side: called once
/// from each side.
fn clip_to_box(a: &mut [f64], hi: usize, lo: usize, sum: f64) {
    if sum > 1.0 {
        if a[hi] > 1.0 {
            a[hi] = 1.0;
            a[lo] = sum - 1.0;
        }
    } else if a[lo] < 0.0 {
        a[lo] = 0.0;
        a[hi] = sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weights_meet_the_constraints_and_outliers_score_highest() {
        let x: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let t = i as f64 * 0.1;
                vec![t.sin(), t.cos()]
            })
            .collect();
        let (m, training) = Ocsvm::fit(&x, 0.5, Gamma::Auto, 1e-3);
        let total: f64 = m.weights.iter().sum();
        assert!((total - 100.0).abs() < 1e-6, "sum of weights {total}");
        assert!(m.weights.iter().all(|w| *w > 0.0 && *w <= 1.0));
        assert_eq!(training.len(), 200);
        let far = m.score(&[3.0, 3.0]);
        let near = m.score(&[1.0, 0.0]);
        assert!(far > near, "{far} {near}");
        // A training set of one repeated row: no spread, no failure.
        let (same, t) = Ocsvm::fit(&vec![vec![1.0, 1.0]; 10], 0.5, Gamma::Scale, 1e-3);
        assert!(same.score(&[1.0, 1.0]).is_finite() && t.iter().all(|v| v.is_finite()));
    }
}

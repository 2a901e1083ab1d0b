//! PCA anomaly score: standardize, keep every component with non-negligible
//! variance, and score a point by its squared projections weighted by each
//! component's variance (the Mahalanobis distance in the principal basis).
//! PyOD's PCA standardizes and weights alike but sums a row's Euclidean
//! distances to the component vectors themselves (`cdist(X, components_)`),
//! which depends on each eigenvector's sign; the two rank the extremes
//! alike and the rest less so (`models::reference_tests` measures it).

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Row-major components (one per row) and their variances.
    components: Vec<Vec<f64>>,
    variances: Vec<f64>,
}

impl Pca {
    /// `n_components`: keep only the largest ones (None keeps all).
    pub fn fit(x: &[Vec<f64>], n_components: Option<usize>) -> Pca {
        let (n, d) = (x.len(), x.first().map_or(0, Vec::len));
        let mean: Vec<f64> = (0..d)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let scale: Vec<f64> = (0..d)
            .map(|j| {
                let var =
                    x.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
                if var > 1e-24 {
                    var.sqrt()
                } else {
                    1.0
                }
            })
            .collect();
        let z = DMatrix::from_fn(n, d, |i, j| (x[i][j] - mean[j]) / scale[j]);
        let cov = (z.transpose() * &z) / (n.max(2) - 1) as f64;
        let eig = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|a, b| eig.eigenvalues[*b].total_cmp(&eig.eigenvalues[*a]));
        let top = eig.eigenvalues.iter().copied().fold(0.0_f64, f64::max);
        let keep = n_components.unwrap_or(d).min(d);
        let mut components = Vec::new();
        let mut variances = Vec::new();
        for &k in order.iter().take(keep) {
            let v = eig.eigenvalues[k];
            if v > 1e-12 * top.max(1e-300) {
                components.push(eig.eigenvectors.column(k).iter().copied().collect());
                variances.push(v);
            }
        }
        Pca {
            mean,
            scale,
            components,
            variances,
        }
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        let z: Vec<f64> = row
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (v - m) / s)
            .collect();
        self.components
            .iter()
            .zip(&self.variances)
            .map(|(c, var)| {
                let proj: f64 = c.iter().zip(&z).map(|(a, b)| a * b).sum();
                proj * proj / var
            })
            .sum()
    }
}

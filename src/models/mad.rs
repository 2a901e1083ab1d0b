//! MAD, as PyOD computes it: the modified z-score `0.6745 |x - median| / MAD`
//! of one feature against the training values' median and median absolute
//! deviation. Like PyOD, it takes one feature only.

use serde::{Deserialize, Serialize};

use super::preprocess::median;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mad {
    median: f64,
    mad: f64,
}

impl Mad {
    /// Rows of one feature each (the caller checks the width).
    pub fn fit(rows: &[Vec<f64>]) -> Mad {
        let mut col: Vec<f64> = rows.iter().map(|r| r[0]).collect();
        let m = median(&mut col);
        let mut dev: Vec<f64> = col.iter().map(|x| (x - m).abs()).collect();
        Mad {
            median: m,
            mad: median(&mut dev),
        }
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        let diff = (row[0] - self.median).abs();
        let z = 0.6745 * diff / self.mad;
        // numpy's nan_to_num: 0/0 is 0, x/0 the largest float.
        if z.is_nan() {
            0.0
        } else {
            z.min(f64::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_z_scores() {
        let rows: Vec<Vec<f64>> = [1.0, 2.0, 3.0, 4.0, 100.0]
            .iter()
            .map(|x| vec![*x])
            .collect();
        let m = Mad::fit(&rows);
        assert_eq!((m.median, m.mad), (3.0, 1.0));
        assert!((m.score(&[5.0]) - 1.349).abs() < 1e-12);
        let flat = Mad::fit(&[vec![2.0], vec![2.0]]);
        assert_eq!(flat.score(&[2.0]), 0.0);
        assert_eq!(flat.score(&[3.0]), f64::MAX);
    }
}

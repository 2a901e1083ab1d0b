//! Isolation Forest (Liu, Ting and Zhou, 2008), as scikit-learn's defaults:
//! 100 trees on subsamples of up to 256 points, random feature and split,
//! score `2^(-E[h(x)] / c(psi))`. Hand-written: no maintained Rust crate
//! offers it with serializable trees; it is a few dozen lines. Seeded, so
//! training is reproducible.

use rand::{Rng, RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Node {
    Leaf {
        size: usize,
    },
    Split {
        feature: usize,
        at: f64,
        left: Box<Node>,
        right: Box<Node>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    trees: Vec<Node>,
    sample_size: usize,
}

/// Average path length of an unsuccessful search in a binary search tree
/// of `n` points (the normaliser `c(n)`).
fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

fn build(points: &mut [&Vec<f64>], depth: usize, limit: usize, rng: &mut impl Rng) -> Node {
    let d = points.first().map_or(0, |p| p.len());
    if depth >= limit || points.len() <= 1 || d == 0 {
        return Node::Leaf { size: points.len() };
    }
    // Pick a feature that varies here; a node with none is a leaf.
    let varying: Vec<(usize, f64, f64)> = (0..d)
        .filter_map(|f| {
            let lo = points.iter().map(|p| p[f]).fold(f64::INFINITY, f64::min);
            let hi = points
                .iter()
                .map(|p| p[f])
                .fold(f64::NEG_INFINITY, f64::max);
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if varying.is_empty() {
        return Node::Leaf { size: points.len() };
    }
    let (feature, lo, hi) = varying[rng.random_range(0..varying.len())];
    let at = lo + (hi - lo) * rng.random::<f64>();
    let split = itertools_partition(points, |p| p[feature] < at);
    let (left, right) = points.split_at_mut(split);
    Node::Split {
        feature,
        at,
        left: Box::new(build(left, depth + 1, limit, rng)),
        right: Box::new(build(right, depth + 1, limit, rng)),
    }
}

/// Partition in place; returns how many satisfy `pred` (moved first).
fn itertools_partition(points: &mut [&Vec<f64>], pred: impl Fn(&Vec<f64>) -> bool) -> usize {
    let mut i = 0;
    for j in 0..points.len() {
        if pred(points[j]) {
            points.swap(i, j);
            i += 1;
        }
    }
    i
}

fn path_length(node: &Node, row: &[f64], depth: f64) -> f64 {
    match node {
        Node::Leaf { size } => depth + c(*size),
        Node::Split {
            feature,
            at,
            left,
            right,
        } => {
            let next = if row[*feature] < *at { left } else { right };
            path_length(next, row, depth + 1.0)
        }
    }
}

impl IsolationForest {
    pub fn fit(
        x: &[Vec<f64>],
        n_estimators: usize,
        max_samples: usize,
        seed: u64,
    ) -> IsolationForest {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let sample_size = max_samples.min(x.len()).max(1);
        let limit = (sample_size as f64).log2().ceil().max(1.0) as usize;
        let trees = (0..n_estimators.max(1))
            .map(|_| {
                let mut sample: Vec<&Vec<f64>> =
                    rand::seq::index::sample(&mut rng, x.len(), sample_size)
                        .iter()
                        .map(|i| &x[i])
                        .collect();
                build(&mut sample, 0, limit, &mut rng)
            })
            .collect();
        IsolationForest { trees, sample_size }
    }

    pub fn score(&self, row: &[f64]) -> f64 {
        let mean = self
            .trees
            .iter()
            .map(|t| path_length(t, row, 0.0))
            .sum::<f64>()
            / self.trees.len() as f64;
        let norm = c(self.sample_size).max(1e-12);
        2f64.powf(-mean / norm)
    }
}

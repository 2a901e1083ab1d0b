//! How a backtest's alerts compare with labelled anomaly windows.
//!
//! Per metric and over all of them: how many windows had an alert in them
//! (recall), how many alerts fell in a window (precision), F1, alerts
//! outside every window per 1,000 observations, the median time from a
//! window's start to when its first alert was raised, and a window score
//! in the manner of the published streaming-anomaly benchmarks, under
//! three weightings.
//!
//! The window score. For a detection at `t` and a window `[s, e]`, the
//! relative position is `y = (t - e) / (e - s)` (-1 at the start, 0 at the
//! end, positive after it), and `w(y) = 2 / (1 + exp(5 y)) - 1` (0.987 at
//! the start, 0 at the end, towards -1 after). Then
//!   - a window's first detection earns `A_tp * w(y)`; later ones in the
//!     same window count for nothing;
//!   - a window with no detection costs `A_fn`;
//!   - a detection in no window costs `A_fp * -w(y)` with `y` measured from
//!     the window before it (a late detection of that anomaly costs little),
//!     or the whole `A_fp` when no window came before.
//!
//! The raw sum is normalised so that a detector that never fires scores 0
//! and one that fires at the start of every window and nowhere else scores
//! 100: `100 * (raw - null) / (perfect - null)`, `null = -A_fn * windows`,
//! `perfect = A_tp * w(-1) * windows`. Many false alerts make it negative.
//! Weightings `(A_tp, A_fp, A_fn)`: standard (1, 0.11, 1), reward low
//! false positives (1, 0.22, 1), reward low false negatives (1, 0.11, 2).

use serde::Serialize;

/// A weighting of the window score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub a_tp: f64,
    pub a_fp: f64,
    pub a_fn: f64,
}

pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        a_tp: 1.0,
        a_fp: 0.11,
        a_fn: 1.0,
    },
    Profile {
        name: "reward_low_fp",
        a_tp: 1.0,
        a_fp: 0.22,
        a_fn: 1.0,
    },
    Profile {
        name: "reward_low_fn",
        a_tp: 1.0,
        a_fp: 0.11,
        a_fn: 2.0,
    },
];

fn weight(y: f64) -> f64 {
    2.0 / (1.0 + (5.0 * y).exp()) - 1.0
}

/// Where `t` falls relative to the window `[s, e]`.
fn position(t: i64, (s, e): (i64, i64)) -> f64 {
    // In f64: labels may name any time an i64 holds.
    let len = (e as f64 - s as f64).max(1.0);
    (t as f64 - e as f64) / len
}

/// The tallies of one metric, or of all of them summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub points: usize,
    pub windows: usize,
    pub windows_detected: usize,
    pub detections: usize,
    pub detections_in_windows: usize,
    /// µs from each detected window's start to its first detection.
    #[serde(skip)]
    pub delays_us: Vec<i64>,
    /// Per profile: (raw, null, perfect).
    #[serde(skip)]
    pub sums: [(f64, f64, f64); 3],
}

/// What a tally says, as ratios.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    #[serde(flatten)]
    pub tally: Tally,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub false_per_1000: f64,
    pub median_delay_s: Option<f64>,
    /// Per profile, in [`PROFILES`] order; None without windows.
    pub score_standard: Option<f64>,
    pub score_reward_low_fp: Option<f64>,
    pub score_reward_low_fn: Option<f64>,
}

/// Tally `detections` of a metric with `points` observations against its
/// `windows` (sorted, not overlapping). A detection is the observation it
/// is stamped with, which places it in or out of a window, and when it was
/// raised, from which its delay is measured.
pub fn tally(points: usize, windows: &[(i64, i64)], detections: &[(i64, i64)]) -> Tally {
    let mut by_time: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for &(at, raised) in detections {
        // An alert and a change at one observation are one detection,
        // raised when the first of them was.
        let r = by_time.entry(at).or_insert(raised);
        *r = (*r).min(raised);
    }
    let d: Vec<i64> = by_time.keys().copied().collect();
    let mut t = Tally {
        points,
        windows: windows.len(),
        detections: d.len(),
        ..Tally::default()
    };
    let mut first_in = vec![None; windows.len()];
    for &at in &d {
        // The last window starting at or before the detection.
        let i = windows.partition_point(|(s, _)| *s <= at);
        let inside = i > 0 && at <= windows[i - 1].1;
        if inside {
            t.detections_in_windows += 1;
            first_in[i - 1].get_or_insert(at);
            continue;
        }
        for (k, p) in PROFILES.iter().enumerate() {
            let cost = match i.checked_sub(1) {
                Some(prev) => -weight(position(at, windows[prev])),
                None => 1.0,
            };
            t.sums[k].0 -= p.a_fp * cost;
        }
    }
    for (w, first) in windows.iter().zip(&first_in) {
        for (k, p) in PROFILES.iter().enumerate() {
            t.sums[k].0 += match first {
                Some(at) => p.a_tp * weight(position(*at, *w)),
                None => -p.a_fn,
            };
            t.sums[k].1 -= p.a_fn;
            t.sums[k].2 += p.a_tp * weight(-1.0);
        }
        if let Some(at) = first {
            t.windows_detected += 1;
            let raised = by_time.get(at).copied().unwrap_or(*at);
            t.delays_us.push(raised.saturating_sub(w.0).max(0));
        }
    }
    t
}

impl Tally {
    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &Tally) {
        self.points += other.points;
        self.windows += other.windows;
        self.windows_detected += other.windows_detected;
        self.detections += other.detections;
        self.detections_in_windows += other.detections_in_windows;
        self.delays_us.extend(&other.delays_us);
        for k in 0..PROFILES.len() {
            self.sums[k].0 += other.sums[k].0;
            self.sums[k].1 += other.sums[k].1;
            self.sums[k].2 += other.sums[k].2;
        }
    }

    pub fn scores(&self) -> Scores {
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        let precision = ratio(self.detections_in_windows, self.detections);
        let recall = ratio(self.windows_detected, self.windows);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            // Windows and no alert at all.
            (None, Some(_)) => Some(0.0),
            _ => None,
        };
        let mut delays = self.delays_us.clone();
        delays.sort_unstable();
        let median_delay_s = match delays.len() {
            0 => None,
            n if n % 2 == 1 => Some(delays[n / 2] as f64 / 1e6),
            n => Some((delays[n / 2 - 1] as f64 + delays[n / 2] as f64) / 2e6),
        };
        let norm = |k: usize| {
            let (raw, null, perfect) = self.sums[k];
            (self.windows > 0).then(|| 100.0 * (raw - null) / (perfect - null))
        };
        Scores {
            tally: self.clone(),
            precision,
            recall,
            f1,
            false_per_1000: if self.points == 0 {
                0.0
            } else {
                (self.detections - self.detections_in_windows) as f64 * 1000.0 / self.points as f64
            },
            median_delay_s,
            score_standard: norm(0),
            score_reward_low_fp: norm(1),
            score_reward_low_fn: norm(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: [(i64, i64); 2] = [(100, 200), (1000, 1100)];

    #[test]
    fn an_empty_detector_scores_0_and_a_perfect_one_100() {
        let none = tally(2000, &W, &[]).scores();
        assert_eq!(none.score_standard, Some(0.0));
        assert_eq!(
            (none.recall, none.precision, none.f1),
            (Some(0.0), None, Some(0.0))
        );
        // The same instant twice (an alert and a change) is one detection.
        assert_eq!(
            tally(2000, &W, &[(100, 100), (100, 100), (1000, 1000)]).detections,
            2
        );
        // Absurd label times do not overflow.
        let wide = tally(10, &[(i64::MIN, i64::MAX)], &[(0, 0)]).scores();
        assert!(wide.score_standard.is_some_and(f64::is_finite));
        let perfect = tally(2000, &W, &[(100, 100), (1000, 1000)]).scores();
        for s in [
            perfect.score_standard,
            perfect.score_reward_low_fp,
            perfect.score_reward_low_fn,
        ] {
            assert!((s.expect("score") - 100.0).abs() < 1e-9, "{s:?}");
        }
        assert_eq!(
            (perfect.precision, perfect.recall, perfect.f1),
            (Some(1.0), Some(1.0), Some(1.0))
        );
        assert_eq!(perfect.median_delay_s, Some(0.0));
    }

    #[test]
    fn early_beats_late_and_false_alerts_cost_less_just_after_a_window() {
        let early = tally(2000, &W, &[(110, 110), (1010, 1010)])
            .scores()
            .score_standard
            .expect("s");
        let late = tally(2000, &W, &[(190, 190), (1090, 1090)])
            .scores()
            .score_standard
            .expect("s");
        assert!(early > late && late > 0.0, "{early} {late}");
        let near = tally(2000, &W, &[(100, 100), (1000, 1000), (210, 210)]).scores();
        let far = tally(2000, &W, &[(100, 100), (1000, 1000), (900, 900)]).scores();
        let lone = tally(2000, &W, &[(100, 100), (1000, 1000), (50, 50)]).scores();
        let (n, f, l) = (
            near.score_standard.expect("s"),
            far.score_standard.expect("s"),
            lone.score_standard.expect("s"),
        );
        // Long after a window, a false alert costs what one with no window
        // before it does.
        assert!(n > f && (f - l).abs() < 1e-3, "{n} {f} {l}");
        assert!(far.score_reward_low_fp < far.score_standard);
        assert_eq!(far.false_per_1000, 0.5);
        assert_eq!(far.precision, Some(2.0 / 3.0));
        // Half the windows and a false alert: the weighting that punishes
        // misses more forgives the false alert relatively, the one that
        // punishes false alerts more does not.
        let half = tally(2000, &W, &[(100, 100), (500, 500)]).scores();
        assert!(half.score_reward_low_fn > half.score_standard);
        assert!(half.score_reward_low_fp < half.score_standard);
    }

    #[test]
    fn tallies_add_up_to_the_overall_score() {
        let a = tally(1000, &W[..1], &[(150, 150)]);
        let b = tally(1000, &W[1..], &[]);
        let mut all = Tally::default();
        all.add(&a);
        all.add(&b);
        let s = all.scores();
        assert_eq!(
            (s.tally.windows, s.tally.windows_detected, s.recall),
            (2, 1, Some(0.5))
        );
        assert_eq!(s.median_delay_s, Some(50e-6));
        // The delay runs to when the alert was raised, not to the
        // observation it is stamped with.
        let late = tally(1000, &W[..1], &[(150, 400), (150, 300)]).scores();
        assert_eq!(
            (late.tally.detections, late.median_delay_s),
            (1, Some(200e-6))
        );
    }
}

//! Chart geometry for the batch page: a metric's series, cut to the chosen
//! window, as SVG coordinates (values on top, anomaly score in a band below,
//! alert and change marks). The SVG itself is a template, so every string
//! in it is escaped; here are only numbers. Hand-written: a sparkline is a
//! few lines of arithmetic, and 50 of them must stay light in one page.

use serde::Serialize;

use crate::domain::Series;

pub const WIDTH: f64 = 380.0;
pub const HEIGHT: f64 = 120.0;
const VALUE_BOTTOM: f64 = 74.0;
const SCORE_TOP: f64 = 82.0;
const PAD: f64 = 6.0;

/// Which part of a series to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    LastPoints(usize),
    LastHours(i64),
}

impl Window {
    pub const CHOICES: [(&'static str, &'static str); 5] = [
        ("100", "last 100 points"),
        ("500", "last 500 points"),
        ("24h", "last 24 hours"),
        ("7d", "last 7 days"),
        ("30d", "last 30 days"),
    ];

    /// `100` (points), `24h`, `7d`; anything else is the default.
    pub fn parse(text: &str) -> Window {
        let t = text.trim();
        if let Some(h) = t.strip_suffix('h').and_then(|n| n.parse::<i64>().ok()) {
            return Window::LastHours(h.clamp(1, 24 * 366));
        }
        if let Some(d) = t.strip_suffix('d').and_then(|n| n.parse::<i64>().ok()) {
            return Window::LastHours(d.clamp(1, 366) * 24);
        }
        match t.parse::<usize>() {
            Ok(n) if n > 1 => Window::LastPoints(n.min(100_000)),
            _ => Window::LastPoints(100),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub metric: String,
    pub n: usize,
    pub from: String,
    pub to: String,
    pub last: String,
    pub alerts: usize,
    pub value_points: String,
    pub score_points: String,
    pub alert_marks: Vec<Mark>,
    pub change_marks: Vec<Mark>,
    pub max: String,
    pub min: String,
    pub score_top: f64,
    pub threshold_y: f64,
}

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

pub fn short(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 1e6 || (a > 0.0 && a < 1e-3) {
        format!("{v:.3e}")
    } else {
        let r = (v * 1000.0).round() / 1000.0;
        format!("{r}")
    }
}

/// The index of the first observation inside `window`.
fn window_start(s: &Series, window: Window, now_us: i64) -> usize {
    match window {
        Window::LastPoints(k) => s.values.len().saturating_sub(k),
        Window::LastHours(h) => {
            let cut = now_us - h * 3_600_000_000;
            s.timestamps_us.partition_point(|t| *t < cut)
        }
    }
}

/// The chart of one metric, or None when nothing falls in the window.
pub fn chart(
    metric: &str,
    s: &Series,
    window: Window,
    now_us: i64,
    threshold: f64,
) -> Option<Chart> {
    let n = s.values.len();
    let idx: Vec<usize> = (window_start(s, window, now_us)..n)
        .filter(|i| s.values[*i].is_finite())
        .collect();
    let (&first, &last) = (idx.first()?, idx.last()?);
    let col = |name: &str| {
        s.extra
            .get(name)
            .cloned()
            .unwrap_or_else(|| vec![f64::NAN; n])
    };
    let (score, alert, change) = (
        col("metric_score"),
        col("metric_alert"),
        col("metric_change"),
    );
    // In f64: a database may hold times at the ends of i64 (stored before
    // ingest bounded them), whose differences overflow i64.
    let (t0, t1) = (
        s.timestamps_us[first] as f64,
        (s.timestamps_us[last] as f64).max(s.timestamps_us[first] as f64 + 1.0),
    );
    let (lo, hi) = idx
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), i| {
            (a.min(s.values[*i]), b.max(s.values[*i]))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let x = |t: i64| PAD + (t as f64 - t0) / (t1 - t0) * (WIDTH - 2.0 * PAD);
    let y = |v: f64| {
        PAD + (hi - v) / span * (VALUE_BOTTOM - 2.0 * PAD) + if hi > lo { 0.0 } else { 20.0 }
    };
    let smax = idx
        .iter()
        .map(|i| score[*i])
        .filter(|v| v.is_finite())
        .fold(threshold.max(1.0), f64::max);
    let sy = |v: f64| HEIGHT - 2.0 - v.clamp(0.0, smax) / smax * (HEIGHT - SCORE_TOP - 4.0);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let pts = |f: &dyn Fn(usize) -> Option<(f64, f64)>| {
        idx.iter()
            .filter_map(|i| f(*i))
            .map(|(a, b)| format!("{},{}", round(a), round(b)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let value_points = pts(&|i| Some((x(s.timestamps_us[i]), y(s.values[i]))));
    let score_points = pts(&|i| {
        score[i]
            .is_finite()
            .then(|| (x(s.timestamps_us[i]), sy(score[i])))
    });
    let marks = |flags: &[f64]| -> Vec<Mark> {
        idx.iter()
            .filter(|i| flags[**i] > 0.0)
            .map(|i| Mark {
                x: round(x(s.timestamps_us[*i])),
                y: round(y(s.values[*i])),
            })
            .collect()
    };
    let alert_marks = marks(&alert);
    Some(Chart {
        metric: metric.to_string(),
        n: idx.len(),
        from: time(s.timestamps_us[first]),
        to: time(s.timestamps_us[last]),
        last: short(s.values[last]),
        alerts: alert_marks.len(),
        value_points,
        score_points,
        change_marks: marks(&change),
        alert_marks,
        max: short(hi),
        min: short(lo),
        score_top: SCORE_TOP,
        threshold_y: round(sy(threshold)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_cut() {
        assert_eq!(Window::parse("24h"), Window::LastHours(24));
        assert_eq!(Window::parse("7d"), Window::LastHours(168));
        assert_eq!(Window::parse("50"), Window::LastPoints(50));
        assert_eq!(Window::parse("<script>"), Window::LastPoints(100));
        let hour = 3_600_000_000i64;
        let s = Series {
            timestamps_us: (0..48).map(|i| i * hour).collect(),
            values: (0..48).map(|i| i as f64).collect(),
            extra: Default::default(),
        };
        let now = 48 * hour;
        let c = chart("m", &s, Window::LastHours(24), now, 0.8).expect("chart");
        assert_eq!(c.n, 24);
        assert_eq!((c.min.as_str(), c.max.as_str()), ("24", "47"));
        let c = chart("m", &s, Window::LastPoints(10), now, 0.8).expect("chart");
        assert_eq!(c.n, 10);
        assert_eq!(c.value_points.split(' ').count(), 10);
        assert!(chart("m", &s, Window::LastHours(1), 100 * hour, 0.8).is_none());
    }

    #[test]
    fn times_at_the_ends_of_i64_do_not_panic() {
        let s = Series {
            timestamps_us: vec![i64::MIN + 1, 0, i64::MAX],
            values: vec![1.0, 2.0, 3.0],
            extra: Default::default(),
        };
        let c = chart("m", &s, Window::LastPoints(10), 0, 0.8).expect("chart");
        assert_eq!(c.n, 3);
    }
}

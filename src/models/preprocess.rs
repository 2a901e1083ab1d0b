//! Native preprocess, with the semantics of the shipped
//! `metrics/defaults/python/preprocess.py` under pandas: sort by time,
//! optionally resample (`freq`, `freq_agg`), difference (`diff_n`), smooth
//! with a rolling mean (`smooth_n`), add `lags_n` lagged copies, and drop
//! every row with a missing value. tests/fixtures/preprocess_golden.json
//! holds pandas' own output for the tests to compare against.
//!
//! Hand-written: these are a few loops over one series, and no Rust crate
//! reproduces pandas' resampling bins and rolling-window NaN rules.

use crate::config::PreprocessParams;

/// One metric's model features: a row per kept timestamp, columns
/// `[metric_value, lag_1, ..., lag_n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub timestamps_us: Vec<i64>,
    pub rows: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    #[error("preprocess_params.freq `{0}` is not a frequency sandstack takes: {expected}", expected = crate::config::sections::FREQ_EXPECTED)]
    BadFreq(String),
    #[error("preprocess_params.freq of {freq_s} s makes {bins} bins of this metric's time span, more than {MAX_BINS}: use a longer freq, or a shorter train or score window")]
    TooManyBins { freq_s: i64, bins: i64 },
    #[error("preprocess_params.freq_agg `{0}` is not supported: use {aggs}", aggs = crate::config::sections::FREQ_AGGS.join(", "))]
    BadAgg(String),
    #[error("timestamps and values differ in length ({0} and {1})")]
    Length(usize, usize),
}

/// Most bins one metric's resampling may make (a bin is a value and a
/// label, so this bounds what a batch's `freq` can make sandstack allocate).
pub const MAX_BINS: usize = 1_000_000;

/// A pandas offset alias as microseconds: `30s`, `5min` (or `5T`), `1h`
/// (or `H`), `1D`.
pub fn parse_freq(freq: &str) -> Result<i64, PreprocessError> {
    crate::config::sections::freq_micros(freq).ok_or_else(|| PreprocessError::BadFreq(freq.into()))
}

pub fn preprocess(
    timestamps_us: &[i64],
    values: &[f64],
    p: &PreprocessParams,
) -> Result<Features, PreprocessError> {
    if timestamps_us.len() != values.len() {
        return Err(PreprocessError::Length(timestamps_us.len(), values.len()));
    }
    let mut points: Vec<(i64, f64)> = timestamps_us
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect();
    // pandas' sort_values is stable too: equal timestamps keep input order.
    points.sort_by_key(|(t, _)| *t);
    let (mut ts, mut x): (Vec<i64>, Vec<f64>) = points.into_iter().unzip();
    if let Some(freq) = p.resampling() {
        (ts, x) = resample(&ts, &x, parse_freq(freq)?, &p.freq_agg)?;
    }
    if p.diff_n > 0 {
        x = diff(&x, p.diff_n as usize);
    }
    if p.smooth_n > 0 {
        x = rolling_mean(&x, p.smooth_n as usize);
    }
    let lags = p.lags_n as usize;
    let mut out = Features {
        timestamps_us: Vec::new(),
        rows: Vec::new(),
    };
    for i in 0..x.len() {
        let mut row = Vec::with_capacity(lags + 1);
        row.push(x[i]);
        for k in 1..=lags {
            row.push(if i >= k { x[i - k] } else { f64::NAN });
        }
        if row.iter().all(|v| !v.is_nan()) {
            out.timestamps_us.push(ts[i]);
            out.rows.push(row);
        }
    }
    Ok(out)
}

/// pandas' resampling with `origin="epoch"`: bins of `freq` counted from
/// 1970-01-01 00:00 UTC, closed and labelled on the left, every bin from
/// the first point's to the last point's present (empty ones aggregate to
/// NaN, or 0 for sum and count). For a `freq` that divides a day these are
/// pandas' default bins (from midnight of the first day); for any other,
/// the default's bins move with the first timestamp of the window read, so
/// one bin would get another label in the next job, and the alert and
/// dashboard SQL (which put observations in these bins, see
/// `config::bins`) could not find its score.
fn resample(
    ts: &[i64],
    x: &[f64],
    freq: i64,
    agg: &str,
) -> Result<(Vec<i64>, Vec<f64>), PreprocessError> {
    if !crate::config::sections::FREQ_AGGS.contains(&agg) {
        return Err(PreprocessError::BadAgg(agg.into()));
    }
    let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let bin = |t: i64| t.div_euclid(freq);
    let (b0, b1) = (bin(first), bin(last));
    let bins = b1.saturating_sub(b0).saturating_add(1);
    if bins > MAX_BINS as i64 {
        return Err(PreprocessError::TooManyBins {
            freq_s: freq / 1_000_000,
            bins,
        });
    }
    let n = bins as usize;
    let mut groups: Vec<Vec<f64>> = vec![Vec::new(); n];
    for (t, v) in ts.iter().zip(x) {
        groups[(bin(*t) - b0) as usize].push(*v);
    }
    let labels = (0..n).map(|i| (b0 + i as i64) * freq).collect();
    let values = groups.into_iter().map(|g| aggregate(g, agg)).collect();
    Ok((labels, values))
}

fn aggregate(mut g: Vec<f64>, agg: &str) -> f64 {
    // pandas skips NaN inside a bin.
    g.retain(|v| !v.is_nan());
    match agg {
        "sum" => g.iter().sum(),
        "count" => g.len() as f64,
        _ if g.is_empty() => f64::NAN,
        "mean" => g.iter().sum::<f64>() / g.len() as f64,
        "min" => g.iter().copied().fold(f64::INFINITY, f64::min),
        "max" => g.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "first" => g[0],
        "last" => g[g.len() - 1],
        _ => median(&mut g),
    }
}

/// The median (the mean of the middle two for an even count; NaN for
/// none); reorders `v`. A selection, not a sort: the change job takes the
/// median of every observation in its window at each step of a backtest.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let (m, odd) = (v.len() / 2, v.len() % 2 == 1);
    let (below, mid, _) = v.select_nth_unstable_by(m, f64::total_cmp);
    let upper = *mid;
    if odd {
        upper
    } else {
        let lower = below
            .iter()
            .copied()
            .max_by(f64::total_cmp)
            .unwrap_or(upper);
        (lower + upper) / 2.0
    }
}

fn diff(x: &[f64], n: usize) -> Vec<f64> {
    (0..x.len())
        .map(|i| if i >= n { x[i] - x[i - n] } else { f64::NAN })
        .collect()
}

/// pandas' `rolling(window=n).mean()`: NaN unless all `n` values are there.
fn rolling_mean(x: &[f64], n: usize) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            if i + 1 < n {
                return f64::NAN;
            }
            let w = &x[i + 1 - n..=i];
            if w.iter().any(|v| v.is_nan()) {
                f64::NAN
            } else {
                w.iter().sum::<f64>() / n as f64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Golden {
        input: Input,
        cases: Vec<Case>,
    }
    #[derive(serde::Deserialize)]
    struct Input {
        timestamps_us: Vec<i64>,
        values: Vec<f64>,
    }
    #[derive(serde::Deserialize)]
    struct Case {
        params: serde_json::Value,
        timestamps_us: Vec<i64>,
        rows: Vec<Vec<f64>>,
    }

    #[test]
    fn matches_pandas_on_the_golden_cases() {
        let golden: Golden =
            serde_json::from_str(include_str!("../../tests/fixtures/preprocess_golden.json"))
                .expect("golden file parses");
        for case in &golden.cases {
            let params: PreprocessParams =
                serde_json::from_value(case.params.clone()).expect("params");
            let got = preprocess(&golden.input.timestamps_us, &golden.input.values, &params)
                .expect("preprocess");
            assert_eq!(
                got.timestamps_us, case.timestamps_us,
                "timestamps for {}",
                case.params
            );
            assert_eq!(got.rows.len(), case.rows.len(), "rows for {}", case.params);
            for (g, w) in got.rows.iter().zip(&case.rows) {
                for (a, b) in g.iter().zip(w) {
                    // pandas' rolling mean uses running sums: equal to ~1e-12.
                    assert!(
                        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        "{a} vs {b} for {}",
                        case.params
                    );
                }
            }
        }
    }

    #[test]
    fn frequencies_and_errors() {
        assert_eq!(parse_freq("5min"), Ok(300_000_000));
        assert_eq!(parse_freq("H"), Ok(3_600_000_000));
        assert_eq!(parse_freq("1D"), Ok(86_400_000_000));
        assert_eq!(
            parse_freq("3 weeks"),
            Err(PreprocessError::BadFreq("3 weeks".into()))
        );
        let p = PreprocessParams {
            freq: Some("1min".into()),
            freq_agg: "mode".into(),
            ..Default::default()
        };
        assert_eq!(
            preprocess(&[0], &[1.0], &p),
            Err(PreprocessError::BadAgg("mode".into()))
        );
    }

    #[test]
    fn bins_are_capped_before_they_are_made() {
        let p = PreprocessParams {
            freq: Some("1s".into()),
            ..Default::default()
        };
        // Two points 20 days apart: 1,728,001 one-second bins.
        let err = preprocess(&[0, 20 * 86_400_000_000], &[1.0, 2.0], &p).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::TooManyBins {
                freq_s: 1,
                bins: 1_728_001
            }
        );
        assert!(err.to_string().contains("more than 1000000"), "{err}");
    }

    #[test]
    fn a_bin_keeps_its_label_whatever_window_is_read() {
        // 7 minutes does not divide a day: bins from midnight of the first
        // day read would move when the window starts a day later.
        const MIN: i64 = 60_000_000;
        let p = PreprocessParams {
            freq: Some("7min".into()),
            freq_agg: "mean".into(),
            diff_n: 0,
            smooth_n: 0,
            lags_n: 0,
        };
        let day2 = 86_400_000_000 + 3 * MIN;
        let late: Vec<i64> = (0..30).map(|i| day2 + i * MIN).collect();
        let early: Vec<i64> = (0..30).map(|i| i * 50 * MIN).chain(late.clone()).collect();
        let labels = |ts: &[i64]| {
            let f = preprocess(ts, &vec![1.0; ts.len()], &p).expect("preprocess");
            f.timestamps_us
        };
        let (short, long) = (labels(&late), labels(&early));
        assert!(!short.is_empty());
        assert!(
            short.iter().all(|t| long.contains(t)),
            "{short:?} not all in {long:?}"
        );
        assert!(short.iter().all(|t| t % (7 * MIN) == 0));
    }

    #[test]
    fn the_median_by_selection_is_the_sorted_middle() {
        for n in 1..40usize {
            let mut v: Vec<f64> = (0..n).map(|i| ((i * 7919) % 31) as f64 * 0.5).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let want = if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            };
            assert_eq!(median(&mut v).to_bits(), want.to_bits(), "n {n}");
        }
        assert!(median(&mut []).is_nan());
    }
}

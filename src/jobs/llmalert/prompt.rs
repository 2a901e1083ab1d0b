//! What the chat model is shown: a metric's points prepared as Anomstack
//! prepares them (NaN dropped, smoothed over `llmalert_smooth_n`, the
//! newest `llmalert_prompt_max_n`, rounded to `llmalert_metric_rounding`),
//! sandstack's default instructions for each step, the data as CSV, and
//! the JSON schema both steps answer in.

use serde_json::{json, Value};

use crate::config::sections::LlmAlertSettings;
use crate::domain::{round_decimals, Series};

/// One observation as the model sees it: the label is the only way the
/// model can name it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub timestamp_us: i64,
    pub label: String,
    pub value: f64,
}

pub const SYSTEM: &str = "You are an anomaly detection agent for time series metrics. You answer only in the \
structure you are given. Timestamps you report must be copied exactly from the data. Reasons are short plain \
text: one sentence, no markup.";

pub const DETECTION: &str = "Find the anomalies in this metric's observations: points that depart clearly from \
the series' usual level, trend, spread or seasonality (spikes, drops, sudden shifts, values stuck at an \
unusual level). Judge each point against the points around it and the whole series. Ordinary noise is not \
an anomaly, and a series with no anomaly is common: then report none.";

pub const VERIFICATION: &str = "Another pass flagged the candidate points below as anomalies in this metric. \
Check each one against the whole series and keep only those that are real anomalies an engineer on call \
should look at; drop noise, expected seasonal peaks and points that merely continue a trend. Report the \
points you confirm, each with its reason.";

/// The answer of both steps: a list of timestamps with reasons (strict
/// enough for OpenAI's structured outputs: every property required, none
/// other allowed).
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "anomalies": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "timestamp": {"type": "string", "description": "the point's timestamp, exactly as in the data"},
                        "reason": {"type": "string", "description": "why it is anomalous, in one short sentence"},
                    },
                    "required": ["timestamp", "reason"],
                    "additionalProperties": false,
                },
            },
        },
        "required": ["anomalies"],
        "additionalProperties": false,
    })
}

/// A timestamp as the prompt shows it (UTC; sub-second digits only when
/// there are any, so two points never share a label).
pub fn label(timestamp_us: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_micros(timestamp_us) else {
        return timestamp_us.to_string();
    };
    if timestamp_us % 1_000_000 == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
    }
}

/// The points the model is shown, oldest first.
pub fn points(series: &Series, settings: &LlmAlertSettings) -> Vec<Point> {
    let observed: Vec<(i64, f64)> = series
        .timestamps_us
        .iter()
        .zip(&series.values)
        .filter(|(_, v)| v.is_finite())
        .map(|(t, v)| (*t, *v))
        .collect();
    let n = settings.smooth_n as usize;
    let smoothed: Vec<(i64, f64)> = if n > 1 {
        observed
            .windows(n)
            .map(|w| (w[n - 1].0, w.iter().map(|p| p.1).sum::<f64>() / n as f64))
            .collect()
    } else {
        observed
    };
    let keep = settings.prompt_max_n as usize;
    smoothed[smoothed.len().saturating_sub(keep)..]
        .iter()
        .map(|&(t, v)| Point {
            timestamp_us: t,
            label: label(t),
            value: round_decimals(v, settings.metric_rounding),
        })
        .collect()
}

/// The observations as CSV, oldest first.
fn data(metric: &str, points: &[Point]) -> String {
    let mut out = format!(
        "Metric: {}\nObservations ({} points, oldest first; timestamp in UTC, value):\ntimestamp,value\n",
        one_line(metric),
        points.len()
    );
    for p in points {
        out.push_str(&p.label);
        out.push(',');
        out.push_str(&p.value.to_string());
        out.push('\n');
    }
    out
}

/// The detection step's text: its instructions, then the data.
pub fn detection_text(instructions: &str, metric: &str, points: &[Point]) -> String {
    format!("{}\n\n{}", instructions.trim(), data(metric, points))
}

/// The verification step's text: its instructions, the candidates with
/// the detection's reasons, then the data.
pub fn verification_text(
    instructions: &str,
    metric: &str,
    points: &[Point],
    candidates: &[(String, String)],
) -> String {
    let mut out = format!(
        "{}\n\nCandidates (timestamp: reason):\n",
        instructions.trim()
    );
    for (label, reason) in candidates {
        out.push_str(&format!("- {label}: {reason}\n"));
    }
    out.push('\n');
    out.push_str(&data(metric, points));
    out
}

/// A metric name on one line (names are checked printable at ingest; a
/// SQL template could still return anything).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(smooth_n: u64, max_n: u64, rounding: i64) -> LlmAlertSettings {
        LlmAlertSettings {
            smooth_n,
            prompt_max_n: max_n,
            metric_rounding: rounding,
            ..Default::default()
        }
    }

    #[test]
    fn points_are_cleaned_smoothed_cut_and_rounded_as_anomstack_does() {
        let s = Series {
            timestamps_us: (0..6).map(|i| i * 60_000_000).collect(),
            values: vec![1.0, f64::NAN, 2.0, 3.0, 4.0, 5.0],
            ..Default::default()
        };
        let p = points(&s, &settings(2, 3, 1));
        // NaN dropped, rolling mean of 2 over [1, 2, 3, 4, 5], the newest 3.
        assert_eq!(
            p.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![2.5, 3.5, 4.5]
        );
        assert_eq!(p[0].label, "1970-01-01 00:03:00");
        assert_eq!(label(1_500_000), "1970-01-01 00:00:01.500000");
        let text = detection_text("Look.", "cpu\nload", &p);
        assert!(
            text.contains("Metric: cpu load\n") && text.ends_with("1970-01-01 00:05:00,4.5\n"),
            "{text}"
        );
    }
}

//! The trust boundary for what a chat model says: an answer is untrusted
//! text. Each reported anomaly must name a point that was in the prompt
//! (made-up timestamps are dropped and said); reasons become one line of
//! plain text of bounded length (markup, including Slack's `<!channel>`
//! and link syntax, is removed); an answer that is not the asked-for
//! structure is refused whole.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::prompt::Point;
use crate::llm::AnswerError;

/// Entries an answer may hold beyond one per point (repeats, made-up
/// points); the rest are not read.
const SLACK_ENTRIES: usize = 50;

/// Longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 300;

/// One anomaly the model reported, on a point of the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub timestamp_us: i64,
    pub label: String,
    pub reason: String,
}

/// What an answer held: its findings, and what was refused from it.
#[derive(Debug, Default)]
pub struct Checked {
    pub findings: Vec<Finding>,
    pub refused: Vec<String>,
}

/// Read `{"anomalies": [{"timestamp", "reason"}]}` against the prompt's
/// points.
pub fn read(json: &Value, points: &[Point]) -> Result<Checked, AnswerError> {
    let items = json
        .get("anomalies")
        .and_then(Value::as_array)
        .ok_or_else(|| AnswerError::Malformed("no `anomalies` list".into()))?;
    let by_time: BTreeMap<i64, &Point> = points.iter().map(|p| (p.timestamp_us, p)).collect();
    let mut out = Checked::default();
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        if i >= points.len() + SLACK_ENTRIES {
            out.refused.push(format!(
                "{} entries past the first {} were ignored ({} points were shown)",
                items.len() - i,
                i,
                points.len()
            ));
            break;
        }
        let text = |k: &str| item.get(k).and_then(Value::as_str);
        let Some(stamp) = text("timestamp") else {
            out.refused
                .push(format!("anomaly {} has no timestamp", i + 1));
            continue;
        };
        let Some(point) = timestamp_us(stamp).and_then(|t| by_time.get(&t)) else {
            out.refused.push(format!(
                "made-up timestamp {:?}: not a point of the prompt",
                shown(stamp)
            ));
            continue;
        };
        if !seen.insert(point.timestamp_us) {
            continue;
        }
        out.findings.push(Finding {
            timestamp_us: point.timestamp_us,
            label: point.label.clone(),
            reason: plain_text(text("reason").unwrap_or_default()),
        });
    }
    Ok(out)
}

/// A reported timestamp in µs: the prompt's form, or ISO 8601 with `T`,
/// `Z` or `+00:00`, seconds optional.
fn timestamp_us(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t
        .strip_suffix('Z')
        .or_else(|| t.strip_suffix("+00:00"))
        .or_else(|| t.strip_suffix(" UTC"))
        .unwrap_or(t)
        .replacen('T', " ", 1);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(&t, f).ok())
        .map(|d| d.and_utc().timestamp_micros())
}

/// A reason as one line of plain text: tags removed, control characters
/// and runs of blanks made one space, at most [`MAX_REASON_CHARS`].
///
/// Hand-written: HTML sanitizers keep markup they deem safe, and this
/// must keep none; it is a dozen lines.
pub fn plain_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * MAX_REASON_CHARS));
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() || c.is_whitespace() || crate::escape::acts_on_terminal(c) => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
        if out.len() > 4 * MAX_REASON_CHARS {
            break;
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let one = words.join(" ");
    let cut = crate::escape::truncate(&one, MAX_REASON_CHARS);
    if cut.is_empty() {
        "(no reason given)".into()
    } else {
        cut
    }
}

fn shown(text: &str) -> String {
    crate::escape::truncate(&crate::escape::terminal_line(text), 40)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jobs::llmalert::prompt::label;

    fn points() -> Vec<Point> {
        (0..3)
            .map(|i| {
                let t = 1_767_225_600_000_000 + i * 60_000_000;
                Point {
                    timestamp_us: t,
                    label: label(t),
                    value: i as f64,
                }
            })
            .collect()
    }

    #[test]
    fn only_points_of_the_prompt_are_kept_in_any_iso_form() {
        let a = json!({"anomalies": [
            {"timestamp": "2026-01-01 00:01:00", "reason": "spike"},
            {"timestamp": "2026-01-01T00:02:00Z", "reason": "drop"},
            {"timestamp": "2026-01-01 00:02", "reason": "again, once only"},
            {"timestamp": "2031-05-05 00:00:00", "reason": "invented"},
            {"reason": "no time"},
        ]});
        let c = read(&a, &points()).expect("structure");
        assert_eq!(
            c.findings
                .iter()
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>(),
            vec!["spike", "drop"]
        );
        assert_eq!(
            c.refused.len(),
            2,
            "a repeat is dropped quietly: {:?}",
            c.refused
        );
        assert!(
            c.refused[0].contains("made-up timestamp \"2031-05-05 00:00:00\""),
            "{:?}",
            c.refused
        );
        let many = json!({"anomalies": vec![json!({"timestamp": "2026-01-01 00:00:00", "reason": "x"}); 100_000]});
        let c = read(&many, &points()).expect("structure");
        assert_eq!(c.findings.len(), 1);
        assert!(
            c.refused[0].starts_with("99947 entries past the first 53"),
            "{:?}",
            c.refused
        );
        assert!(read(&json!({"anomalies": "none"}), &points()).is_err());
        assert!(read(&json!({"found": []}), &points()).is_err());
    }

    #[test]
    fn reasons_become_short_plain_text() {
        assert_eq!(
            plain_text("<b>Spike</b> to\n\n 98%<script>alert(1)</script> <!channel>"),
            "Spike to 98% alert(1)"
        );
        assert_eq!(plain_text("\u{1b}[31mred\u{202e}"), "[31mred");
        assert_eq!(plain_text(""), "(no reason given)");
        let long = plain_text(&"word ".repeat(10_000));
        assert_eq!(
            long.chars().count(),
            MAX_REASON_CHARS + 1,
            "cut, with an ellipsis"
        );
    }
}

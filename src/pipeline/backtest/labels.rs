//! Known anomalies for `sandstack backtest --labels FILE`: windows per
//! metric, from a CSV (`metric_name,start,end`, or `metric_name,timestamp`
//! for points) or JSON (`{"metric": [["start", "end"], "point", ...]}`).
//! Points become windows `--window` wide, centred on them. Every window is
//! checked against the history it will score: a metric the batch does not
//! have, an end before its start or a window wholly outside the metric's
//! data is refused, naming the line or entry.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::MetricHistory;
use crate::config::folder_files::read_regular;
use crate::domain::fmt_us;
use crate::jobs::import::cells::TimeReader;

/// Largest labels file read.
pub const MAX_LABELS_BYTES: u64 = 64 << 20;

/// Labelled windows `[start, end]` (µs, inclusive) per metric, sorted,
/// overlapping ones merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    pub windows: BTreeMap<String, Vec<(i64, i64)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("labels file {path}: {problem}")]
    File { path: String, problem: String },
    #[error("labels file {path}, {at}: {problem}")]
    Entry {
        path: String,
        at: String,
        problem: String,
    },
}

/// Read `path`; `window_us` widens points (None: points are refused).
pub fn read(path: &Path, window_us: Option<i64>) -> Result<Labels, LabelsError> {
    let shown = path.display().to_string();
    let file_err = |problem: String| LabelsError::File {
        path: shown.clone(),
        problem,
    };
    let text = read_regular(path, MAX_LABELS_BYTES).map_err(|e| file_err(e.to_string()))?;
    let text = text.trim_start_matches('\u{feff}');
    let entries = if text.trim_start().starts_with(['{', '[']) {
        from_json(text).map_err(file_err)?
    } else {
        from_csv(text).map_err(file_err)?
    };
    if entries.is_empty() {
        return Err(file_err("no windows or points in it".into()));
    }
    let mut labels = Labels::default();
    for e in entries {
        let entry_err = |problem: String| LabelsError::Entry {
            path: shown.clone(),
            at: e.at.clone(),
            problem,
        };
        let time = |t: &str| {
            TimeReader::UTC
                .parse(t)
                .map_err(|why| entry_err(format!("`{t}` is not a time: {why}")))
        };
        let (start, end) = match (&e.start, &e.end) {
            (s, Some(end)) => (time(s)?, time(end)?),
            (p, None) => {
                let Some(w) = window_us else {
                    return Err(entry_err(
                        "a point, not a window: give --window (e.g. --window 2h) to widen points into windows".into(),
                    ));
                };
                let t = time(p)?;
                (t.saturating_sub(w / 2), t.saturating_add(w - w / 2))
            }
        };
        if end < start {
            return Err(entry_err(format!(
                "ends ({}) before it starts ({})",
                e.end.as_deref().unwrap_or(""),
                e.start
            )));
        }
        labels
            .windows
            .entry(e.metric)
            .or_default()
            .push((start, end));
    }
    for w in labels.windows.values_mut() {
        *w = merged(std::mem::take(w));
    }
    Ok(labels)
}

/// One entry as written: a point has no end.
struct Entry {
    at: String,
    metric: String,
    start: String,
    end: Option<String>,
}

fn merged(mut w: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    w.sort();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(w.len());
    for (s, e) in w {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn from_json(text: &str) -> Result<Vec<Entry>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let serde_json::Value::Object(map) = v else {
        return Err("expected an object {\"metric\": [[start, end], ...]}".into());
    };
    let mut out = Vec::new();
    for (metric, list) in map {
        let serde_json::Value::Array(items) = list else {
            return Err(format!(
                "`{metric}`: expected a list of [start, end] windows or points"
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let at = format!("`{metric}` entry {}", i + 1);
            let text = |v: &serde_json::Value| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    format!("{at}: `{v}`: write times as strings, e.g. \"2024-05-01T13:00:00Z\"")
                })
            };
            let (start, end) = match item {
                serde_json::Value::Array(pair) if pair.len() == 2 => {
                    (text(&pair[0])?, Some(text(&pair[1])?))
                }
                serde_json::Value::Array(_) => {
                    return Err(format!("{at}: a window is [start, end], two times"))
                }
                v => (text(v)?, None),
            };
            out.push(Entry {
                at,
                metric: metric.clone(),
                start,
                end,
            });
        }
    }
    Ok(out)
}

fn from_csv(text: &str) -> Result<Vec<Entry>, String> {
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (inferred, _) = format
        .infer_schema(Cursor::new(text.as_bytes()), Some(0))
        .map_err(|e| format!("not CSV: {e}"))?;
    let names: Vec<String> = inferred.fields().iter().map(|f| f.name().clone()).collect();
    let pos = |n: &str| names.iter().position(|c| c.trim() == n);
    let (metric, start, end) = match (pos("metric_name"), pos("start"), pos("end"), pos("timestamp")) {
        (Some(m), Some(s), Some(e), _) => (m, s, Some(e)),
        (Some(m), None, None, Some(t)) => (m, t, None),
        _ => {
            return Err(format!(
                "the header has {}: expected metric_name,start,end (windows) or metric_name,timestamp (points)",
                names.join(",")
            ))
        }
    };
    let schema = Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow::csv::ReaderBuilder::new(schema)
        .with_format(format)
        .build(Cursor::new(text.as_bytes()))
        .map_err(|e| format!("not CSV: {e}"))?;
    let mut out = Vec::new();
    let mut line = 1;
    for b in reader {
        let b = b.map_err(|e| format!("after line {line}: {e}"))?;
        let col = |i: usize| b.column(i).as_string::<i32>().clone();
        let (m, s, e) = (col(metric), col(start), end.map(col));
        for r in 0..b.num_rows() {
            line += 1;
            let cell = |c: &arrow::array::StringArray, name: &str| {
                if c.is_null(r) || c.value(r).trim().is_empty() {
                    Err(format!("line {line}: {name} is empty"))
                } else {
                    Ok(c.value(r).trim().to_string())
                }
            };
            out.push(Entry {
                at: format!("line {line}"),
                metric: cell(&m, "metric_name")?,
                start: cell(&s, if end.is_some() { "start" } else { "timestamp" })?,
                end: e.as_ref().map(|e| cell(e, "end")).transpose()?,
            });
        }
    }
    Ok(out)
}

impl Labels {
    /// Keep only the windows that overlap `[from, to]` (a backtest of part
    /// of the history); returns how many were dropped.
    pub fn restrict(&mut self, from: Option<i64>, to: Option<i64>) -> usize {
        let mut dropped = 0;
        for w in self.windows.values_mut() {
            let before = w.len();
            w.retain(|(s, e)| from.is_none_or(|f| *e >= f) && to.is_none_or(|t| *s <= t));
            dropped += before - w.len();
        }
        self.windows.retain(|_, w| !w.is_empty());
        dropped
    }

    pub fn count(&self) -> usize {
        self.windows.values().map(Vec::len).sum()
    }
}

/// Check `labels` against the history they will score: every metric named
/// is in it, and every window overlaps its metric's data.
pub fn check(
    labels: &Labels,
    history: &BTreeMap<String, MetricHistory>,
    path: &Path,
) -> Result<(), LabelsError> {
    let err = |at: String, problem: String| LabelsError::Entry {
        path: path.display().to_string(),
        at,
        problem,
    };
    for (metric, windows) in &labels.windows {
        let Some(h) = history.get(metric) else {
            let known: Vec<&str> = history.keys().map(String::as_str).take(20).collect();
            return Err(err(
                format!("metric `{metric}`"),
                format!(
                    "the batch has no observations of it in the range backtested; it has: {}",
                    known.join(", ")
                ),
            ));
        };
        let (first, last) = (
            h.timestamps_us[0],
            h.timestamps_us[h.timestamps_us.len() - 1],
        );
        if let Some((s, e)) = windows.iter().find(|(s, e)| *e < first || *s > last) {
            return Err(err(
                format!("metric `{metric}`"),
                format!(
                    "the window {} to {} is outside its data ({} to {}): are the times in UTC, and of this series?",
                    fmt_us(*s),
                    fmt_us(*e),
                    fmt_us(first),
                    fmt_us(last)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        f
    }

    const H: i64 = 3_600_000_000;

    #[test]
    fn windows_points_and_json_read_alike() {
        let csv = write("metric_name,start,end\ncpu,2024-01-01 02:00,2024-01-01 03:00\ncpu,2024-01-01 02:30,2024-01-01 04:00\n");
        let l = read(csv.path(), None).expect("csv");
        let base = TimeReader::UTC.parse("2024-01-01").expect("t");
        assert_eq!(
            l.windows["cpu"],
            vec![(base + 2 * H, base + 4 * H)],
            "merged"
        );
        let pts = write("metric_name,timestamp\ncpu,2024-01-01T03:00:00Z\n");
        let l2 = read(pts.path(), Some(2 * H)).expect("points");
        assert_eq!(l2.windows["cpu"], vec![(base + 2 * H, base + 4 * H)]);
        let json = write(r#"{"cpu": [["2024-01-01 02:00", "2024-01-01 04:00"]]}"#);
        assert_eq!(read(json.path(), None).expect("json"), l);
        let bom = write("\u{feff}{\"cpu\": [[\"2024-01-01 02:00\", \"2024-01-01 04:00\"]]}");
        assert_eq!(read(bom.path(), None).expect("json with a BOM"), l);
        let spaced = write("metric_name, start, end\ncpu, 2024-01-01 02:00, 2024-01-01 04:00\n");
        assert_eq!(read(spaced.path(), None).expect("spaced header"), l);
    }

    #[test]
    fn a_bad_labels_file_names_what_is_wrong() {
        let cases = [
            ("metric,when\nx,1\n", "expected metric_name,start,end"),
            ("metric_name,timestamp\ncpu,2024-01-01\n", "give --window"),
            (
                "metric_name,start,end\ncpu,2024-01-02,2024-01-01\n",
                "line 2: ends",
            ),
            (
                "metric_name,start,end\ncpu,yesterday,2024-01-01\n",
                "`yesterday` is not a time",
            ),
            (
                "metric_name,start,end\n,2024-01-01,2024-01-02\n",
                "line 2: metric_name is empty",
            ),
            (r#"{"cpu": [[1, 2]]}"#, "write times as strings"),
            (r#"{"cpu": [["2024-01-01"]]}"#, "two times"),
            (r#"["cpu"]"#, "expected an object"),
            ("metric_name,start,end\n", "no windows or points"),
            ("{}", "no windows or points"),
        ];
        for (text, want) in cases {
            let f = write(text);
            let e = read(f.path(), None).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn labels_that_do_not_match_the_history_are_refused() {
        let mut history = BTreeMap::new();
        history.insert(
            "cpu".to_string(),
            MetricHistory {
                timestamps_us: vec![0, H, 2 * H],
                values: vec![1.0; 3],
            },
        );
        let mut l = Labels::default();
        l.windows.insert("mem".into(), vec![(0, H)]);
        let e = check(&l, &history, Path::new("l.csv"))
            .expect_err("metric")
            .to_string();
        assert!(
            e.contains("metric `mem`") && e.contains("it has: cpu"),
            "{e}"
        );
        let mut l = Labels::default();
        l.windows.insert("cpu".into(), vec![(10 * H, 11 * H)]);
        let e = check(&l, &history, Path::new("l.csv"))
            .expect_err("range")
            .to_string();
        assert!(e.contains("outside its data"), "{e}");
        l.windows.insert("cpu".into(), vec![(H, 11 * H)]);
        check(&l, &history, Path::new("l.csv")).expect("overlaps");
        l.windows
            .insert("mem".into(), vec![(0, H), (20 * H, 21 * H)]);
        assert_eq!(l.restrict(None, Some(5 * H)), 1);
        assert_eq!(l.count(), 2);
        assert_eq!(l.restrict(Some(12 * H), None), 2);
        assert!(l.windows.is_empty());
    }
}

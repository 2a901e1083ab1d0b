//! A test's expected rows (`<name>.expected.csv`): what `sandstack test
//! --update` and `sandstack record` write beside a recording or a fixture
//! history, read back within caps, and compared with what a run produced,
//! row by row and column by column. One row a line, sorted, values written
//! so they read back to the same f64, so a change shows as a small diff in
//! review.

use std::cmp::Ordering;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;

use crate::domain::MetricType;
use crate::store::schema::{METRIC_NAME, METRIC_TIMESTAMP, METRIC_TYPE, METRIC_VALUE};

/// The file's columns, in order.
pub const COLUMNS: [&str; 4] = [METRIC_TIMESTAMP, METRIC_NAME, METRIC_TYPE, METRIC_VALUE];

/// The largest expected file read.
pub const MAX_BYTES: u64 = 16 << 20;

/// The most rows an expected file may hold.
pub const MAX_ROWS: usize = 500_000;

/// The differences a failure lists in full; the rest are counted.
pub const SHOWN: usize = 10;

/// One row of a run's output, as the file holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub timestamp_us: i64,
    pub name: String,
    /// The `metric_type` word (`metric`, `score`, `alert`, ...).
    pub kind: String,
    /// None for a NULL value.
    pub value: Option<f64>,
}

impl Row {
    fn key_cmp(&self, other: &Row) -> Ordering {
        (&self.name, &self.kind, self.timestamp_us).cmp(&(
            &other.name,
            &other.kind,
            other.timestamp_us,
        ))
    }

    /// The key, then the value: NULL first, then NaN (of any sign: the
    /// file writes every NaN alike), then numbers in order.
    fn cmp(&self, other: &Row) -> Ordering {
        let place = |v: Option<f64>| match v {
            None => (0, 0.0),
            Some(v) if v.is_nan() => (1, 0.0),
            Some(v) => (2, v),
        };
        self.key_cmp(other).then_with(|| {
            let ((a, x), (b, y)) = (place(self.value), place(other.value));
            a.cmp(&b).then_with(|| x.total_cmp(&y))
        })
    }

    /// `(name, type, time)`, as a difference names the row.
    fn label(&self) -> String {
        format!(
            "({}, {}, {})",
            crate::escape::truncate(&self.name, 120),
            self.kind,
            time_text(self.timestamp_us)
        )
    }
}

/// The rows of `batches` (in the metrics schema), sorted.
pub fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for b in batches {
        let col = |name: &str| {
            b.column_by_name(name)
                .ok_or_else(|| format!("the rows have no {name} column"))
        };
        let times = col(METRIC_TIMESTAMP)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or("metric_timestamp is not a timestamp")?;
        let names = col(METRIC_NAME)?
            .as_string_opt::<i32>()
            .ok_or("metric_name is not text")?;
        let kinds = col(METRIC_TYPE)?
            .as_string_opt::<i32>()
            .ok_or("metric_type is not text")?;
        let values = col(METRIC_VALUE)?
            .as_primitive_opt::<Float64Type>()
            .ok_or("metric_value is not a number")?;
        for i in 0..b.num_rows() {
            rows.push(Row {
                timestamp_us: times.value(i),
                name: names.value(i).to_string(),
                kind: kinds.value(i).to_string(),
                value: (!values.is_null(i)).then(|| values.value(i)),
            });
        }
    }
    rows.sort_by(Row::cmp);
    Ok(rows)
}

/// A time as the file writes it: RFC 3339 in UTC, with as many fractional
/// digits as it needs.
fn time_text(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => format!("{us}us"),
    }
}

/// A value as the file writes it: the shortest text that reads back to the
/// same f64 (Rust's `{:?}`: `1.0`, `0.1`, `1e300`, `NaN`), empty for NULL.
fn value_text(v: Option<f64>) -> String {
    v.map(|v| format!("{v:?}")).unwrap_or_default()
}

/// The file's text for `rows` (sorted as [`rows_of`] sorts them).
pub fn to_csv(rows: &[Row]) -> Result<String, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS).map_err(|e| e.to_string())?;
    for r in rows {
        w.write_record([
            time_text(r.timestamp_us),
            r.name.clone(),
            r.kind.clone(),
            value_text(r.value),
        ])
        .map_err(|e| e.to_string())?;
    }
    let bytes = w.into_inner().map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// A row read from an expected file, with its line there.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedRow {
    pub line: u64,
    pub row: Row,
}

/// Read an expected file's `text`; `file` names it in errors. Refuses a
/// header other than [`COLUMNS`], a row that does not read, and more than
/// [`MAX_ROWS`] rows.
pub fn from_csv(text: &str, file: &str) -> Result<Vec<ExpectedRow>, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = r
        .headers()
        .map_err(|e| format!("{file}: {e}"))?
        .iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    if header != COLUMNS {
        return Err(format!(
            "{file}: the header is `{}`, not `{}`: an expected file is written by `sandstack test --update`",
            crate::escape::truncate(&header.join(","), 200),
            COLUMNS.join(",")
        ));
    }
    let mut rows = Vec::new();
    for record in r.records() {
        let record = record.map_err(|e| format!("{file}: {e}"))?;
        let line = record.position().map_or(0, |p| p.line());
        if rows.len() == MAX_ROWS {
            return Err(format!(
                "{file}: more than {MAX_ROWS} rows; a test's expected rows must be fewer (test a smaller recording or history)"
            ));
        }
        let cell = |i: usize| record.get(i).unwrap_or("");
        let bad = |column: &str, why: &str| {
            format!(
                "{file}, line {line}, column {column}: `{}` {why}",
                crate::escape::truncate(
                    cell(COLUMNS.iter().position(|c| *c == column).unwrap_or(0)),
                    80
                )
            )
        };
        let timestamp_us = chrono::DateTime::parse_from_rfc3339(cell(0))
            .map(|t| t.timestamp_micros())
            .map_err(|_| {
                bad(
                    METRIC_TIMESTAMP,
                    "is not an RFC 3339 time (2026-01-02T03:04:05Z)",
                )
            })?;
        let kind = cell(2);
        if MetricType::parse(kind).is_none() {
            return Err(bad(METRIC_TYPE, "is not a metric_type"));
        }
        let value = match cell(3) {
            "" => None,
            v => Some(
                v.parse::<f64>()
                    .map_err(|_| bad(METRIC_VALUE, "is not a number"))?,
            ),
        };
        rows.push(ExpectedRow {
            line,
            row: Row {
                timestamp_us,
                name: cell(1).to_string(),
                kind: kind.to_string(),
                value,
            },
        });
    }
    rows.sort_by(|a, b| a.row.cmp(&b.row));
    Ok(rows)
}

/// How far a value may be from the expected one and still be equal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// For `score` rows: absolute difference (models' arithmetic may differ
    /// in the last bits between machines). Every other row is exact.
    pub score: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { score: 1e-9 }
    }
}

impl Tolerance {
    fn same(&self, kind: &str, a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) if a.is_nan() || b.is_nan() => a.is_nan() && b.is_nan(),
            (Some(a), Some(b)) if kind == MetricType::Score.as_str() => {
                a == b || (a - b).abs() <= self.score
            }
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// How a run's rows differ from the expected ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    /// Rows in both whose value differs.
    pub changed: usize,
    /// Expected rows the run did not produce.
    pub missing: usize,
    /// Rows the run produced that were not expected.
    pub extra: usize,
    /// The first [`SHOWN`] differences, one line each, naming the row (its
    /// line in the expected file, metric, type and time) and the column.
    pub lines: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changed + self.missing + self.extra == 0
    }

    /// `1 row differs, 2 missing, 1 extra`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.changed > 0 {
            let verb = if self.changed == 1 {
                "row differs"
            } else {
                "rows differ"
            };
            parts.push(format!("{} {verb}", self.changed));
        }
        if self.missing > 0 {
            parts.push(format!("{} missing", self.missing));
        }
        if self.extra > 0 {
            parts.push(format!("{} extra", self.extra));
        }
        parts.join(", ")
    }

    fn note(&mut self, line: String) {
        if self.lines.len() < SHOWN {
            self.lines.push(line);
        }
    }
}

/// Compare a run's `actual` rows with the `expected` ones (both sorted).
/// Rows are matched on metric, type and time; rows sharing those are
/// paired in value order.
pub fn compare(expected: &[ExpectedRow], actual: &[Row], tolerance: Tolerance) -> Diff {
    let mut diff = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        let order = match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) => e.row.key_cmp(a),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Equal => {
                let (e, a) = (&expected[i], &actual[j]);
                if !tolerance.same(&a.kind, e.row.value, a.value) {
                    diff.changed += 1;
                    diff.note(format!(
                        "line {} {}: {METRIC_VALUE} expected {}, got {}",
                        e.line,
                        e.row.label(),
                        shown(e.row.value),
                        shown(a.value)
                    ));
                }
                i += 1;
                j += 1;
            }
            Ordering::Less => {
                let e = &expected[i];
                diff.missing += 1;
                diff.note(format!(
                    "line {} {}: expected ({METRIC_VALUE} {}), not produced",
                    e.line,
                    e.row.label(),
                    shown(e.row.value)
                ));
                i += 1;
            }
            Ordering::Greater => {
                let a = &actual[j];
                diff.extra += 1;
                diff.note(format!(
                    "{}: produced ({METRIC_VALUE} {}), not expected",
                    a.label(),
                    shown(a.value)
                ));
                j += 1;
            }
        }
    }
    diff
}

fn shown(v: Option<f64>) -> String {
    match v {
        None => "NULL".into(),
        v => value_text(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64, name: &str, kind: &str, value: f64) -> Row {
        Row {
            timestamp_us: ts,
            name: name.into(),
            kind: kind.into(),
            value: Some(value),
        }
    }

    #[test]
    fn rows_round_trip_through_the_file_exactly() {
        let rows = vec![
            row(1_795_305_600_000_000, "a,b \"quoted\"", "metric", 0.1 + 0.2),
            row(1_795_305_600_000_123, "a", "score", 1e300),
            row(-1, "n", "alert", 1.0),
            Row {
                value: None,
                ..row(0, "null", "change", 0.0)
            },
        ];
        let mut sorted = rows.clone();
        sorted.sort_by(Row::cmp);
        let text = to_csv(&sorted).expect("csv");
        assert!(text.starts_with("metric_timestamp,metric_name,metric_type,metric_value\n"));
        assert!(
            text.contains("2026-11-22T00:00:00.000123Z,a,score,1e300\n"),
            "{text}"
        );
        let back: Vec<Row> = from_csv(&text, "t.csv")
            .expect("read")
            .into_iter()
            .map(|e| e.row)
            .collect();
        assert_eq!(back, sorted);
        let bits = |r: &[Row]| {
            r.iter()
                .map(|r| r.value.map(f64::to_bits))
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&back), bits(&sorted));
    }

    #[test]
    fn a_difference_names_the_line_the_row_and_the_column() {
        let expected = from_csv(
            "metric_timestamp,metric_name,metric_type,metric_value\n\
             2026-01-01T00:00:00Z,a,metric,1.0\n\
             2026-01-01T00:00:00Z,b,metric,2.0\n\
             2026-01-01T00:00:00Z,c,metric,3.0\n\
             2026-01-01T00:00:00Z,d,score,0.5\n",
            "e.csv",
        )
        .expect("read");
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("t")
            .timestamp_micros();
        let actual = vec![
            row(t, "a", "metric", 1.0),
            row(t, "b", "metric", 2.5),
            row(t, "d", "score", 0.5 + 1e-12),
            row(t, "e", "metric", 4.0),
        ];
        let diff = compare(&expected, &actual, Tolerance::default());
        assert_eq!((diff.changed, diff.missing, diff.extra), (1, 1, 1));
        assert_eq!(diff.summary(), "1 row differs, 1 missing, 1 extra");
        assert_eq!(
            diff.lines,
            [
                "line 3 (b, metric, 2026-01-01T00:00:00Z): metric_value expected 2.0, got 2.5",
                "line 4 (c, metric, 2026-01-01T00:00:00Z): expected (metric_value 3.0), not produced",
                "(e, metric, 2026-01-01T00:00:00Z): produced (metric_value 4.0), not expected",
            ]
        );
        // Scores within the tolerance are equal; beyond it, or any other
        // type off by as little, they are not.
        let strict = Tolerance { score: 0.0 };
        assert_eq!(compare(&expected, &actual, strict).changed, 2);
        assert!(compare(&expected, &actual[..0], Tolerance::default()).missing == 4);
    }

    #[test]
    fn repeated_rows_pair_by_value_and_null_and_nan_are_values_of_their_own() {
        let text = "metric_timestamp,metric_name,metric_type,metric_value\n\
                    2026-01-01T00:00:00Z,a,metric,2.0\n\
                    2026-01-01T00:00:00Z,a,metric,1.0\n\
                    2026-01-01T00:00:00Z,a,metric,NaN\n\
                    2026-01-01T00:00:00Z,a,metric,\n";
        let expected = from_csv(text, "e.csv").expect("read");
        let t = expected[0].row.timestamp_us;
        let mut actual = vec![
            row(t, "a", "metric", 1.0),
            Row {
                value: None,
                ..row(t, "a", "metric", 0.0)
            },
            row(t, "a", "metric", -f64::NAN),
            row(t, "a", "metric", 2.0),
        ];
        actual.sort_by(Row::cmp);
        assert!(compare(&expected, &actual, Tolerance::default()).is_empty());
        // A NULL where a number was, or one copy fewer, is a difference.
        let mut fewer = actual.clone();
        fewer.retain(|r| r.value != Some(1.0));
        let diff = compare(&expected, &fewer, Tolerance::default());
        assert_eq!((diff.changed, diff.missing, diff.extra), (1, 1, 0));
        for r in actual.iter_mut().filter(|r| r.value == Some(2.0)) {
            r.value = None;
        }
        actual.sort_by(Row::cmp);
        assert!(!compare(&expected, &actual, Tolerance::default()).is_empty());
    }

    #[test]
    fn malformed_files_are_refused_with_the_line_and_column() {
        let head = "metric_timestamp,metric_name,metric_type,metric_value\n";
        let err = |body: &str| from_csv(&format!("{head}{body}"), "x.expected.csv").unwrap_err();
        assert_eq!(
            err("2026-01-01T00:00:00Z,a,metric,lots\n"),
            "x.expected.csv, line 2, column metric_value: `lots` is not a number"
        );
        assert_eq!(
            err("yesterday,a,metric,1\n"),
            "x.expected.csv, line 2, column metric_timestamp: `yesterday` is not an RFC 3339 time (2026-01-02T03:04:05Z)"
        );
        assert_eq!(
            err("2026-01-01T00:00:00Z,a,verdict,1\n"),
            "x.expected.csv, line 2, column metric_type: `verdict` is not a metric_type"
        );
        assert!(err("2026-01-01T00:00:00Z,a\n").contains("x.expected.csv"));
        let wrong = from_csv("time,name\n", "x.expected.csv").unwrap_err();
        assert!(
            wrong.starts_with("x.expected.csv: the header is `time,name`"),
            "{wrong}"
        );
        let many = format!(
            "{head}{}",
            "2026-01-01T00:00:00Z,a,metric,1\n".repeat(MAX_ROWS + 1)
        );
        assert!(from_csv(&many, "big.csv")
            .unwrap_err()
            .contains("more than 500000 rows"));
    }
}

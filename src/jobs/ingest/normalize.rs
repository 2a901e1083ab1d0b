//! Turns whatever an ingest returned (a SQL result or a guest's DataFrame,
//! as Arrow) into rows of the metrics table, or says precisely what is wrong.
//! This is the trust boundary for guest output: nothing reaches DuckDB
//! without passing through here.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::config::SandboxLimits;
use crate::domain::{fmt_us, MetricType};
use crate::escape::{acts_on_terminal, terminal_line, truncate};
use crate::store::schema::{metrics_schema, METADATA, METRIC_NAME, METRIC_TIMESTAMP, METRIC_VALUE};

/// What normalisation produced.
#[derive(Debug)]
pub struct Normalized {
    pub rows: RecordBatch,
    /// Rows dropped because metric_value was NaN, null or infinite.
    pub dropped_nan: usize,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidResult {
    #[error("ingest returned no rows: return at least one row with metric_name, metric_value and metric_timestamp")]
    Empty,
    #[error("ingest exceeded ingest_max_rows={limit} (returned {rows} rows): return fewer rows or raise ingest_max_rows")]
    TooManyRows { limit: u64, rows: usize },
    #[error("ingest result is missing required column(s) {missing}; found columns: {found}. Return a DataFrame with metric_name, metric_value and metric_timestamp")]
    MissingColumns { missing: String, found: String },
    #[error("metric_value must be numeric: row {row} (metric `{metric}`) has {value}")]
    NotNumeric {
        row: usize,
        metric: String,
        value: String,
    },
    #[error("metric_value has type {found}, expected numbers")]
    ValueType { found: String },
    #[error("metric_timestamp must be a timestamp, date or ISO-8601 string: {detail}")]
    BadTimestamp { detail: String },
    #[error("metric_timestamp at row {row} is {value}, outside the allowed range {min} to {max} (ingest_timestamp_min, ingest_timestamp_max)")]
    TimestampOutOfRange {
        row: usize,
        value: String,
        min: String,
        max: String,
    },
    #[error("metric_name at row {row} {problem}: {shown}")]
    BadName {
        row: usize,
        problem: String,
        shown: String,
    },
    #[error("{column} is empty (null) at row {row}; every row needs a {column}")]
    NullIn { column: &'static str, row: usize },
    #[error("all {rows} rows had a NaN or infinite metric_value; nothing to store")]
    AllNan { rows: usize },
    #[error("cannot read the result: {detail}")]
    Malformed { detail: String },
}

/// Normalise raw result batches for `batch`: required columns, types,
/// names and times within `limits`, rounding to `rounding` decimals
/// (negative disables), NaN rows dropped.
pub fn normalize(
    raw: &[RecordBatch],
    batch: &str,
    limits: &SandboxLimits,
    rounding: i64,
) -> Result<Normalized, InvalidResult> {
    let max_rows = limits.max_rows;
    let Some(first) = raw.first() else {
        return Err(InvalidResult::Empty);
    };
    let input = concat_batches(&first.schema(), raw).map_err(|e| InvalidResult::Malformed {
        detail: e.to_string(),
    })?;
    let n = input.num_rows();
    check_shape(&input, max_rows)?;
    let col = |name: &str| {
        input
            .column_by_name(name)
            .cloned()
            .ok_or(InvalidResult::Empty)
    };

    let names = to_utf8(&col(METRIC_NAME)?)?;
    if let Some(row) = first_null(&names) {
        return Err(InvalidResult::NullIn {
            column: METRIC_NAME,
            row,
        });
    }
    let names = names.as_string::<i32>().clone();
    check_names(&names, limits.max_name_len)?;
    let values = to_f64(&col(METRIC_VALUE)?, &names)?;
    let timestamps = to_timestamp(&col(METRIC_TIMESTAMP)?)?;
    if let Some(row) = first_null(&timestamps) {
        return Err(InvalidResult::NullIn {
            column: METRIC_TIMESTAMP,
            row,
        });
    }
    check_time_range(&timestamps, limits)?;
    let metadata: ArrayRef = match input.column_by_name(METADATA) {
        Some(m) => to_utf8(m)?,
        None => Arc::new(StringArray::new_null(n)),
    };

    let rounded = round_values(&values, rounding);
    let keep: arrow::array::BooleanArray = rounded
        .iter()
        .map(|v| Some(v.is_some_and(f64::is_finite)))
        .collect();
    let dropped_nan = keep.iter().filter(|k| *k == Some(false)).count();
    if dropped_nan == n {
        return Err(InvalidResult::AllNan { rows: n });
    }

    let out = RecordBatch::try_new(
        metrics_schema(),
        vec![
            timestamps,
            Arc::new(StringArray::from(vec![batch; n])),
            Arc::new(names),
            Arc::new(StringArray::from(vec![MetricType::Metric.as_str(); n])),
            Arc::new(rounded),
            metadata,
        ],
    )
    .map_err(|e| InvalidResult::Malformed {
        detail: e.to_string(),
    })?;
    let rows = if dropped_nan > 0 {
        filter_record_batch(&out, &keep).map_err(|e| InvalidResult::Malformed {
            detail: e.to_string(),
        })?
    } else {
        out
    };
    Ok(Normalized { rows, dropped_nan })
}

/// The three required columns are there, and there are between 1 and
/// `max_rows` rows.
fn check_shape(input: &RecordBatch, max_rows: u64) -> Result<(), InvalidResult> {
    let required = [METRIC_NAME, METRIC_VALUE, METRIC_TIMESTAMP];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| input.column_by_name(c).is_none())
        .collect();
    if !missing.is_empty() {
        let found: Vec<String> = input
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        return Err(InvalidResult::MissingColumns {
            missing: missing.join(", "),
            found: if found.is_empty() {
                "(none)".into()
            } else {
                found.join(", ")
            },
        });
    }
    let n = input.num_rows();
    if n == 0 {
        return Err(InvalidResult::Empty);
    }
    if n as u64 > max_rows {
        return Err(InvalidResult::TooManyRows {
            limit: max_rows,
            rows: n,
        });
    }
    Ok(())
}

/// Names reach file names, SQL parameters, terminals and web pages: none
/// may be empty, over `max_len` characters, or hold control characters.
pub(crate) fn check_names(names: &StringArray, max_len: u64) -> Result<(), InvalidResult> {
    let bad = |row: usize, name: &str, problem: String| {
        Err(InvalidResult::BadName {
            row,
            problem,
            shown: format!("\"{}\"", terminal_line(&truncate(name, 60))),
        })
    };
    for (row, name) in names.iter().enumerate() {
        let Some(name) = name else { continue };
        if name.trim().is_empty() {
            return bad(row, name, "is empty; every metric needs a name".into());
        }
        if name.len() as u64 > max_len && name.chars().count() as u64 > max_len {
            return bad(
                row,
                name,
                format!(
                    "is {} characters long, over ingest_max_name_len={max_len}",
                    name.chars().count()
                ),
            );
        }
        if let Some(c) = name.chars().find(|c| acts_on_terminal(*c)) {
            return bad(
                row,
                name,
                format!("holds the control character U+{:04X}", c as u32),
            );
        }
    }
    Ok(())
}

/// Every time within [ingest_timestamp_min, ingest_timestamp_max].
fn check_time_range(timestamps: &ArrayRef, limits: &SandboxLimits) -> Result<(), InvalidResult> {
    let us = timestamps.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let (min, max) = (limits.timestamp_min_us, limits.timestamp_max_us);
    match us.values().iter().position(|t| *t < min || *t > max) {
        None => Ok(()),
        Some(row) => Err(InvalidResult::TimestampOutOfRange {
            row,
            value: fmt_us(us.value(row)),
            min: fmt_us(min),
            max: fmt_us(max),
        }),
    }
}

fn first_null(a: &ArrayRef) -> Option<usize> {
    if a.null_count() == 0 {
        return None;
    }
    (0..a.len()).find(|i| a.is_null(*i))
}

fn to_utf8(a: &ArrayRef) -> Result<ArrayRef, InvalidResult> {
    cast(a, &DataType::Utf8).map_err(|e| InvalidResult::Malformed {
        detail: format!("cannot read text column: {e}"),
    })
}

fn to_f64(a: &ArrayRef, names: &StringArray) -> Result<Float64Array, InvalidResult> {
    let dt = a.data_type();
    if dt.is_numeric() || matches!(dt, DataType::Boolean | DataType::Null) {
        let c = cast(a, &DataType::Float64).map_err(|e| InvalidResult::ValueType {
            found: format!("{dt} ({e})"),
        })?;
        return Ok(c.as_primitive::<arrow::datatypes::Float64Type>().clone());
    }
    let text = match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            to_utf8(a)?
        }
        other => {
            return Err(InvalidResult::ValueType {
                found: other.to_string(),
            })
        }
    };
    let text = text.as_string::<i32>();
    let mut out = Vec::with_capacity(text.len());
    for (row, v) in text.iter().enumerate() {
        match v {
            None => out.push(None),
            Some(s) => match s.trim().parse::<f64>() {
                Ok(x) => out.push(Some(x)),
                Err(_) => {
                    let shown: String = s.chars().take(40).collect();
                    return Err(InvalidResult::NotNumeric {
                        row,
                        metric: names.value(row).to_string(),
                        value: format!("\"{shown}\""),
                    });
                }
            },
        }
    }
    Ok(Float64Array::from(out))
}

fn to_timestamp(a: &ArrayRef) -> Result<ArrayRef, InvalidResult> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, None);
    let bad = |e: arrow::error::ArrowError| InvalidResult::BadTimestamp {
        detail: e.to_string(),
    };
    let naive = match a.data_type() {
        // Zoned timestamps hold UTC instants: drop the zone without moving
        // the instant (arrow's cast would shift to local wall time).
        DataType::Timestamp(unit, Some(_)) => strip_zone(a, *unit),
        DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64 => a.clone(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            // Parse as UTC; strings with an offset are converted to UTC.
            let text = to_utf8(a)?;
            let zoned = cast(
                &text,
                &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            )
            .map_err(bad)?;
            strip_zone(&zoned, TimeUnit::Microsecond)
        }
        other => {
            return Err(InvalidResult::BadTimestamp {
                detail: format!("found column of type {other}"),
            })
        }
    };
    let out = cast(&naive, &target).map_err(bad)?;
    // A safe cast turns what it cannot read (unparseable text, a time out
    // of range) into null: say so, instead of calling the value empty.
    if out.null_count() > a.null_count() {
        if let Some(row) = (0..a.len()).find(|i| a.is_valid(*i) && out.is_null(*i)) {
            let value = arrow::util::display::array_value_to_string(a, row)
                .unwrap_or_else(|_| "its value".into());
            let shown: String = value.chars().take(60).collect();
            return Err(InvalidResult::BadTimestamp {
                detail: format!(
                    "row {row} has \"{}\", which is not a readable date and time (or is out of range)",
                    terminal_line(&shown)
                ),
            });
        }
    }
    Ok(out)
}

fn strip_zone(a: &ArrayRef, unit: TimeUnit) -> ArrayRef {
    use arrow::datatypes::*;
    match unit {
        TimeUnit::Second => Arc::new(
            a.as_primitive::<TimestampSecondType>()
                .clone()
                .with_timezone_opt(None::<String>),
        ),
        TimeUnit::Millisecond => Arc::new(
            a.as_primitive::<TimestampMillisecondType>()
                .clone()
                .with_timezone_opt(None::<String>),
        ),
        TimeUnit::Microsecond => Arc::new(
            a.as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone_opt(None::<String>),
        ),
        TimeUnit::Nanosecond => Arc::new(
            a.as_primitive::<TimestampNanosecondType>()
                .clone()
                .with_timezone_opt(None::<String>),
        ),
    }
}

fn round_values(values: &Float64Array, decimals: i64) -> Float64Array {
    values.unary::<_, arrow::datatypes::Float64Type>(|v| crate::domain::round_decimals(v, decimals))
}

/// The same rows, all stamped with `at_us`: a SQL batch's rows in a
/// backfill period or a caught-up tick. Its `now()` already reads that
/// time (`Store::set_clock`); this also pins rows the SQL stamped itself.
pub fn restamp(rows: &RecordBatch, at_us: i64) -> RecordBatch {
    let mut columns = rows.columns().to_vec();
    columns[0] = Arc::new(arrow::array::TimestampMicrosecondArray::from(
        vec![at_us; rows.num_rows()],
    ));
    RecordBatch::try_new(rows.schema(), columns).unwrap_or_else(|_| rows.clone())
}

/// Rows of a normalised batch, as text, for printing (its metadata is the
/// batch's text, escaped cell by cell).
pub fn describe_rows(rows: &RecordBatch, limit: usize) -> String {
    let shown = rows.slice(0, rows.num_rows().min(limit));
    let mut text =
        crate::escape::table(&[shown]).unwrap_or_else(|e| format!("(cannot format rows: {e})"));
    if rows.num_rows() > limit {
        text.push_str(&format!("\n... and {} more rows", rows.num_rows() - limit));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("valid batch")
    }

    fn limits(max_rows: u64) -> SandboxLimits {
        SandboxLimits {
            max_rows,
            ..SandboxLimits::default()
        }
    }

    fn one_row(name: &str, ts: ArrayRef) -> RecordBatch {
        batch(vec![
            ("metric_name", names(&[name])),
            ("metric_value", Arc::new(Float64Array::from(vec![1.0]))),
            ("metric_timestamp", ts),
        ])
    }

    fn names(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    #[test]
    fn fills_batch_and_type_and_rounds() {
        let b = batch(vec![
            ("metric_name", names(&["a", "b"])),
            (
                "metric_value",
                Arc::new(Float64Array::from(vec![1.234567, 2.0])),
            ),
            (
                "metric_timestamp",
                names(&["2026-01-01T00:00:00Z", "2026-01-01 01:00:00"]),
            ),
        ]);
        let n = normalize(&[b], "my_batch", &limits(100), 2).expect("valid");
        assert_eq!(n.rows.num_rows(), 2);
        let v = n
            .rows
            .column(4)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(v.value(0), 1.23);
        assert_eq!(n.rows.column(1).as_string::<i32>().value(0), "my_batch");
        assert_eq!(n.rows.column(3).as_string::<i32>().value(1), "metric");
    }

    #[test]
    fn zoned_timestamps_keep_their_instant() {
        let ts = TimestampNanosecondArray::from(vec![1_700_000_000_000_000_000])
            .with_timezone("America/New_York");
        let b = batch(vec![
            ("metric_name", names(&["a"])),
            ("metric_value", Arc::new(Int64Array::from(vec![1]))),
            ("metric_timestamp", Arc::new(ts)),
        ]);
        let n = normalize(&[b], "x", &limits(10), 4).expect("valid");
        let t = n
            .rows
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(t.value(0), 1_700_000_000_000_000);
    }

    #[test]
    fn offsets_in_strings_convert_to_utc() {
        let b = batch(vec![
            ("metric_name", names(&["a"])),
            ("metric_value", Arc::new(Float64Array::from(vec![1.0]))),
            ("metric_timestamp", names(&["2026-01-01T02:00:00+02:00"])),
        ]);
        let n = normalize(&[b], "x", &limits(10), 4).expect("valid");
        let t = n
            .rows
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(t.value(0), 1_767_225_600_000_000);
    }

    #[test]
    fn drops_nan_and_counts() {
        let b = batch(vec![
            ("metric_name", names(&["a", "b", "c"])),
            (
                "metric_value",
                Arc::new(Float64Array::from(vec![Some(1.0), Some(f64::NAN), None])),
            ),
            (
                "metric_timestamp",
                names(&["2026-01-01", "2026-01-01", "2026-01-01"]),
            ),
        ]);
        let n = normalize(&[b], "x", &limits(10), 4).expect("valid");
        assert_eq!((n.rows.num_rows(), n.dropped_nan), (1, 2));
    }

    #[test]
    fn errors_are_precise() {
        let missing = batch(vec![("metric_name", names(&["a"]))]);
        assert_eq!(
            normalize(&[missing], "x", &limits(10), 4).unwrap_err().to_string(),
            "ingest result is missing required column(s) metric_value, metric_timestamp; found columns: metric_name. Return a DataFrame with metric_name, metric_value and metric_timestamp"
        );
        let text = batch(vec![
            ("metric_name", names(&["a", "b"])),
            ("metric_value", names(&["1.5", "abc"])),
            ("metric_timestamp", names(&["2026-01-01", "2026-01-01"])),
        ]);
        assert_eq!(
            normalize(&[text], "x", &limits(10), 4)
                .unwrap_err()
                .to_string(),
            "metric_value must be numeric: row 1 (metric `b`) has \"abc\""
        );
        let many = batch(vec![
            ("metric_name", names(&["a", "b"])),
            ("metric_value", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
            ("metric_timestamp", names(&["2026-01-01", "2026-01-01"])),
        ]);
        assert_eq!(
            normalize(&[many], "x", &limits(1), 4).unwrap_err(),
            InvalidResult::TooManyRows { limit: 1, rows: 2 }
        );
        let all_nan = batch(vec![
            ("metric_name", names(&["a"])),
            ("metric_value", Arc::new(Float64Array::from(vec![f64::NAN]))),
            ("metric_timestamp", names(&["2026-01-01"])),
        ]);
        assert_eq!(
            normalize(&[all_nan], "x", &limits(5), 4).unwrap_err(),
            InvalidResult::AllNan { rows: 1 }
        );
    }

    #[test]
    fn names_must_be_present_short_and_printable() {
        let ts = || names(&["2026-01-01"]);
        let err = |name: &str| {
            normalize(&[one_row(name, ts())], "x", &limits(10), 4)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(" "),
            "metric_name at row 0 is empty; every metric needs a name: \" \""
        );
        let long = "n".repeat(300);
        assert!(err(&long).starts_with(
            "metric_name at row 0 is 300 characters long, over ingest_max_name_len=200: \"nnn"
        ));
        assert_eq!(
            err("cpu\x1b[2Jload"),
            "metric_name at row 0 holds the control character U+001B: \"cpu\\u{1b}[2Jload\""
        );
        assert!(err("a\u{202e}b").contains("U+202E"));
    }

    #[test]
    fn times_must_be_readable_and_in_range() {
        let err = |ts: ArrayRef| {
            normalize(&[one_row("m", ts)], "x", &limits(10), 4)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(names(&["yesterday-ish"])),
            "metric_timestamp must be a timestamp, date or ISO-8601 string: row 0 has \"yesterday-ish\", which is not a readable date and time (or is out of range)"
        );
        assert_eq!(
            err(Arc::new(TimestampNanosecondArray::from(vec![i64::MAX]))),
            "metric_timestamp at row 0 is 2262-04-11 23:47:16, outside the allowed range 1900-01-01 00:00:00 to 2200-01-01 00:00:00 (ingest_timestamp_min, ingest_timestamp_max)"
        );
        let seconds = arrow::array::TimestampSecondArray::from(vec![i64::MAX / 2]);
        assert!(err(Arc::new(seconds)).contains("not a readable date and time"));
        assert!(err(names(&["200000-01-01T00:00:00"])).starts_with("metric_timestamp"));
    }
}

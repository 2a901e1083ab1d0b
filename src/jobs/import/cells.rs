//! Reads one column's cells: times into UTC microseconds (ISO-8601 text, a
//! strftime pattern, Unix epochs, or Arrow's own time types), values into
//! numbers. A cell that cannot be read is a [`CellError`] naming its row.

use std::str::FromStr;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// A cell that could not be read: `row` counts data rows from 1.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    pub row: usize,
    pub value: String,
    pub problem: String,
}

/// How the timestamp column's text is written.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFormat {
    /// ISO-8601 / RFC 3339 and its common relatives (`2024-05-01 13:00`,
    /// `2024/05/01 13:00:00`, a date alone).
    Auto,
    /// A strftime pattern (`%d/%m/%Y %H:%M`); with `%z` the text carries its offset.
    Pattern(String),
    /// Seconds, milliseconds, microseconds or nanoseconds since 1970 (UTC).
    Epoch(i64),
}

impl FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => TimeFormat::Auto,
            "epoch_s" => TimeFormat::Epoch(1_000_000),
            "epoch_ms" => TimeFormat::Epoch(1_000),
            "epoch_us" => TimeFormat::Epoch(1),
            "epoch_ns" => TimeFormat::Epoch(-1_000),
            p if p.contains('%') => {
                check_pattern(p)?;
                TimeFormat::Pattern(p.to_string())
            }
            _ => {
                return Err(format!(
                    "`{s}` is not a time format: use auto, epoch_s, epoch_ms, epoch_us, epoch_ns \
                     or a strftime pattern such as %Y-%m-%d %H:%M:%S"
                ))
            }
        })
    }
}

/// A pattern chrono cannot use fails on every row; say so once, up front.
fn check_pattern(p: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{p}` is not a valid strftime pattern"));
    }
    // chrono reads a zone's name but cannot place it: the time would be
    // taken as UTC, silently off.
    if p.contains("%Z") {
        return Err(format!(
            "`{p}`: %Z (a zone's name) cannot be read; use %z for an offset such as +01:00, or --timezone"
        ));
    }
    Ok(())
}

/// `col` cast to `to`, refusing a cell the cast could not hold (Arrow's
/// cast turns it into a null, over a value that would be read as 0).
fn cast_checked(col: &ArrayRef, to: &DataType, first_row: usize) -> Result<ArrayRef, CellError> {
    let out = arrow::compute::cast(col, to).map_err(|e| CellError {
        row: first_row,
        value: shown(col, 0),
        problem: e.to_string(),
    })?;
    if out.null_count() > col.null_count() {
        if let Some(i) = (0..col.len()).find(|i| col.is_valid(*i) && out.is_null(*i)) {
            return Err(CellError {
                row: first_row + i,
                value: shown(col, i),
                problem: "is out of range".into(),
            });
        }
    }
    Ok(out)
}

/// The naive text forms `Auto` tries, most common first.
const NAIVE_FORMS: [&str; 6] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y/%m/%d %H:%M",
];
const DATE_FORMS: [&str; 2] = ["%Y-%m-%d", "%Y/%m/%d"];

/// Reads times in a format, taking times written without an offset as wall
/// time in `zone`.
#[derive(Debug, Clone)]
pub struct TimeReader {
    pub format: TimeFormat,
    pub zone: Tz,
}

impl TimeReader {
    /// How a time on the command line or in a labels file is read: any of
    /// the automatic forms, UTC unless it says otherwise.
    pub const UTC: TimeReader = TimeReader {
        format: TimeFormat::Auto,
        zone: chrono_tz::UTC,
    };

    /// Every cell of `col` in µs since 1970 UTC; `first_row` is the row
    /// number of its first cell.
    pub fn column(&self, col: &ArrayRef, first_row: usize) -> Result<Vec<i64>, CellError> {
        let at = |i: usize, problem: String| CellError {
            row: first_row + i,
            value: shown(col, i),
            problem,
        };
        if let Some(i) = (0..col.len()).find(|i| col.is_null(*i)) {
            return Err(at(i, "is empty: every row needs a time".into()));
        }
        if let DataType::Dictionary(_, values) = col.data_type() {
            return self.column(&cast_checked(col, values, first_row)?, first_row);
        }
        let mut out = Vec::with_capacity(col.len());
        match col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text =
                    arrow::compute::cast(col, &DataType::Utf8).map_err(|e| at(0, e.to_string()))?;
                let mut hint = 0;
                for (i, v) in text.as_string::<i32>().iter().enumerate() {
                    out.push(
                        self.text(v.unwrap_or_default(), &mut hint)
                            .map_err(|p| at(i, p))?,
                    );
                }
            }
            DataType::Timestamp(_, zone) => {
                let to = DataType::Timestamp(TimeUnit::Microsecond, zone.clone());
                let us = cast_checked(col, &to, first_row)?;
                let us = us.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                for (i, v) in us.values().iter().enumerate() {
                    out.push(match zone {
                        Some(_) => *v,
                        None => self.wall_us(*v).map_err(|p| at(i, p))?,
                    });
                }
            }
            DataType::Date32 | DataType::Date64 => {
                let to = DataType::Timestamp(TimeUnit::Microsecond, None);
                let us = cast_checked(col, &to, first_row)?;
                let us = us.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                for (i, v) in us.values().iter().enumerate() {
                    out.push(self.wall_us(*v).map_err(|p| at(i, p))?);
                }
            }
            t if t.is_numeric() => {
                let TimeFormat::Epoch(scale) = self.format else {
                    return Err(at(0, "is a number: say which epoch with --timestamp-format epoch_s (or epoch_ms, epoch_us, epoch_ns)".into()));
                };
                let f = cast_checked(col, &DataType::Float64, first_row)?;
                for (i, v) in f
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .values()
                    .iter()
                    .enumerate()
                {
                    out.push(epoch_us(*v, scale).map_err(|p| at(i, p))?);
                }
            }
            other => return Err(at(0, format!("is of type {other}, which holds no time"))),
        }
        Ok(out)
    }

    /// One time written as text, in µs since 1970 UTC; the error says
    /// what is wrong with it.
    pub fn parse(&self, text: &str) -> Result<i64, String> {
        self.text(text, &mut 0)
    }

    /// One text cell; `hint` remembers which auto form matched last.
    fn text(&self, raw: &str, hint: &mut usize) -> Result<i64, String> {
        let s = raw.trim();
        match &self.format {
            TimeFormat::Epoch(scale) => {
                // Whole numbers exactly (nanoseconds do not survive an f64).
                if let Ok(v) = s.parse::<i64>() {
                    let us = if *scale > 0 {
                        v.checked_mul(*scale)
                    } else {
                        Some(v.div_euclid(-scale))
                    };
                    return us.ok_or_else(|| "is out of range for a time".to_string());
                }
                let v: f64 = s.parse().map_err(|_| {
                    "is not a number of the epoch --timestamp-format names".to_string()
                })?;
                epoch_us(v, *scale)
            }
            TimeFormat::Pattern(p) => self.with_pattern(s, p),
            TimeFormat::Auto => self.auto(s, hint),
        }
    }

    fn with_pattern(&self, s: &str, p: &str) -> Result<i64, String> {
        let mismatch =
            |e: chrono::ParseError| format!("does not match --timestamp-format `{p}` ({e})");
        if p.contains("%z") || p.contains("%:z") || p.contains("%#z") {
            return DateTime::parse_from_str(s, p)
                .map(|t| t.timestamp_micros())
                .map_err(mismatch);
        }
        match NaiveDateTime::parse_from_str(s, p) {
            Ok(t) => self.localize(t),
            Err(e) => match NaiveDate::parse_from_str(s, p) {
                Ok(d) => self.localize(d.and_time(chrono::NaiveTime::MIN)),
                Err(_) => Err(mismatch(e)),
            },
        }
    }

    fn auto(&self, s: &str, hint: &mut usize) -> Result<i64, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(t.timestamp_micros());
        }
        for k in 0..NAIVE_FORMS.len() {
            let i = (*hint + k) % NAIVE_FORMS.len();
            if let Ok(t) = NaiveDateTime::parse_from_str(s, NAIVE_FORMS[i]) {
                *hint = i;
                return self.localize(t);
            }
        }
        for f in DATE_FORMS {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return self.localize(d.and_time(chrono::NaiveTime::MIN));
            }
        }
        if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z") {
            return Ok(t.timestamp_micros());
        }
        if !s.is_empty() && s.parse::<f64>().is_ok() {
            return Err("is a number: if it is a Unix time, say which with --timestamp-format epoch_s (or epoch_ms, epoch_us, epoch_ns)".into());
        }
        Err("is not a date and time sandstack reads (ISO-8601 such as 2024-05-01T13:00:00Z or 2024-05-01 13:00); \
             give its form with --timestamp-format, e.g. %d/%m/%Y %H:%M"
            .into())
    }

    /// A wall-clock time in µs (as Arrow holds a zoneless timestamp).
    fn wall_us(&self, us: i64) -> Result<i64, String> {
        let t = DateTime::from_timestamp_micros(us).ok_or("is out of range")?;
        self.localize(t.naive_utc())
    }

    fn localize(&self, t: NaiveDateTime) -> Result<i64, String> {
        match self.zone.from_local_datetime(&t) {
            chrono::LocalResult::Single(t) => Ok(t.timestamp_micros()),
            // The hour a clock goes back happens twice: take the first.
            chrono::LocalResult::Ambiguous(first, _) => Ok(first.timestamp_micros()),
            chrono::LocalResult::None => Err(format!(
                "does not exist in {} (the clocks skipped it): is --timezone right?",
                self.zone
            )),
        }
    }
}

/// `v` in the epoch unit `scale` (µs per unit; negative: units per µs).
fn epoch_us(v: f64, scale: i64) -> Result<i64, String> {
    let us = if scale > 0 {
        v * scale as f64
    } else {
        v / (-scale) as f64
    };
    if !us.is_finite() || us.abs() > 9.0e18 {
        return Err("is out of range for a time".into());
    }
    Ok(us.round() as i64)
}

/// Every cell of a value column as a number; None where it is empty, null,
/// NaN or infinite (those rows are skipped, and counted).
pub fn values(col: &ArrayRef, first_row: usize) -> Result<Vec<Option<f64>>, CellError> {
    let at = |i: usize, problem: String| CellError {
        row: first_row + i,
        value: shown(col, i),
        problem,
    };
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    if let DataType::Dictionary(_, inner) = col.data_type() {
        return values(&cast_checked(col, inner, first_row)?, first_row);
    }
    match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text =
                arrow::compute::cast(col, &DataType::Utf8).map_err(|e| at(0, e.to_string()))?;
            let mut out = Vec::with_capacity(col.len());
            for (i, v) in text.as_string::<i32>().iter().enumerate() {
                let s = v.unwrap_or_default().trim();
                if is_empty_word(s) {
                    out.push(None);
                    continue;
                }
                match s.parse::<f64>() {
                    Ok(v) if v.is_finite() => out.push(Some(v)),
                    Ok(_) => {
                        return Err(at(i, "is too large for a number (beyond ±1.8e308)".into()))
                    }
                    Err(_) => return Err(at(i, "is not a number".into())),
                }
            }
            Ok(out)
        }
        DataType::Null => Ok(vec![None; col.len()]),
        t if t.is_numeric() || matches!(t, DataType::Boolean) => {
            let f = cast_checked(col, &DataType::Float64, first_row)?;
            Ok(f.as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .map(|v| v.and_then(finite))
                .collect())
        }
        other => Err(at(0, format!("is of type {other}, not numbers"))),
    }
}

/// What exports write for "no value".
fn is_empty_word(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "nan"
            | "null"
            | "none"
            | "na"
            | "n/a"
            | "-"
            | "inf"
            | "+inf"
            | "-inf"
            | "infinity"
            | "-infinity"
    )
}

/// A cell as text for an error message, cut short and made printable.
fn shown(col: &ArrayRef, i: usize) -> String {
    if col.is_null(i) {
        return "(empty)".into();
    }
    let v = arrow::util::display::array_value_to_string(col, i).unwrap_or_default();
    let cut: String = v.chars().take(60).collect();
    format!("\"{}\"", crate::escape::terminal_line(&cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::StringArray;

    fn text(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn reader(format: &str, zone: &str) -> TimeReader {
        TimeReader {
            format: format.parse().expect("format"),
            zone: zone.parse().expect("zone"),
        }
    }

    const T: i64 = 1_714_568_400_000_000; // 2024-05-01T13:00:00Z

    #[test]
    fn iso_forms_read_as_utc_unless_a_zone_is_given() {
        let r = reader("auto", "UTC");
        let got = r
            .column(
                &text(&[
                    "2024-05-01T13:00:00Z",
                    "2024-05-01 13:00",
                    "2024-05-01T15:00:00+02:00",
                    "2024/05/01 13:00:00",
                ]),
                1,
            )
            .expect("read");
        assert_eq!(got, vec![T; 4]);
        let paris = reader("auto", "Europe/Paris");
        assert_eq!(
            paris.column(&text(&["2024-05-01 15:00"]), 1).expect("read"),
            vec![T]
        );
    }

    #[test]
    fn epochs_and_patterns() {
        assert_eq!(
            reader("epoch_s", "UTC")
                .column(&text(&["1714568400"]), 1)
                .expect("s"),
            vec![T]
        );
        assert_eq!(
            reader("epoch_ms", "UTC")
                .column(&text(&["1714568400000"]), 1)
                .expect("ms"),
            vec![T]
        );
        assert_eq!(
            reader("%d/%m/%Y %H:%M", "UTC")
                .column(&text(&["01/05/2024 13:00"]), 1)
                .expect("p"),
            vec![T]
        );
        assert!("epoch".parse::<TimeFormat>().is_err());
        assert!("%Q".parse::<TimeFormat>().is_err());
    }

    #[test]
    fn a_bad_cell_names_its_row() {
        let e = reader("auto", "UTC")
            .column(&text(&["2024-05-01", "yesterday"]), 1)
            .expect_err("bad");
        assert_eq!((e.row, e.value.as_str()), (2, "\"yesterday\""));
        let e = reader("auto", "UTC")
            .column(&text(&["1714568400"]), 1)
            .expect_err("number");
        assert!(e.problem.contains("epoch_s"), "{}", e.problem);
    }

    #[test]
    fn a_time_the_clocks_skipped_is_refused() {
        let e = reader("auto", "Europe/Paris")
            .column(&text(&["2024-03-31 02:30"]), 7)
            .expect_err("gap");
        assert_eq!(e.row, 7);
        assert!(e.problem.contains("skipped"), "{}", e.problem);
    }

    #[test]
    fn values_skip_empties_and_refuse_words() {
        let got = values(&text(&["1.5", "", "NaN", "n/a", "inf", " 2 "]), 1).expect("values");
        assert_eq!(got, vec![Some(1.5), None, None, None, None, Some(2.0)]);
        let e = values(&text(&["1", "12abc"]), 10).expect_err("word");
        assert_eq!((e.row, e.value.as_str()), (11, "\"12abc\""));
    }
}

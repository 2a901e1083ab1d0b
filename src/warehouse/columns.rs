//! A warehouse's answer as one Arrow record batch: each source reads its
//! wire format into [`Cell`]s of the kind its column declared, and this
//! builds the arrays, refusing past the batch's row and size caps as the
//! rows arrive (not after all of them are held).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::{QueryLimits, WarehouseError};

/// What a column holds once read; the checks of `normalize` take each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An instant, µs since the epoch, UTC.
    Timestamp,
    Float,
    Bool,
    /// Anything else, as text (dates and datetimes without a zone too:
    /// `normalize` reads them as it reads a Python batch's).
    Text,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Timestamp(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

enum Builder {
    Timestamp(TimestampMicrosecondBuilder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

/// What an answer has taken of the batch's row and size caps, counted as
/// its rows arrive: every source's one count.
pub struct Budget {
    db: &'static str,
    limits: QueryLimits,
    rows: usize,
    bytes: usize,
}

impl Budget {
    pub fn new(db: &'static str, limits: &QueryLimits) -> Budget {
        Budget {
            db,
            limits: *limits,
            rows: 0,
            bytes: 0,
        }
    }

    /// One more row, refused past `ingest_max_rows`; returns its number
    /// (from 1).
    pub fn next_row(&mut self) -> Result<usize, WarehouseError> {
        if self.rows >= self.limits.max_rows {
            return Err(WarehouseError::too_many_rows(self.db, &self.limits));
        }
        self.rows += 1;
        Ok(self.rows)
    }

    /// `bytes` more of the answer, refused past `ingest_max_result_kb`.
    pub fn add_bytes(&mut self, bytes: usize) -> Result<(), WarehouseError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limits.max_bytes {
            return Err(WarehouseError::too_large(self.db, &self.limits));
        }
        Ok(())
    }
}

/// The columns of one answer, filled row by row.
pub struct Columns {
    db: &'static str,
    names: Vec<String>,
    kinds: Vec<Kind>,
    builders: Vec<Builder>,
    budget: Budget,
}

impl Columns {
    pub fn new(db: &'static str, columns: Vec<(String, Kind)>, limits: &QueryLimits) -> Columns {
        let builders = columns
            .iter()
            .map(|(_, k)| match k {
                Kind::Timestamp => {
                    Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
                Kind::Float => Builder::Float(Float64Builder::new()),
                Kind::Bool => Builder::Bool(BooleanBuilder::new()),
                Kind::Text => Builder::Text(StringBuilder::new()),
            })
            .collect();
        let (names, kinds) = columns.into_iter().unzip();
        Columns {
            db,
            names,
            kinds,
            builders,
            budget: Budget::new(db, limits),
        }
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Add a row; its cells must be as many as the columns, each of its
    /// column's kind or null.
    pub fn push(&mut self, cells: Vec<Cell>) -> Result<(), WarehouseError> {
        if cells.len() != self.builders.len() {
            return Err(WarehouseError::Answer {
                db: self.db,
                message: format!(
                    "row {} has {} values for {} columns",
                    self.budget.rows + 1,
                    cells.len(),
                    self.builders.len()
                ),
            });
        }
        let row = self.budget.next_row()?;
        let bytes = cells
            .iter()
            .map(|c| match c {
                Cell::Text(t) => t.len(),
                _ => 8,
            })
            .sum();
        for (i, cell) in cells.into_iter().enumerate() {
            match (&mut self.builders[i], cell) {
                (Builder::Timestamp(b), Cell::Null) => b.append_null(),
                (Builder::Float(b), Cell::Null) => b.append_null(),
                (Builder::Bool(b), Cell::Null) => b.append_null(),
                (Builder::Text(b), Cell::Null) => b.append_null(),
                (Builder::Timestamp(b), Cell::Timestamp(v)) => b.append_value(v),
                (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
                (Builder::Text(b), Cell::Text(v)) => b.append_value(v),
                (_, other) => {
                    return Err(WarehouseError::Answer {
                        db: self.db,
                        message: format!(
                            "row {row}, column `{}`: {other:?} is not a {:?} value",
                            crate::escape::log_line(&self.names[i]),
                            self.kinds[i]
                        ),
                    })
                }
            }
        }
        self.budget.add_bytes(bytes)
    }

    pub fn finish(self) -> Result<RecordBatch, WarehouseError> {
        let fields: Vec<Field> = self
            .names
            .iter()
            .zip(&self.kinds)
            .map(|(n, k)| Field::new(n, data_type(*k), true))
            .collect();
        let arrays: Vec<ArrayRef> = self
            .builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Timestamp(mut b) => Arc::new(b.finish()),
                    Builder::Float(mut b) => Arc::new(b.finish()),
                    Builder::Bool(mut b) => Arc::new(b.finish()),
                    Builder::Text(mut b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let db = self.db;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| {
            WarehouseError::Answer {
                db,
                message: e.to_string(),
            }
        })
    }
}

fn data_type(k: Kind) -> DataType {
    match k {
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Float => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::Text => DataType::Utf8,
    }
}

/// A number the wire sent as text (BigQuery, Snowflake and ClickHouse
/// quote 64-bit integers and decimals).
pub fn float(db: &'static str, column: &str, text: &str) -> Result<Cell, WarehouseError> {
    text.trim()
        .parse::<f64>()
        .map(Cell::Float)
        .map_err(|_| WarehouseError::Answer {
            db,
            message: format!(
                "column `{}`: `{}` is not a number",
                crate::escape::log_line(column),
                crate::escape::log_line(&text.chars().take(40).collect::<String>())
            ),
        })
}

/// Seconds since the epoch with a decimal fraction (Snowflake's
/// timestamps), as µs; digits past the µs are dropped.
pub fn seconds_text_to_micros(text: &str) -> Option<i64> {
    let text = text.trim();
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut micros_text: String = frac.chars().take(6).collect();
    while micros_text.len() < 6 {
        micros_text.push('0');
    }
    let micros: i64 = micros_text.parse().ok()?;
    let total = secs.checked_mul(1_000_000)?.checked_add(micros)?;
    Some(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn limits(rows: usize, bytes: usize) -> QueryLimits {
        QueryLimits {
            timeout: std::time::Duration::from_secs(1),
            max_rows: rows,
            max_bytes: bytes,
        }
    }

    #[test]
    fn rows_become_typed_arrays_and_nulls_stay_null() {
        let mut c = Columns::new(
            "test",
            vec![
                ("metric_timestamp".into(), Kind::Timestamp),
                ("metric_name".into(), Kind::Text),
                ("metric_value".into(), Kind::Float),
            ],
            &limits(10, 1 << 20),
        );
        c.push(vec![
            Cell::Timestamp(1_700_000_000_000_000),
            Cell::Text("a".into()),
            Cell::Float(1.5),
        ])
        .expect("row");
        c.push(vec![Cell::Null, Cell::Text("b".into()), Cell::Null])
            .expect("row");
        let batch = c.finish().expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.column(0).is_null(1));
        assert_eq!(
            batch.schema().field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn caps_stop_the_row_that_crosses_them() {
        let mut c = Columns::new("test", vec![("v".into(), Kind::Text)], &limits(2, 1 << 20));
        c.push(vec![Cell::Text("x".into())]).expect("1");
        c.push(vec![Cell::Text("x".into())]).expect("2");
        let e = c.push(vec![Cell::Text("x".into())]).unwrap_err();
        assert!(e.to_string().contains("more than 2 rows"), "{e}");
        let mut c = Columns::new("test", vec![("v".into(), Kind::Text)], &limits(10, 2048));
        c.push(vec![Cell::Text("x".repeat(2000))]).expect("under");
        let e = c.push(vec![Cell::Text("x".repeat(100))]).unwrap_err();
        assert!(e.to_string().contains("ingest_max_result_kb"), "{e}");
    }

    #[test]
    fn a_cell_of_another_kind_is_refused_with_its_place() {
        let mut c = Columns::new(
            "test",
            vec![("v".into(), Kind::Float)],
            &limits(10, 1 << 20),
        );
        let e = c.push(vec![Cell::Text("x".into())]).unwrap_err();
        assert!(e.to_string().contains("row 1, column `v`"), "{e}");
        let e = c.push(vec![]).unwrap_err();
        assert!(e.to_string().contains("0 values for 1 columns"), "{e}");
    }

    #[test]
    fn fractional_seconds_read_to_the_microsecond() {
        assert_eq!(
            seconds_text_to_micros("1700000000.123456789"),
            Some(1_700_000_000_123_456)
        );
        assert_eq!(
            seconds_text_to_micros("1700000000"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(seconds_text_to_micros("-1.5"), Some(-1_500_000));
        assert_eq!(seconds_text_to_micros("1e9"), None);
        assert_eq!(seconds_text_to_micros(""), None);
        assert_eq!(seconds_text_to_micros("99999999999999999999"), None);
    }
}

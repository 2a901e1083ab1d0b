//! A query's rows as one Arrow record batch, for the jobs that read the
//! metrics folder's SQL (they take Arrow from either engine). Written here
//! because no maintained crate maps `postgres` rows to Arrow: each value is
//! read in PostgreSQL's binary format, for the types a metrics query
//! returns; any other type is refused with the column's name and a cast to
//! use instead.

use std::error::Error;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use postgres::types::{FromSql, Type};
use postgres::{Column, Row};

use super::micros::PG_EPOCH_US;

/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// A value's bytes as the server sent them (binary format), or NULL.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    Numeric,
    Text,
    Timestamp,
    TimestampTz,
    Date,
}

fn kind_of(ty: &Type) -> Option<Kind> {
    Some(match *ty {
        Type::BOOL => Kind::Bool,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Kind::Int,
        Type::FLOAT4 | Type::FLOAT8 => Kind::Float,
        Type::NUMERIC => Kind::Numeric,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Kind::Text,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        Type::DATE => Kind::Date,
        _ => return None,
    })
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::Int => DataType::Int64,
        Kind::Float | Kind::Numeric => DataType::Float64,
        Kind::Text => DataType::Utf8,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Date => DataType::Date32,
    }
}

/// The kinds of a statement's columns, or why one cannot be read.
fn kinds(columns: &[Column]) -> Result<Vec<Kind>, String> {
    columns
        .iter()
        .map(|c| {
            kind_of(c.type_()).ok_or_else(|| {
                format!(
                    "column {} is of type {}, which sandstack does not read; cast it in the query \
                     (for example {}::float8 or {}::text)",
                    c.name(),
                    c.type_().name(),
                    c.name(),
                    c.name()
                )
            })
        })
        .collect()
}

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("a {N}-byte value arrived as {} bytes", raw.len()))
}

fn int(raw: &[u8]) -> Result<i64, String> {
    Ok(match raw.len() {
        2 => i16::from_be_bytes(be(raw)?).into(),
        4 => i32::from_be_bytes(be(raw)?).into(),
        8 => i64::from_be_bytes(be(raw)?),
        n => return Err(format!("an integer of {n} bytes")),
    })
}

fn float(raw: &[u8]) -> Result<f64, String> {
    Ok(match raw.len() {
        4 => f32::from_be_bytes(be(raw)?).into(),
        8 => f64::from_be_bytes(be(raw)?),
        n => return Err(format!("a float of {n} bytes")),
    })
}

/// NUMERIC's binary form: digit count, weight, sign, display scale, then
/// base-10000 digits, most significant first.
fn numeric(raw: &[u8]) -> Result<f64, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let (ndigits, weight, sign) = (word(0)? as usize, word(1)? as i16, word(2)?);
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let mut value = 0.0f64;
    for i in 0..ndigits {
        let exponent = i32::from(weight) - i as i32;
        value += f64::from(word(4 + i)?) * 10_000f64.powi(exponent);
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

fn text(raw: &[u8]) -> Result<Option<&str>, String> {
    std::str::from_utf8(raw)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// A timestamp's µs since 1970; ±infinity as NULL.
fn timestamp(raw: &[u8]) -> Result<Option<i64>, String> {
    let v = i64::from_be_bytes(be(raw)?);
    Ok((v != i64::MAX && v != i64::MIN).then(|| v.saturating_add(PG_EPOCH_US)))
}

fn date(raw: &[u8]) -> Result<Option<i32>, String> {
    let v = i32::from_be_bytes(be(raw)?);
    Ok((v != i32::MAX && v != i32::MIN).then(|| v.saturating_add(PG_EPOCH_DAYS)))
}

/// One column of every row, as an Arrow array.
fn column(rows: &[Row], i: usize, kind: Kind) -> Result<ArrayRef, String> {
    let raws = rows
        .iter()
        .map(|r| r.try_get::<_, Raw<'_>>(i).map(|v| v.0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    macro_rules! build {
        ($builder:expr, $read:expr) => {{
            let mut b = $builder;
            for raw in &raws {
                match raw {
                    Some(bytes) => b.append_option($read(bytes)?),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match kind {
        Kind::Bool => build!(BooleanBuilder::new(), |b: &[u8]| Ok::<_, String>(
            b.first().map(|v| *v != 0)
        )),
        Kind::Int => build!(Int64Builder::new(), |b| int(b).map(Some)),
        Kind::Float => build!(Float64Builder::new(), |b| float(b).map(Some)),
        Kind::Numeric => build!(Float64Builder::new(), |b| numeric(b).map(Some)),
        Kind::Text => build!(StringBuilder::new(), text),
        Kind::Timestamp => build!(TimestampMicrosecondBuilder::new(), timestamp),
        Kind::TimestampTz => build!(
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            timestamp
        ),
        Kind::Date => build!(Date32Builder::new(), date),
    })
}

/// The bytes a row's values took on the wire (NULLs none), for a size cap
/// counted as rows arrive.
pub(super) fn row_bytes(row: &Row) -> usize {
    (0..row.len())
        .filter_map(|i| row.try_get::<_, Raw<'_>>(i).ok())
        .map(|v| v.0.map_or(0, <[u8]>::len))
        .sum()
}

/// The rows of a statement with `columns` as one record batch.
pub(super) fn to_batch(columns: &[Column], rows: &[Row]) -> Result<RecordBatch, String> {
    let kinds = kinds(columns)?;
    let fields: Vec<Field> = columns
        .iter()
        .zip(&kinds)
        .map(|(c, k)| Field::new(c.name(), data_type(*k), true))
        .collect();
    let arrays = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            column(rows, i, *k).map_err(|e| format!("reading column {}: {e}", columns[i].name()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_decode_from_their_base_10000_digits() {
        // 12345.678: weight 1, digits 1 2345 6780, positive.
        let mut raw = Vec::new();
        for w in [3u16, 1, 0, 3, 1, 2345, 6780] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        assert!((numeric(&raw).expect("ok") - 12345.678).abs() < 1e-9);
        // -0.05: weight -1, digits 500, negative.
        let mut raw = Vec::new();
        for w in [1u16, 0xFFFF, 0x4000, 2, 500] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        assert!((numeric(&raw).expect("ok") + 0.05).abs() < 1e-12);
        assert!(numeric(&[0, 1]).is_err(), "truncated");
        assert!(
            numeric(&[0, 5, 0, 0, 0, 0, 0, 0]).is_err(),
            "fewer digits than said"
        );
    }

    #[test]
    fn timestamps_and_dates_count_from_2000() {
        assert_eq!(
            timestamp(&0i64.to_be_bytes()).expect("ok"),
            Some(PG_EPOCH_US)
        );
        assert_eq!(timestamp(&i64::MAX.to_be_bytes()).expect("ok"), None);
        assert_eq!(
            date(&1i32.to_be_bytes()).expect("ok"),
            Some(PG_EPOCH_DAYS + 1)
        );
        assert!(timestamp(&[1, 2, 3]).is_err());
        assert_eq!(int(&7i16.to_be_bytes()).expect("ok"), 7);
        assert!(int(&[1, 2, 3]).is_err());
    }
}

//! Reads the guest's result, sandstack's columnar frame
//! (runtime/python/_sandstack_frame.py), into an Arrow RecordBatch. Buffers
//! are copied whole, never walked row by row; every offset and length from
//! the guest is checked, because the guest is not trusted. (An Arrow IPC
//! stream written by the guest was supported too; it was slower, and
//! arrow's reader panicked on some corrupted streams, so it went.)

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::door::{ColumnHeader, ResultHeader};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("malformed result frame: {0}")]
pub struct FrameReadError(pub String);

fn bad(msg: impl Into<String>) -> FrameReadError {
    FrameReadError(msg.into())
}

pub fn read(header: &ResultHeader, body: &[u8]) -> Result<RecordBatch, FrameReadError> {
    match header.format.as_str() {
        "sscf1" => read_frame(header, body),
        other => Err(bad(format!("unknown format `{other}`"))),
    }
}

fn read_frame(header: &ResultHeader, body: &[u8]) -> Result<RecordBatch, FrameReadError> {
    let rows = usize::try_from(header.rows).map_err(|_| bad("row count too large"))?;
    let mut fields = Vec::with_capacity(header.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(header.columns.len());
    for col in &header.columns {
        let array = read_column(col, rows, body)?;
        fields.push(Field::new(&col.name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let mut seen = std::collections::HashSet::new();
    for f in &fields {
        if !seen.insert(f.name().clone()) {
            return Err(bad(format!("column `{}` appears twice", f.name())));
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| bad(e.to_string()))
}

fn span<'a>(col: &ColumnHeader, i: usize, body: &'a [u8]) -> Result<&'a [u8], FrameReadError> {
    let (off, len) = *col
        .buffers
        .get(i)
        .ok_or_else(|| bad(format!("column `{}` lacks buffer {i}", col.name)))?;
    let start = usize::try_from(off).map_err(|_| bad("offset too large"))?;
    let len = usize::try_from(len).map_err(|_| bad("length too large"))?;
    let end = start
        .checked_add(len)
        .filter(|e| *e <= body.len())
        .ok_or_else(|| {
            bad(format!(
                "column `{}` buffer {i} runs past the frame",
                col.name
            ))
        })?;
    Ok(&body[start..end])
}

fn fixed<'a>(
    col: &ColumnHeader,
    i: usize,
    body: &'a [u8],
    rows: usize,
    width: usize,
) -> Result<&'a [u8], FrameReadError> {
    let b = span(col, i, body)?;
    if Some(b.len()) != rows.checked_mul(width) {
        return Err(bad(format!(
            "column `{}`: buffer of {} bytes for {rows} rows of {width} bytes",
            col.name,
            b.len()
        )));
    }
    Ok(b)
}

fn scalar<T: arrow::datatypes::ArrowNativeType>(bytes: &[u8], n: usize) -> ScalarBuffer<T> {
    // `Buffer::from_slice_ref` copies into an aligned allocation.
    ScalarBuffer::new(Buffer::from_slice_ref(bytes), 0, n)
}

fn read_column(col: &ColumnHeader, rows: usize, body: &[u8]) -> Result<ArrayRef, FrameReadError> {
    Ok(match col.kind.as_str() {
        "f64" => Arc::new(Float64Array::new(
            scalar(fixed(col, 0, body, rows, 8)?, rows),
            None,
        )),
        "i64" => Arc::new(Int64Array::new(
            scalar(fixed(col, 0, body, rows, 8)?, rows),
            None,
        )),
        "bool" => {
            let b = fixed(col, 0, body, rows, 1)?;
            Arc::new(BooleanArray::from_iter(b.iter().map(|v| Some(*v != 0))))
        }
        "ts" => {
            let values: ScalarBuffer<i64> = scalar(fixed(col, 0, body, rows, 8)?, rows);
            // pandas marks NaT with i64::MIN.
            let nulls = NullBuffer::from_iter(values.iter().map(|v| *v != i64::MIN));
            let unit = match col.unit.as_deref() {
                Some("s") => TimeUnit::Second,
                Some("ms") => TimeUnit::Millisecond,
                Some("us") => TimeUnit::Microsecond,
                Some("ns") | None => TimeUnit::Nanosecond,
                Some(other) => {
                    return Err(bad(format!(
                        "column `{}`: unknown time unit `{other}`",
                        col.name
                    )))
                }
            };
            let tz: Option<Arc<str>> = col.tz.as_deref().map(Arc::from);
            let nulls = (nulls.null_count() > 0).then_some(nulls);
            let array = Int64Array::new(values, nulls);
            let data = arrow::array::Array::into_data(array)
                .into_builder()
                .data_type(DataType::Timestamp(unit, tz))
                .build()
                .map_err(|e| bad(format!("column `{}`: {e}", col.name)))?;
            arrow::array::make_array(data)
        }
        "dict_utf8" => {
            let codes: ScalarBuffer<i32> = scalar(fixed(col, 0, body, rows, 4)?, rows);
            let offsets_bytes = span(col, 1, body)?;
            if offsets_bytes.len() % 4 != 0 || offsets_bytes.is_empty() {
                return Err(bad(format!("column `{}`: bad offsets buffer", col.name)));
            }
            let k = offsets_bytes.len() / 4 - 1;
            let offsets: ScalarBuffer<i32> = scalar(offsets_bytes, k + 1);
            let data = span(col, 2, body)?;
            // OffsetBuffer::new panics on bad offsets: check them first.
            let monotonic = offsets.first() == Some(&0)
                && offsets.windows(2).all(|w| w[0] <= w[1])
                && offsets.last().is_some_and(|l| *l as usize == data.len());
            if !monotonic {
                return Err(bad(format!(
                    "column `{}`: offsets are not a valid sequence",
                    col.name
                )));
            }
            let values = StringArray::try_new(
                OffsetBuffer::new(offsets),
                Buffer::from_slice_ref(data),
                None,
            )
            .map_err(|e| bad(format!("column `{}`: {e}", col.name)))?;
            let nulls = NullBuffer::from_iter(codes.iter().map(|c| *c >= 0));
            let nulls = (nulls.null_count() > 0).then_some(nulls);
            let keys = Int32Array::new(codes, nulls);
            let dict = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values))
                .map_err(|e| bad(format!("column `{}`: {e}", col.name)))?;
            arrow::compute::cast(&dict, &DataType::Utf8).map_err(|e| bad(e.to_string()))?
        }
        other => {
            return Err(bad(format!(
                "column `{}`: unknown type `{other}`",
                col.name
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    fn col(name: &str, kind: &str, buffers: Vec<(u64, u64)>) -> ColumnHeader {
        ColumnHeader {
            name: name.into(),
            kind: kind.into(),
            buffers,
            unit: None,
            tz: None,
        }
    }

    #[test]
    fn reads_text_numbers_and_times() {
        let mut body = Vec::new();
        for c in [0i32, 1, 0, -1] {
            body.extend_from_slice(&c.to_le_bytes());
        }
        for o in [0i32, 1, 3] {
            body.extend_from_slice(&o.to_le_bytes());
        }
        body.extend_from_slice(b"abc");
        let f64_at = body.len() as u64;
        for v in [1.5f64, 2.0, 3.0, 4.0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let ts_at = body.len() as u64;
        for v in [0i64, 1, 2, i64::MIN] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let mut ts = col("t", "ts", vec![(ts_at, 32)]);
        ts.tz = Some("UTC".into());
        let header = ResultHeader {
            format: "sscf1".into(),
            rows: 4,
            columns: vec![
                col("n", "dict_utf8", vec![(0, 16), (16, 12), (28, 3)]),
                col("v", "f64", vec![(f64_at, 32)]),
                ts,
            ],
        };
        let b = read(&header, &body).expect("valid frame");
        let names = b.column(0).as_string::<i32>();
        assert_eq!(names.value(1), "bc");
        assert!(b.column(0).is_null(3));
        assert!(b.column(2).is_null(3));
        assert_eq!(
            b.column(2).data_type(),
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        );
    }

    #[test]
    fn rejects_hostile_spans() {
        let header = ResultHeader {
            format: "sscf1".into(),
            rows: 2,
            columns: vec![col("v", "f64", vec![(u64::MAX - 1, 16)])],
        };
        assert!(read(&header, &[0u8; 16]).is_err());
        let header = ResultHeader {
            format: "sscf1".into(),
            rows: 3,
            columns: vec![col("v", "f64", vec![(0, 16)])],
        };
        assert!(read(&header, &[0u8; 16])
            .unwrap_err()
            .0
            .contains("buffer of 16 bytes for 3 rows"));
        let mut body = Vec::new();
        body.extend_from_slice(&5i32.to_le_bytes());
        for o in [0i32, 9] {
            body.extend_from_slice(&o.to_le_bytes());
        }
        let header = ResultHeader {
            format: "sscf1".into(),
            rows: 1,
            columns: vec![col("n", "dict_utf8", vec![(0, 4), (4, 8), (12, 0)])],
        };
        assert!(read(&header, &body).unwrap_err().0.contains("offsets"));
    }
}

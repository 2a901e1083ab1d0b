//! A metric's model features: the native preprocess for the shipped default
//! `preprocess_fn`, or the batch's own function run in the sandbox on the
//! metric's DataFrame (`metric_timestamp`, `metric_value`), called with
//! `preprocess_params` as keyword arguments and expected to return a
//! DataFrame indexed (or keyed) by `metric_timestamp`, one numeric column
//! per feature.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};

use crate::config::BatchSpec;
use crate::jobs::ingest::{DefaultSandbox, SandboxSource};
use crate::models::preprocess::{preprocess, Features, PreprocessError};
use crate::sandbox::{ExecError, ExecRequest, SetupError};

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("preprocess: {0}")]
    Native(#[from] PreprocessError),
    #[error("preprocess_fn: {0}")]
    Sandbox(#[from] ExecError),
    #[error("preprocess_fn: the Python sandbox is not available: {0}")]
    Setup(#[from] SetupError),
    #[error("preprocess_fn returned {0}")]
    Result(String),
}

pub fn features(
    spec: &BatchSpec,
    timestamps_us: &[i64],
    values: &[f64],
) -> Result<Features, FeatureError> {
    let Some(source) = &spec.preprocess_fn else {
        return Ok(preprocess(timestamps_us, values, &spec.preprocess_params)?);
    };
    let sandbox = DefaultSandbox.sandbox()?;
    let mut req = ExecRequest::new(
        &spec.metric_batch,
        source.clone(),
        spec.limits.clone(),
        spec.http.clone(),
    );
    if let serde_json::Value::Object(params) =
        serde_json::to_value(&spec.preprocess_params).unwrap_or_default()
    {
        req.kwargs = params;
    }
    req.preprocess_input = Some((timestamps_us.to_vec(), values.to_vec()));
    let batch = sandbox.execute(req).outcome?;
    from_frame(&batch)
}

/// Features from the function's DataFrame: `metric_timestamp` (or the first
/// timestamp column) and every other numeric column, rows with a missing
/// value dropped.
fn from_frame(batch: &RecordBatch) -> Result<Features, FeatureError> {
    let schema = batch.schema();
    let ts_index = schema
        .fields()
        .iter()
        .position(|f| f.name() == "metric_timestamp")
        .or_else(|| {
            schema
                .fields()
                .iter()
                .position(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        })
        .ok_or_else(|| FeatureError::Result("no metric_timestamp column or index".into()))?;
    let ts_col = batch.column(ts_index);
    let ts = match ts_col.data_type() {
        DataType::Timestamp(_, Some(_)) => cast(
            ts_col,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        _ => cast(ts_col, &DataType::Timestamp(TimeUnit::Microsecond, None)),
    }
    .map_err(|e| FeatureError::Result(format!("an unreadable metric_timestamp: {e}")))?;
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    let mut columns = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if i == ts_index {
            continue;
        }
        if !(f.data_type().is_numeric() || *f.data_type() == DataType::Boolean) {
            return Err(FeatureError::Result(format!(
                "column `{}` of type {}; features must be numeric",
                f.name(),
                f.data_type()
            )));
        }
        let c = cast(batch.column(i), &DataType::Float64)
            .map_err(|e| FeatureError::Result(e.to_string()))?;
        columns.push(c.as_primitive::<Float64Type>().clone());
    }
    if columns.is_empty() {
        return Err(FeatureError::Result("no feature columns".into()));
    }
    let mut out = Features {
        timestamps_us: Vec::new(),
        rows: Vec::new(),
    };
    for r in 0..batch.num_rows() {
        if ts.is_null(r) {
            continue;
        }
        let row: Vec<f64> = columns
            .iter()
            .map(|c| if c.is_null(r) { f64::NAN } else { c.value(r) })
            .collect();
        if row.iter().all(|v| v.is_finite()) {
            out.timestamps_us.push(ts.value(r));
            out.rows.push(row);
        }
    }
    Ok(out)
}

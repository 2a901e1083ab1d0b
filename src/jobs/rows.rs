//! What the detection jobs share: reading a job's SQL result into per-metric
//! series, and writing judgement rows (`score`, `alert`, `change`,
//! `tholdalert`) to the batch's table.

use crate::store::TableKey;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};

use super::features::FeatureError;
use crate::config::{BatchSpec, Job};
use crate::domain::{Judgement, MetricType, Series};
use crate::models::store::ModelStoreError;
use crate::models::ModelError;
use crate::store::{metrics_schema, Store, StoreError};

/// A detection job's failure, with the batch it was for: the batch is
/// attached here, once, at the job's boundary.
#[derive(Debug, thiserror::Error)]
#[error("batch {batch}: {source}")]
pub struct JobError {
    pub batch: String,
    #[source]
    pub source: JobFailure,
}

impl JobError {
    /// Attach `spec`'s batch to a failure.
    pub fn of(spec: &BatchSpec) -> impl FnOnce(JobFailure) -> JobError + '_ {
        |source| JobError {
            batch: spec.metric_batch.clone(),
            source,
        }
    }
}

/// Every way a detection job can fail.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    #[error(transparent)]
    Rows(#[from] RowsError),
    #[error(transparent)]
    Models(#[from] ModelStoreError),
    #[error(transparent)]
    Preprocess(#[from] Box<FeatureError>),
    #[error("metric {metric}: {source}")]
    Model {
        metric: String,
        #[source]
        source: ModelError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the batch has no {key}")]
    NoSql { key: &'static str },
}

/// What a job starts from: its SQL's rows by metric, and, per metric, the
/// timestamps that already have a row of the type the job writes.
pub struct JobInput {
    pub series: BTreeMap<String, Series>,
    pub done: BTreeMap<String, std::collections::BTreeSet<i64>>,
}

/// Run `job`'s SQL template (creating the table first) and read the
/// timestamps already judged as `done_type`.
pub fn load_input(
    spec: &BatchSpec,
    store: &Store,
    job: Job,
    done_type: Option<MetricType>,
) -> Result<JobInput, JobFailure> {
    let (Some(sql_key), Some(sql)) = (job.sql_key(), spec.sql(job)) else {
        return Err(JobFailure::NoSql {
            key: job.sql_key().unwrap_or("SQL template for this job"),
        });
    };
    store.ensure_metrics_table(&spec.table_key)?;
    let series = series_by_metric(store, spec, sql, job.name()).map_err(|e| match e {
        RowsError::Store(source) => RowsError::Template {
            key: sql_key,
            source,
        },
        other => other,
    })?;
    let done = match done_type {
        Some(t) => store.timestamps_of_type(&spec.table_key, &spec.metric_batch, t)?,
        None => BTreeMap::new(),
    };
    Ok(JobInput { series, done })
}

#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error("{job} SQL must return a `{column}` column ({detail})")]
    Column {
        job: &'static str,
        column: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{job} SQL returned more than {max} metrics; a batch's job reads at most {max}")]
    TooManyMetrics { job: &'static str, max: usize },
    /// A template returned a name ingest would have refused.
    #[error("{job} SQL: {source}")]
    Name {
        job: &'static str,
        #[source]
        source: crate::jobs::ingest::normalize::InvalidResult,
    },
    /// The batch's template `key` failed.
    #[error("{key}: {source}")]
    Template {
        key: &'static str,
        #[source]
        source: StoreError,
    },
}

fn column<'a>(
    b: &'a RecordBatch,
    job: &'static str,
    name: &'static str,
) -> Result<&'a Arc<dyn Array>, RowsError> {
    b.column_by_name(name).ok_or_else(|| RowsError::Column {
        job,
        column: name,
        detail: "missing".into(),
    })
}

fn as_f64(
    a: &Arc<dyn Array>,
    job: &'static str,
    name: &'static str,
) -> Result<Float64Array, RowsError> {
    cast(a, &DataType::Float64)
        .map(|c| c.as_primitive::<arrow::datatypes::Float64Type>().clone())
        .map_err(|e| RowsError::Column {
            job,
            column: name,
            detail: e.to_string(),
        })
}

/// How much of a template's result a job takes: each metric becomes a
/// series of its own, so their number is bounded besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct SeriesLimits {
    pub caps: crate::store::ResultCaps,
    pub max_metrics: usize,
}

impl SeriesLimits {
    /// A job's: far more metrics than a batch has (Anomstack's largest
    /// examples have about a hundred).
    pub const JOB: SeriesLimits = SeriesLimits {
        caps: crate::store::ResultCaps::TEMPLATE,
        max_metrics: 10_000,
    };
}

/// Run `sql`, a template of `spec`'s batch, over its rows, and group the
/// result by `metric_name`, in row order (the shipped templates order by
/// name, then time). Numeric columns other than the three required ones
/// are kept in `extra`.
pub fn series_by_metric(
    store: &Store,
    spec: &BatchSpec,
    sql: &str,
    job: &'static str,
) -> Result<BTreeMap<String, Series>, RowsError> {
    series_within(store, spec, sql, job, SeriesLimits::JOB)
}

/// [`series_by_metric`] within `limits`.
pub fn series_within(
    store: &Store,
    spec: &BatchSpec,
    sql: &str,
    job: &'static str,
    limits: SeriesLimits,
) -> Result<BTreeMap<String, Series>, RowsError> {
    let batches = store.query_batch_sql(&spec.table_key, &spec.metric_batch, sql, limits.caps)?;
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for b in &batches {
        let ts = cast(
            column(b, job, "metric_timestamp")?,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )
        .map_err(|e| RowsError::Column {
            job,
            column: "metric_timestamp",
            detail: e.to_string(),
        })?;
        let ts = ts.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let names = cast(column(b, job, "metric_name")?, &DataType::Utf8).map_err(|e| {
            RowsError::Column {
                job,
                column: "metric_name",
                detail: e.to_string(),
            }
        })?;
        let names = names.as_string::<i32>();
        // Names from a template reach terminals, messages and pages as
        // ingested ones do: held to the same rules.
        crate::jobs::ingest::normalize::check_names(names, spec.limits.max_name_len)
            .map_err(|source| RowsError::Name { job, source })?;
        let values = as_f64(column(b, job, "metric_value")?, job, "metric_value")?;
        let extras: Vec<(String, Float64Array)> = b
            .schema()
            .fields()
            .iter()
            .filter(|f| {
                !matches!(
                    f.name().as_str(),
                    "metric_timestamp" | "metric_name" | "metric_value"
                )
            })
            .filter_map(|f| {
                let a = b.column_by_name(f.name())?;
                let c = cast(a, &DataType::Float64).ok()?;
                Some((
                    f.name().clone(),
                    c.as_primitive::<arrow::datatypes::Float64Type>().clone(),
                ))
            })
            .collect();
        for i in 0..b.num_rows() {
            if names.is_null(i) || ts.is_null(i) {
                continue;
            }
            if out.len() >= limits.max_metrics && !out.contains_key(names.value(i)) {
                return Err(RowsError::TooManyMetrics {
                    job,
                    max: limits.max_metrics,
                });
            }
            let s = out.entry(names.value(i).to_string()).or_default();
            s.timestamps_us.push(ts.value(i));
            s.values.push(if values.is_null(i) {
                f64::NAN
            } else {
                values.value(i)
            });
            for (name, col) in &extras {
                s.extra
                    .entry(name.clone())
                    .or_default()
                    .push(if col.is_null(i) {
                        f64::NAN
                    } else {
                        col.value(i)
                    });
            }
        }
    }
    Ok(out)
}

/// Write judgement rows of `metric_type` for `batch` in one transaction.
pub fn write(
    store: &mut Store,
    table_key: &TableKey,
    batch: &str,
    metric_type: MetricType,
    rows: &[Judgement],
) -> Result<usize, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let b = judgement_rows(batch, metric_type, rows)?;
    store.append_metrics(table_key, &[b])
}

/// Judgement rows of `metric_type` for `batch`, as the metrics table's columns.
pub fn judgement_rows(
    batch: &str,
    metric_type: MetricType,
    rows: &[Judgement],
) -> Result<RecordBatch, StoreError> {
    let n = rows.len();
    RecordBatch::try_new(
        metrics_schema(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(
                rows.iter().map(|r| r.timestamp_us).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![batch; n])),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.metric_name.as_str())
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec![metric_type.as_str(); n])),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.value).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.metadata.as_ref().map(|m| m.to_string()))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .map_err(|e| StoreError::Db {
        context: format!("building {metric_type} rows"),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BatchSpec {
        crate::config::test_spec("metric_batch: b\ningest_sql: SELECT 1\n")
    }

    #[test]
    fn rows_group_by_metric_with_extra_numeric_columns() {
        let store = Store::in_memory().expect("db");
        let sql = "SELECT * FROM (VALUES
              (make_timestamp(1::BIGINT), 'a', 1.0, 0.5, 'text'),
              (make_timestamp(2::BIGINT), 'a', NULL, 0.7, 'text'),
              (make_timestamp(1::BIGINT), 'b', 3, NULL, 'text'),
              (NULL, 'b', 4, 1, 'text'))
            t(metric_timestamp, metric_name, metric_value, metric_score, note)";
        let s = series_by_metric(&store, &spec(), sql, "score").expect("rows");
        assert_eq!(s["a"].timestamps_us, vec![1, 2]);
        assert_eq!(s["a"].values[0], 1.0);
        assert!(s["a"].values[1].is_nan(), "NULL values read as NaN");
        assert_eq!(s["a"].extra["metric_score"], vec![0.5, 0.7]);
        assert_eq!(s["b"].values, vec![3.0], "rows without a time are skipped");
        assert!(s["b"].extra["metric_score"][0].is_nan());
    }

    #[test]
    fn a_missing_column_names_the_job_and_the_column() {
        let store = Store::in_memory().expect("db");
        let err =
            series_by_metric(&store, &spec(), "SELECT 1 AS metric_value", "train").unwrap_err();
        assert_eq!(
            err.to_string(),
            "train SQL must return a `metric_timestamp` column (missing)"
        );
    }
}

//! `sandstack import`: a batch's history from files the operator names (CSV,
//! Parquet, newline-delimited JSON), read on the host ([`read`]), each cell
//! parsed with its row and column at hand ([`cells`]), shaped into metrics
//! rows (long, wide, or one value column named by `--metric`), checked as an
//! ingest's rows are ([`crate::jobs::ingest::normalize`]), and appended in
//! one transaction. Any bad cell stops the import before anything is stored.

pub mod cells;
pub mod read;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::record_batch::RecordBatch;

use crate::config::BatchSpec;
use crate::domain::{fmt_us, MetricType};
use crate::jobs::ingest::normalize::{self, InvalidResult};
use crate::store::{Store, StoreError};
use cells::TimeReader;
use read::{FileFormat, FileTable, ReadCaps};

/// Rows per stored chunk.
const CHUNK_ROWS: usize = 100_000;

/// Column names a time column goes by, tried in order when
/// `--timestamp-column` is not given (case does not matter).
const TIME_COLUMNS: [&str; 7] = [
    "metric_timestamp",
    "timestamp",
    "time",
    "datetime",
    "date",
    "ts",
    "ds",
];

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: cannot tell the format from the extension; use .csv, .tsv, .parquet, .ndjson or .jsonl, or pass --format", file.display())]
    UnknownFormat { file: PathBuf },
    #[error("{}: {message}", file.display())]
    Io { file: PathBuf, message: String },
    #[error("{}: {bytes} bytes is over the limit of {limit} (--max-file-mb)", file.display())]
    TooBig {
        file: PathBuf,
        bytes: u64,
        limit: u64,
    },
    #[error("{}: the import is over {limit} rows (--max-rows); split it or raise --max-rows", file.display())]
    TooManyRows { file: PathBuf, limit: u64 },
    #[error("{}: {message}", file.display())]
    Malformed { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Columns { file: PathBuf, message: String },
    #[error("{}: row {row}, column `{column}`: {value} {problem}", file.display())]
    Cell {
        file: PathBuf,
        row: usize,
        column: String,
        value: String,
        problem: String,
    },
    #[error("the rows read failed the checks an ingest's rows pass: {0}")]
    Check(String),
    #[error("{}: the import is over {limit} values (--max-rows counts every value a file holds); split it or raise --max-rows", file.display())]
    TooManyValues { file: PathBuf, limit: u64 },
    #[error("the files hold no rows (a header alone?)")]
    NoRows,
    #[error("the files hold no value to store (every value cell was empty)")]
    Empty,
    #[error("storing: {0}")]
    Store(#[from] StoreError),
}

/// How to read the files.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The files' format, when their extensions do not say.
    pub format: Option<FileFormat>,
    pub timestamp_column: Option<String>,
    /// The long shape's name column.
    pub name_column: String,
    /// The long shape's value column, or the one value column `metric` names.
    pub value_column: Option<String>,
    /// The metric name for a file with one value column.
    pub metric: Option<String>,
    /// The wide shape's value columns (default: every column but the time).
    pub columns: Vec<String>,
    pub time: TimeReader,
    pub caps: ReadCaps,
    /// Read and check everything, store nothing.
    pub dry_run: bool,
}

/// What one file held.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub shape: String,
    pub rows_read: usize,
    pub values: usize,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
    /// Rows stored (or that would be, on a dry run).
    pub stored: usize,
    pub metrics: BTreeSet<String>,
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
    /// Rows the batch already had (same metric and time), not stored again.
    pub already_stored: usize,
    /// Rows repeated within the files (the first one is kept).
    pub repeated: usize,
    /// Cells that were empty, NaN or infinite.
    pub empty_values: usize,
}

/// Hears how an import goes: bytes read, then each phase.
pub trait Progress {
    fn read(&self, bytes: u64);
    fn phase(&self, what: &str);
}

/// Import `files` into `spec`'s batch.
pub fn run(
    spec: &BatchSpec,
    store: &mut Store,
    files: &[PathBuf],
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let mut rows = Rows::default();
    let mut read_rows = 0u64;
    for path in files {
        let format = match opts.format {
            Some(f) => f,
            None => FileFormat::of(path)?,
        };
        progress.phase(&format!("reading {}", path.display()));
        let table = read::read_file(path, format, opts.caps, read_rows, &|n| progress.read(n))?;
        read_rows += table.rows as u64;
        report
            .files
            .push(shape_file(spec, &table, opts, &mut rows)?);
    }
    if read_rows == 0 {
        return Err(ImportError::NoRows);
    }
    report.empty_values = rows.empty;
    progress.phase("checking against the stored rows");
    // (Asked only when the batch has rows: a dry run creates no table.)
    let existing = if store.batch_has_rows(&spec.table_key, &spec.metric_batch)? {
        store.timestamps_of_type(&spec.table_key, &spec.metric_batch, MetricType::Metric)?
    } else {
        BTreeMap::new()
    };
    let kept = rows.dedupe(&existing, &mut report);
    if kept.is_empty() && report.already_stored == 0 && report.repeated == 0 {
        return Err(ImportError::Empty);
    }
    let mut chunks = Vec::new();
    for chunk in kept.chunks(CHUNK_ROWS) {
        chunks.push(rows.normalized(spec, chunk)?);
    }
    report.stored = chunks.iter().map(|c| c.num_rows()).sum();
    if !opts.dry_run && report.stored > 0 {
        progress.phase("storing");
        store.ensure_metrics_table(&spec.table_key)?;
        store.append_metrics(&spec.table_key, &chunks)?;
    }
    Ok(report)
}

/// Every row read so far, metric names interned.
#[derive(Default)]
struct Rows {
    names: Vec<String>,
    index: HashMap<String, u32>,
    /// (time, name, value)
    rows: Vec<(i64, u32, f64)>,
    empty: usize,
}

impl Rows {
    fn name(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    /// The rows to store, in time order: those the batch has not stored
    /// yet, each (metric, time) once.
    fn dedupe(
        &self,
        existing: &BTreeMap<String, BTreeSet<i64>>,
        report: &mut ImportReport,
    ) -> Vec<usize> {
        let mut seen: std::collections::HashSet<(u32, i64)> = Default::default();
        let mut kept = Vec::new();
        for (i, (t, n, _)) in self.rows.iter().enumerate() {
            if !seen.insert((*n, *t)) {
                report.repeated += 1;
            } else if existing
                .get(&self.names[*n as usize])
                .is_some_and(|s| s.contains(t))
            {
                report.already_stored += 1;
            } else {
                kept.push(i);
            }
        }
        kept.sort_by_key(|i| (self.rows[*i].0, self.rows[*i].1));
        for i in &kept {
            report
                .metrics
                .insert(self.names[self.rows[*i].1 as usize].clone());
        }
        report.first_us = kept.first().map(|i| self.rows[*i].0);
        report.last_us = kept.last().map(|i| self.rows[*i].0);
        kept
    }

    /// Rows `picked` as the metrics table holds them, through the same
    /// checks an ingest's rows pass.
    fn normalized(&self, spec: &BatchSpec, picked: &[usize]) -> Result<RecordBatch, ImportError> {
        let t: TimestampMicrosecondArray = picked.iter().map(|i| Some(self.rows[*i].0)).collect();
        let names: StringArray = picked
            .iter()
            .map(|i| Some(self.names[self.rows[*i].1 as usize].as_str()))
            .collect();
        let v: Float64Array = picked.iter().map(|i| Some(self.rows[*i].2)).collect();
        let raw = RecordBatch::try_from_iter(vec![
            (
                crate::store::schema::METRIC_TIMESTAMP,
                Arc::new(t) as ArrayRef,
            ),
            (
                crate::store::schema::METRIC_NAME,
                Arc::new(names) as ArrayRef,
            ),
            (crate::store::schema::METRIC_VALUE, Arc::new(v) as ArrayRef),
        ])
        .map_err(|e| ImportError::Check(e.to_string()))?;
        // The import's own cap is --max-rows, counted as the files are read.
        let mut limits = spec.limits.clone();
        limits.max_rows = CHUNK_ROWS as u64;
        normalize::normalize(
            &[raw],
            &spec.metric_batch,
            &limits,
            spec.ingest_settings.metric_rounding,
        )
        .map(|n| n.rows)
        .map_err(|e: InvalidResult| ImportError::Check(e.to_string()))
    }
}

/// Where a file's times, names and values are.
#[derive(Debug)]
enum Shape {
    /// One row per observation: a name column and a value column.
    Long { name: String, value: String },
    /// A value column per metric: (column, metric name).
    Wide(Vec<(String, String)>),
}

impl Shape {
    /// For the summary: where the times, names and values were found.
    fn describe(&self, time: &str) -> String {
        match self {
            Shape::Long { name, value } => format!("long: time {time}, name {name}, value {value}"),
            Shape::Wide(cols) if cols.len() == 1 && cols[0].0 != cols[0].1 => {
                format!(
                    "one series: time {time}, value {} as metric {}",
                    cols[0].0, cols[0].1
                )
            }
            Shape::Wide(cols) if cols.len() == 1 => format!("wide: time {time}, 1 metric column"),
            Shape::Wide(cols) => format!("wide: time {time}, {} metric columns", cols.len()),
        }
    }
}

fn find_column(columns: &[&str], wanted: &str) -> Option<String> {
    columns
        .iter()
        .find(|c| c.eq_ignore_ascii_case(wanted))
        .map(|c| c.to_string())
}

/// A column's name as an error shows it: on one line, control characters
/// escaped, cut short.
fn shown(name: &str) -> String {
    crate::escape::terminal_line(&crate::escape::truncate(name, 80))
}

/// Column names for an error: the first 20, then how many more.
fn shown_list(names: &[&str]) -> String {
    let mut out: Vec<String> = names.iter().take(20).map(|n| shown(n)).collect();
    if names.len() > 20 {
        out.push(format!("and {} more", names.len() - 20));
    }
    out.join(", ")
}

/// Which column holds what, from the header and the options.
fn shape_of(columns: &[&str], opts: &ImportOptions) -> Result<(String, Shape), String> {
    let listed = || shown_list(columns);
    let time = match &opts.timestamp_column {
        Some(c) => find_column(columns, c).ok_or_else(|| {
            format!(
                "no column `{c}` (--timestamp-column); the columns are {}",
                listed()
            )
        })?,
        None => TIME_COLUMNS
            .iter()
            .find_map(|c| find_column(columns, c))
            .ok_or_else(|| {
                format!(
                    "no time column: found {}; name it with --timestamp-column (looked for {})",
                    listed(),
                    TIME_COLUMNS.join(", ")
                )
            })?,
    };
    let others: Vec<&str> = columns.iter().copied().filter(|c| *c != time).collect();
    let need = |c: &str, flag: &str| {
        find_column(columns, c)
            .ok_or_else(|| format!("no column `{c}` ({flag}); the columns are {}", listed()))
    };
    if let Some(metric) = &opts.metric {
        let value = match &opts.value_column {
            Some(c) => need(c, "--value-column")?,
            None if others.len() == 1 => others[0].to_string(),
            None => {
                return Err(format!(
                    "--metric names one series, but there are {} value columns ({}); pick one with --value-column",
                    others.len(),
                    shown_list(&others)
                ))
            }
        };
        return Ok((time, Shape::Wide(vec![(value, metric.clone())])));
    }
    if let Some(name) = find_column(columns, &opts.name_column) {
        if !opts.columns.is_empty() {
            return Err(format!(
                "--columns picks a wide file's value columns, but this file is long (it has {})",
                shown(&name)
            ));
        }
        let value = need(
            opts.value_column.as_deref().unwrap_or("metric_value"),
            "--value-column",
        )?;
        return Ok((time, Shape::Long { name, value }));
    }
    let picked: Vec<String> = if opts.columns.is_empty() {
        others.iter().map(|c| c.to_string()).collect()
    } else {
        opts.columns
            .iter()
            .map(|c| need(c, "--columns"))
            .collect::<Result<_, _>>()?
    };
    if picked.is_empty() {
        return Err(format!(
            "only a time column ({time}): a file needs a value column too (the columns are {})",
            listed()
        ));
    }
    Ok((
        time,
        Shape::Wide(picked.into_iter().map(|c| (c.clone(), c)).collect()),
    ))
}

/// Read one file's rows into `rows`.
fn shape_file(
    spec: &BatchSpec,
    table: &FileTable,
    opts: &ImportOptions,
    rows: &mut Rows,
) -> Result<FileReport, ImportError> {
    let file = &table.path;
    let columns: Vec<&str> = table
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let (time, shape) = shape_of(&columns, opts).map_err(|message| ImportError::Columns {
        file: file.clone(),
        message,
    })?;
    let cell = |column: &str| {
        let column = column.to_string();
        move |e: cells::CellError| ImportError::Cell {
            file: file.clone(),
            row: e.row,
            column: shown(&column),
            value: e.value,
            problem: e.problem,
        }
    };
    let limits = &spec.limits;
    let in_range = |t: i64| t >= limits.timestamp_min_us && t <= limits.timestamp_max_us;
    if let Shape::Wide(cols) = &shape {
        let names: StringArray = cols.iter().map(|(_, m)| Some(m.as_str())).collect();
        normalize::check_names(&names, limits.max_name_len).map_err(|e| ImportError::Columns {
            file: file.clone(),
            message: format!("a column's name is not a metric name sandstack stores: {e}"),
        })?;
    }
    let before = rows.rows.len();
    // Each column's position, found once (a wide file may have thousands).
    let at: HashMap<&str, usize> = columns.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let column_of =
        |b: &'_ RecordBatch, name: &str| b.column(at.get(name).copied().unwrap_or(0)).clone();
    let mut first_row = 1;
    for b in &table.batches {
        let times = opts
            .time
            .column(&column_of(b, &time), first_row)
            .map_err(cell(&time))?;
        if let Some(i) = times.iter().position(|t| !in_range(*t)) {
            return Err(ImportError::Cell {
                file: file.clone(),
                row: first_row + i,
                column: shown(&time),
                value: fmt_us(times[i]),
                problem: format!(
                    "is outside the batch's allowed times, {} to {} (ingest_timestamp_min, ingest_timestamp_max)",
                    fmt_us(limits.timestamp_min_us),
                    fmt_us(limits.timestamp_max_us)
                ),
            });
        }
        match &shape {
            Shape::Long { name, value } => {
                let names = names_of(&column_of(b, name), first_row, limits.max_name_len)
                    .map_err(cell(name))?;
                let values = cells::values(&column_of(b, value), first_row).map_err(cell(value))?;
                for ((t, n), v) in times.iter().zip(names.iter()).zip(values) {
                    push(rows, *t, n.unwrap_or_default(), v);
                }
            }
            Shape::Wide(cols) => {
                for (column, metric) in cols {
                    let values =
                        cells::values(&column_of(b, column), first_row).map_err(cell(column))?;
                    for (t, v) in times.iter().zip(values) {
                        push(rows, *t, metric, v);
                    }
                }
            }
        }
        first_row += b.num_rows();
        if (rows.rows.len() + rows.empty) as u64 > opts.caps.max_rows {
            return Err(ImportError::TooManyValues {
                file: file.clone(),
                limit: opts.caps.max_rows,
            });
        }
    }
    Ok(FileReport {
        path: file.clone(),
        shape: shape.describe(&time),
        rows_read: table.rows,
        values: rows.rows.len() - before,
    })
}

fn push(rows: &mut Rows, t: i64, name: &str, v: Option<f64>) {
    match v {
        Some(v) => {
            let n = rows.name(name);
            rows.rows.push((t, n, v));
        }
        None => rows.empty += 1,
    }
}

/// The name column, checked as an ingest's names are.
fn names_of(
    col: &ArrayRef,
    first_row: usize,
    max_len: u64,
) -> Result<StringArray, cells::CellError> {
    let text = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).map_err(|e| {
        cells::CellError {
            row: first_row,
            value: String::new(),
            problem: e.to_string(),
        }
    })?;
    let names = text.as_string::<i32>().clone();
    if let Some(i) = (0..names.len()).find(|i| names.is_null(*i)) {
        return Err(cells::CellError {
            row: first_row + i,
            value: "(empty)".into(),
            problem: "is empty: every row needs a metric name".into(),
        });
    }
    normalize::check_names(&names, max_len).map_err(|e| match e {
        InvalidResult::BadName {
            row,
            problem,
            shown,
        } => cells::CellError {
            row: first_row + row,
            value: shown,
            problem,
        },
        other => cells::CellError {
            row: first_row,
            value: String::new(),
            problem: other.to_string(),
        },
    })?;
    Ok(names)
}

/// Files named on the command line, each checked to exist first, so that a
/// typo stops the import before any file is read.
pub fn check_files(files: &[PathBuf]) -> Result<(), ImportError> {
    for f in files {
        let problem = match std::fs::metadata(Path::new(f)) {
            Ok(m) if m.is_file() => continue,
            Ok(_) => "not a regular file".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
            Err(e) => e.to_string(),
        };
        return Err(ImportError::Io {
            file: f.clone(),
            message: problem,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

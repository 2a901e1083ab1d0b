//! Reads one history file (CSV, Parquet or newline-delimited JSON) into
//! Arrow on the host, within the operator's caps on bytes and rows. CSV and
//! JSON cells are read as text, so that every cell is parsed by
//! [`super::cells`] and a bad one is reported with its row and column.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::ImportError;

/// Rows per Arrow batch while reading.
const BATCH_ROWS: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    Csv,
    /// Tab-separated values.
    Tsv,
    Parquet,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
}

impl FileFormat {
    /// From the file's extension (`.csv`, `.tsv`, `.parquet`/`.pq`,
    /// `.ndjson`/`.jsonl`/`.json`), with `.gz` refused by name.
    pub fn of(path: &Path) -> Result<FileFormat, ImportError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(FileFormat::Csv),
            "tsv" | "tab" => Ok(FileFormat::Tsv),
            "parquet" | "pq" => Ok(FileFormat::Parquet),
            "ndjson" | "jsonl" | "json" => Ok(FileFormat::Ndjson),
            _ => Err(ImportError::UnknownFormat {
                file: path.to_path_buf(),
            }),
        }
    }
}

/// The operator's caps on what one import reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadCaps {
    pub max_file_bytes: u64,
    pub max_rows: u64,
}

/// One file's columns, as Arrow batches, and how many data rows it had.
#[derive(Debug)]
pub struct FileTable {
    pub path: PathBuf,
    pub schema: Arc<Schema>,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
}

/// Read `path` as `format`; `rows_before` rows were read from earlier files
/// (the row cap is for the whole import). `progress` hears bytes read.
pub fn read_file(
    path: &Path,
    format: FileFormat,
    caps: ReadCaps,
    rows_before: u64,
    progress: &dyn Fn(u64),
) -> Result<FileTable, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::Io {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let len = file
        .metadata()
        .map_err(|e| ImportError::Io {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?
        .len();
    if len > caps.max_file_bytes {
        return Err(ImportError::TooBig {
            file: path.to_path_buf(),
            bytes: len,
            limit: caps.max_file_bytes,
        });
    }
    let malformed = |message: String| ImportError::Malformed {
        file: path.to_path_buf(),
        message,
    };
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut take = |b: RecordBatch| -> Result<(), ImportError> {
        rows += b.num_rows();
        if rows_before + rows as u64 > caps.max_rows {
            return Err(ImportError::TooManyRows {
                file: path.to_path_buf(),
                limit: caps.max_rows,
            });
        }
        batches.push(b);
        Ok(())
    };
    let schema = match format {
        FileFormat::Csv | FileFormat::Tsv => {
            let delimiter = if format == FileFormat::Tsv {
                b'\t'
            } else {
                b','
            };
            let (schema, reader) = csv_reader(file, delimiter).map_err(malformed)?;
            let mut counted = Counted::new(reader, progress);
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(true)
                .with_delimiter(delimiter)
                .with_batch_size(BATCH_ROWS)
                .build(&mut counted)
                .map_err(|e| malformed(e.to_string()))?;
            for b in reader {
                take(b.map_err(|e| malformed(e.to_string()))?)?;
            }
            schema
        }
        FileFormat::Ndjson => {
            let mut buf = BufReader::new(file);
            let (inferred, _) = arrow::json::reader::infer_json_schema(&mut buf, Some(1000))
                .map_err(|e| malformed(format!("not newline-delimited JSON objects: {e}")))?;
            let schema = all_text(&inferred);
            buf.seek(SeekFrom::Start(0))
                .map_err(|e| malformed(e.to_string()))?;
            let counted = BufReader::new(Counted::new(buf, progress));
            let reader = arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .with_coerce_primitive(true)
                .build(counted)
                .map_err(|e| malformed(e.to_string()))?;
            for b in reader {
                take(b.map_err(|e| malformed(e.to_string()))?)?;
            }
            schema
        }
        FileFormat::Parquet => {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| malformed(format!("not a Parquet file: {e}")))?;
            let declared = builder.metadata().file_metadata().num_rows().max(0) as u64;
            if rows_before + declared > caps.max_rows {
                return Err(ImportError::TooManyRows {
                    file: path.to_path_buf(),
                    limit: caps.max_rows,
                });
            }
            let schema = builder.schema().clone();
            let reader = builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| malformed(e.to_string()))?;
            let per_row = len / declared.max(1);
            for b in reader {
                let b = b.map_err(|e| malformed(e.to_string()))?;
                progress(per_row * b.num_rows() as u64);
                take(b)?;
            }
            schema
        }
    };
    check_unique_columns(path, &schema)?;
    Ok(FileTable {
        path: path.to_path_buf(),
        schema,
        batches,
        rows,
    })
}

/// The header's column names, every column read as text.
fn csv_reader(mut file: File, delimiter: u8) -> Result<(Arc<Schema>, File), String> {
    let format = arrow::csv::reader::Format::default()
        .with_header(true)
        .with_delimiter(delimiter);
    let (inferred, _) = format
        .infer_schema(BufReader::new(&mut file), Some(0))
        .map_err(|e| format!("cannot read the header: {e}"))?;
    if inferred.fields().is_empty() {
        return Err("the file is empty: the first line must name the columns".into());
    }
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    Ok((all_text(&inferred), file))
}

fn all_text(schema: &Schema) -> Arc<Schema> {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

fn check_unique_columns(path: &Path, schema: &Schema) -> Result<(), ImportError> {
    let mut seen = std::collections::BTreeSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(ImportError::Malformed {
                file: path.to_path_buf(),
                message: format!("the column `{}` appears twice in the header", f.name()),
            });
        }
    }
    Ok(())
}

/// A reader that reports the bytes it hands on.
struct Counted<'p, R> {
    inner: R,
    progress: &'p dyn Fn(u64),
}

impl<'p, R> Counted<'p, R> {
    fn new(inner: R, progress: &'p dyn Fn(u64)) -> Self {
        Counted { inner, progress }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> ReadCaps {
        ReadCaps {
            max_file_bytes: 1 << 20,
            max_rows: 1000,
        }
    }

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().expect("dir");
        let p = d.path().join(name);
        std::fs::write(&p, text).expect("write");
        (d, p)
    }

    #[test]
    fn csv_cells_are_read_as_text() {
        let (_d, p) = write("a.csv", "timestamp,value\n2024-01-01,1.5\n2024-01-02,x\n");
        let t = read_file(&p, FileFormat::Csv, caps(), 0, &|_| {}).expect("read");
        assert_eq!(t.rows, 2);
        assert!(t
            .schema
            .fields()
            .iter()
            .all(|f| f.data_type() == &DataType::Utf8));
    }

    #[test]
    fn caps_hold() {
        let (_d, p) = write("a.csv", "t,v\n1,2\n3,4\n");
        let small = ReadCaps {
            max_file_bytes: 4,
            max_rows: 1000,
        };
        let e = read_file(&p, FileFormat::Csv, small, 0, &|_| {}).expect_err("too big");
        assert!(matches!(e, ImportError::TooBig { .. }), "{e}");
        let few = ReadCaps {
            max_file_bytes: 1 << 20,
            max_rows: 1,
        };
        let e = read_file(&p, FileFormat::Csv, few, 0, &|_| {}).expect_err("too many");
        assert!(matches!(e, ImportError::TooManyRows { .. }), "{e}");
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(
            FileFormat::of(Path::new("x.CSV")).expect("csv"),
            FileFormat::Csv
        );
        assert_eq!(
            FileFormat::of(Path::new("x.jsonl")).expect("json"),
            FileFormat::Ndjson
        );
        assert!(FileFormat::of(Path::new("x.csv.gz")).is_err());
    }

    #[test]
    fn a_repeated_column_is_refused() {
        let (_d, p) = write("a.csv", "t,v,v\n1,2,3\n");
        let e = read_file(&p, FileFormat::Csv, caps(), 0, &|_| {}).expect_err("dup");
        assert!(e.to_string().contains("appears twice"), "{e}");
    }
}

//! Reads one history file (CSV, Parquet or newline-delimited JSON) into
//! Arrow on the host, within the operator's caps on bytes and rows. CSV and
//! JSON cells are read as text, so that every cell is parsed by
//! [`super::cells`] and a bad one is reported with its row and column.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::ImportError;

/// Rows per Arrow batch while reading, at most: Arrow's readers reserve a
/// batch's room for every column, so wide files read fewer rows at a time.
const BATCH_ROWS: usize = 8192;
/// Cells per Arrow batch while reading, at most.
const BATCH_CELLS: usize = 1 << 20;
/// Columns a file may have.
pub const MAX_COLUMNS: usize = 10_000;
/// Longest error text quoted from a reader (it may quote the file).
const MAX_MESSAGE: usize = 300;

fn batch_rows(columns: usize) -> usize {
    (BATCH_CELLS / columns.max(1)).clamp(1, BATCH_ROWS)
}

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
    let file = open_regular(path)?;
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
    let mut r = Reading {
        path,
        caps,
        rows_before,
        progress,
        batches: Vec::new(),
        rows: 0,
    };
    let schema = match format {
        FileFormat::Csv => r.csv(file, b',')?,
        FileFormat::Tsv => r.csv(file, b'\t')?,
        FileFormat::Ndjson => r.ndjson(file)?,
        FileFormat::Parquet => r.parquet(file, len)?,
    };
    Ok(FileTable {
        path: path.to_path_buf(),
        schema,
        batches: r.batches,
        rows: r.rows,
    })
}

/// One file being read: where, within what, and what it gave so far.
struct Reading<'a> {
    path: &'a Path,
    caps: ReadCaps,
    rows_before: u64,
    progress: &'a dyn Fn(u64),
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl Reading<'_> {
    fn malformed(&self, message: impl std::fmt::Display) -> ImportError {
        ImportError::Malformed {
            file: self.path.to_path_buf(),
            message: crate::escape::truncate(&message.to_string(), MAX_MESSAGE),
        }
    }

    fn too_big(&self) -> ImportError {
        ImportError::TooBig {
            file: self.path.to_path_buf(),
            bytes: self.caps.max_file_bytes + 1,
            limit: self.caps.max_file_bytes,
        }
    }

    /// A reader's error: past the byte cap, say that.
    fn failed(&self, over: &Cell<bool>, e: impl std::fmt::Display) -> ImportError {
        if over.get() {
            self.too_big()
        } else {
            self.malformed(e)
        }
    }

    fn too_many_rows(&self) -> ImportError {
        ImportError::TooManyRows {
            file: self.path.to_path_buf(),
            limit: self.caps.max_rows,
        }
    }

    fn take(&mut self, b: RecordBatch) -> Result<(), ImportError> {
        self.rows += b.num_rows();
        if self.rows_before + self.rows as u64 > self.caps.max_rows {
            return Err(self.too_many_rows());
        }
        self.batches.push(b);
        Ok(())
    }

    fn csv(&mut self, file: File, delimiter: u8) -> Result<Arc<Schema>, ImportError> {
        let (schema, reader) = csv_reader(file, delimiter).map_err(|e| self.malformed(e))?;
        check_columns(self.path, &schema)?;
        let over = Rc::new(Cell::new(false));
        let mut counted = Counted::new(
            reader,
            self.progress,
            self.caps.max_file_bytes,
            over.clone(),
        );
        let reader = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .with_delimiter(delimiter)
            .with_batch_size(batch_rows(schema.fields().len()))
            .build(&mut counted)
            .map_err(|e| self.malformed(e))?;
        for b in reader {
            let b = b.map_err(|e| self.failed(&over, e))?;
            self.take(b)?;
        }
        if over.get() {
            return Err(self.too_big());
        }
        Ok(schema)
    }

    fn ndjson(&mut self, file: File) -> Result<Arc<Schema>, ImportError> {
        let mut buf = BufReader::new(file);
        // Flat objects only, checked before any JSON parser sees the file:
        // a nested value cannot be a metric's value, and a deep one would
        // exhaust a recursive parser's stack.
        check_flat_json(&mut buf, self.caps.max_file_bytes).map_err(|e| match e {
            FlatJson::TooBig => self.too_big(),
            FlatJson::Nested(line) => self.malformed(format!(
                "line {line}: a value is an object or array; sandstack reads flat objects, one value per key"
            )),
            FlatJson::Io(e) => self.malformed(e),
        })?;
        // Every line's keys, so a key first seen late is not dropped.
        let (inferred, _) = arrow::json::reader::infer_json_schema(&mut buf, None)
            .map_err(|e| self.malformed(format!("not newline-delimited JSON objects: {e}")))?;
        let schema = all_text(&inferred);
        check_columns(self.path, &schema)?;
        buf.seek(SeekFrom::Start(0))
            .map_err(|e| self.malformed(e))?;
        let over = Rc::new(Cell::new(false));
        let counted = BufReader::new(Counted::new(
            buf,
            self.progress,
            self.caps.max_file_bytes,
            over.clone(),
        ));
        let reader = arrow::json::ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_rows(schema.fields().len()))
            .with_coerce_primitive(true)
            .build(counted)
            .map_err(|e| self.malformed(e))?;
        for b in reader {
            let b = b.map_err(|e| self.failed(&over, e))?;
            self.take(b)?;
        }
        Ok(schema)
    }

    fn parquet(&mut self, file: File, len: u64) -> Result<Arc<Schema>, ImportError> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| self.malformed(format!("not a Parquet file: {e}")))?;
        let declared = builder.metadata().file_metadata().num_rows().max(0) as u64;
        if self.rows_before + declared > self.caps.max_rows {
            return Err(self.too_many_rows());
        }
        // What the pages say they decompress to: a small file may hold
        // gigabytes of one repeated value.
        let unpacked: i64 = builder
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|g| g.columns().iter().map(|c| c.uncompressed_size().max(0)))
            .sum();
        if unpacked as u64 > self.caps.max_file_bytes {
            return Err(ImportError::TooBig {
                file: self.path.to_path_buf(),
                bytes: unpacked as u64,
                limit: self.caps.max_file_bytes,
            });
        }
        let schema = builder.schema().clone();
        check_columns(self.path, &schema)?;
        let reader = builder
            .with_batch_size(batch_rows(schema.fields().len()))
            .build()
            .map_err(|e| self.malformed(e))?;
        let per_row = len / declared.max(1);
        for b in reader {
            let b = b.map_err(|e| self.malformed(e))?;
            (self.progress)(per_row * b.num_rows() as u64);
            self.take(b)?;
        }
        Ok(schema)
    }
}

/// Open `path` only if it is a regular file (not a FIFO that would block,
/// a device or a directory), checked on the open file itself.
fn open_regular(path: &Path) -> Result<File, ImportError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |message: String| ImportError::Io {
        file: path.to_path_buf(),
        message,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io(e.to_string()))?;
    let meta = file.metadata().map_err(|e| io(e.to_string()))?;
    if !meta.is_file() {
        return Err(io("not a regular file".into()));
    }
    Ok(file)
}

/// At most [`MAX_COLUMNS`] columns, each named once: checked from the
/// header, before any row is read.
fn check_columns(path: &Path, schema: &Schema) -> Result<(), ImportError> {
    let refuse = |message: String| ImportError::Malformed {
        file: path.to_path_buf(),
        message,
    };
    let n = schema.fields().len();
    if n > MAX_COLUMNS {
        return Err(refuse(format!(
            "{n} columns: a file may have at most {MAX_COLUMNS}"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(f) = schema
        .fields()
        .iter()
        .find(|f| !seen.insert(f.name().as_str()))
    {
        return Err(refuse(format!(
            "the column `{}` appears twice in the header",
            super::shown(f.name())
        )));
    }
    Ok(())
}

enum FlatJson {
    Nested(usize),
    TooBig,
    Io(String),
}

/// Each line an object whose values are not objects or arrays, read within
/// `max_bytes`; rewinds the reader.
fn check_flat_json(buf: &mut BufReader<File>, max_bytes: u64) -> Result<(), FlatJson> {
    let (mut line, mut depth, mut in_string, mut escaped) = (1usize, 0usize, false, false);
    let mut read = 0u64;
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = buf
            .read(&mut chunk)
            .map_err(|e| FlatJson::Io(e.to_string()))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > max_bytes {
            return Err(FlatJson::TooBig);
        }
        for &c in &chunk[..n] {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > 1 {
                        return Err(FlatJson::Nested(line));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'\n' => line += 1,
                _ => {}
            }
        }
    }
    buf.seek(SeekFrom::Start(0))
        .map_err(|e| FlatJson::Io(e.to_string()))?;
    Ok(())
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

/// A reader that reports the bytes it hands on, and ends (setting `over`)
/// past `max` bytes: a file's size on disk is not proof of what reading it
/// gives (a file still growing, a kernel file that says 0).
struct Counted<'p, R> {
    inner: R,
    progress: &'p dyn Fn(u64),
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<'p, R> Counted<'p, R> {
    fn new(inner: R, progress: &'p dyn Fn(u64), max: u64, over: Rc<Cell<bool>>) -> Self {
        Counted {
            inner,
            progress,
            left: max,
            over,
        }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more than allowed means the file is over.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.over.set(true);
                return Err(std::io::Error::other(
                    "the file is larger than --max-file-mb",
                ));
            }
            return Ok(0);
        }
        let room = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..room])?;
        self.left -= n as u64;
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

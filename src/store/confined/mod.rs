//! Where the metrics folder's SQL runs: a scratch DuckDB in a helper
//! process (`crate::child`) that holds one table, named as the batch's
//! `table_key`, with only the rows the store handed it (the batch's own;
//! every batch's of that table where the operator allows). Nothing else
//! exists there: no other table, no run history, no database file, no
//! host path in its settings, no environment. Whatever a template writes
//! changes only the scratch copy, which dies with the process; the only
//! way out is its result (a query's rows, or which of the rows a
//! `delete_sql` removed, for the store to delete itself).
//!
//! The kernel holds the helper to the operator's memory (DuckDB's own
//! limit inside, `RLIMIT_DATA` around it for what DuckDB allocates outside
//! its buffer manager); it may write no file (no temporary files either:
//! what does not fit fails); a deadline or the store's stop flag kills it;
//! and its result is read as it streams and cut off at the caller's caps.
//!
//! The same on every engine: on PostgreSQL the batch's rows are read with
//! sandstack's own query and the template runs here, in DuckDB's SQL, as
//! the batch's `db: duckdb` says.

mod helper;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::metrics::RowSink;
use super::{StoreError, TableKey};
use crate::child;

pub use helper::serve;

/// The helper's role name (`sandstack __child sql`).
pub const ROLE: &str = "sql";

/// Memory the helper needs besides DuckDB's limit: the executable's own
/// data, DuckDB's catalog, the rows in transit.
const OVERHEAD_MB: u64 = 256;

/// The operator's settings for the folder's SQL (from the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfinedSettings {
    /// DuckDB's memory in the helper, MiB; also the largest result.
    pub memory_mb: u64,
    pub threads: u64,
    /// The scratch table holds every batch's rows of the table, not only
    /// the batch's own (the policy's `batch_sql_reads_other_batches`).
    /// Deletes stay confined to the batch's own rows.
    pub reads_other_batches: bool,
    /// How long one statement may run when no job time limit is set.
    pub default_time: Duration,
    /// Helpers that may run at once in this process (each may use
    /// `memory_mb`); more wait for a slot.
    pub max_helpers: usize,
}

impl Default for ConfinedSettings {
    fn default() -> Self {
        ConfinedSettings {
            memory_mb: DEFAULT_MEMORY_MB,
            threads: 1,
            reads_other_batches: false,
            default_time: Duration::from_secs(300),
            max_helpers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2),
        }
    }
}

/// The helpers running in this process.
static HELPERS: Slots = Slots {
    running: Mutex::new(0),
    freed: Condvar::new(),
};

/// A count of running helpers, and a wait for one to end.
struct Slots {
    running: Mutex<usize>,
    freed: Condvar,
}

/// A slot taken; given back when dropped.
struct Slot(&'static Slots);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = running.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

impl Slots {
    /// A slot once fewer than `max` helpers run; refused at `deadline` or
    /// when `stop` is set, as the statement would be.
    fn take(
        &'static self,
        max: usize,
        deadline: Instant,
        stop: Option<&AtomicBool>,
    ) -> Result<Slot, ConfinedError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *running < max.max(1) {
                *running += 1;
                return Ok(Slot(self));
            }
            let now = Instant::now();
            if now >= deadline || stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Err(ConfinedError::TimedOut);
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            running = self
                .freed
                .wait_timeout(running, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// DuckDB's memory for a batch's SQL when the policy does not set
/// `duckdb_memory_mb`.
pub const DEFAULT_MEMORY_MB: u64 = 2048;

/// The largest result of a template (train, score, alerts, dashboard...):
/// far above what a job reads (thousands of rows per metric), and a bound
/// on what a hostile one can make sandstack's own process hold.
pub const TEMPLATE_RESULT_MAX_BYTES: u64 = 256 << 20;

/// The most a query's result may hold; past either, the helper is stopped
/// and the query refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultCaps {
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    /// The limits' names, for the refusal.
    pub rows_key: &'static str,
    pub bytes_key: &'static str,
}

impl ResultCaps {
    /// A template's: [`TEMPLATE_RESULT_MAX_BYTES`].
    pub const TEMPLATE: ResultCaps = ResultCaps {
        max_rows: None,
        max_bytes: Some(TEMPLATE_RESULT_MAX_BYTES),
        rows_key: "",
        bytes_key: "a template's result",
    };
}

/// What the statement is to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    /// One query; its rows come back.
    Query,
    /// One DELETE; the positions of the rows it removed come back.
    Delete,
}

/// The first frame the helper reads.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    schema: Option<String>,
    table: String,
    sql: String,
    mode: Mode,
    memory_mb: u64,
    threads: u64,
    #[serde(default)]
    now_us: Option<i64>,
}

/// Frame tags, parent to helper.
mod tag {
    pub const HEADER: u8 = b'H';
    pub const ROWS: u8 = b'R';
    pub const END: u8 = b'Z';
    /// Helper to parent.
    pub const BATCH: u8 = b'B';
    pub const POSITIONS: u8 = b'P';
    pub const ERROR: u8 = b'E';
    pub const DONE: u8 = b'D';
}

#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    /// DuckDB's words for what is wrong with the statement.
    #[error("{0}")]
    Statement(String),
    #[error(
        "it needs more memory than a batch's SQL may use ({limit_mb} MiB, the policy's duckdb_memory_mb){detail}"
    )]
    Memory { limit_mb: u64, detail: String },
    #[error("its result has more than {limit} rows ({key}); return fewer rows")]
    TooManyRows { limit: u64, key: &'static str },
    #[error("its result is larger than {limit_kb} KiB (the limit of {key}); return fewer or smaller rows")]
    TooLarge { limit_kb: u64, key: &'static str },
    #[error("stopped: its time limit ran out")]
    TimedOut,
    #[error(transparent)]
    Helper(#[from] child::ChildError),
    #[error("the process running it ended unexpectedly ({status}){stderr}")]
    Crashed { status: String, stderr: String },
    #[error("it sent back something unreadable: {0}")]
    Protocol(String),
}

/// One statement of a batch, to run in its scratch world.
pub(crate) struct Statement<'a> {
    pub table: &'a TableKey,
    pub sql: &'a str,
    pub settings: &'a ConfinedSettings,
    /// Set by the store's time limit; the helper is killed when it is.
    pub stop: Option<Arc<AtomicBool>>,
    /// The instant the SQL's `now()` and its relatives return (µs since
    /// 1970, UTC); None: the real clock.
    pub now_us: Option<i64>,
}

/// What the parent makes of the helper's answer frames.
trait Answer {
    /// The longest frame that can still be taken; a longer one is refused
    /// unread, with [`Answer::over`].
    fn room(&self) -> usize;
    fn over(&self) -> ConfinedError;
    fn take(&mut self, tag: u8, payload: Vec<u8>) -> Result<(), ConfinedError>;
}

/// A query's rows, counted as they arrive: rows, and bytes as sent (the
/// helper's Arrow IPC), against the caller's caps and the helper's memory.
struct Rows {
    out: Vec<RecordBatch>,
    rows: u64,
    bytes: u64,
    caps: ResultCaps,
    memory_mb: u64,
}

impl Rows {
    /// The tightest byte limit, and the error that names it.
    fn byte_limit(&self) -> (u64, ConfinedError) {
        let memory = self.memory_mb << 20;
        match self.caps.max_bytes.filter(|b| *b <= memory) {
            Some(limit) => (
                limit,
                ConfinedError::TooLarge {
                    limit_kb: limit >> 10,
                    key: self.caps.bytes_key,
                },
            ),
            None => (
                memory,
                ConfinedError::Memory {
                    limit_mb: self.memory_mb,
                    detail: ": its result alone is larger".into(),
                },
            ),
        }
    }
}

impl Answer for Rows {
    fn room(&self) -> usize {
        let (limit, _) = self.byte_limit();
        // A frame holds its schema besides the rows: a little slack.
        usize::try_from(limit.saturating_sub(self.bytes).saturating_add(64 << 10))
            .unwrap_or(usize::MAX)
    }

    fn over(&self) -> ConfinedError {
        self.byte_limit().1
    }

    fn take(&mut self, t: u8, payload: Vec<u8>) -> Result<(), ConfinedError> {
        if t != tag::BATCH {
            return Err(ConfinedError::Protocol(format!("a frame tagged {t}")));
        }
        self.bytes += payload.len() as u64;
        let (limit, over) = self.byte_limit();
        if self.bytes > limit {
            return Err(over);
        }
        let batch = decode(&payload)?;
        self.rows += batch.num_rows() as u64;
        if let Some(limit) = self.caps.max_rows.filter(|l| self.rows > *l) {
            return Err(ConfinedError::TooManyRows {
                limit,
                key: self.caps.rows_key,
            });
        }
        self.out.push(batch);
        Ok(())
    }
}

/// What hands the helper its rows, one record batch at a time, as the
/// store reads them (see [`crate::store::MetricsStore::stream_rows`]).
pub(crate) type Feed<'a> = dyn FnMut(&mut RowSink<'_>) -> Result<(), StoreError> + 'a;

/// Run a query over the rows `feed` gives; its result, within `caps`.
pub(crate) fn query(
    st: &Statement<'_>,
    feed: &mut Feed<'_>,
    caps: ResultCaps,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut answer = Rows {
        out: Vec::new(),
        rows: 0,
        bytes: 0,
        caps,
        memory_mb: st.settings.memory_mb,
    };
    run(st, Mode::Query, feed, &mut answer)?;
    Ok(answer.out)
}

/// The positions a DELETE removed, each checked to be one of the rows.
struct Removed {
    total: usize,
    positions: Vec<usize>,
}

impl Answer for Removed {
    fn room(&self) -> usize {
        child::MAX_FRAME
    }

    fn over(&self) -> ConfinedError {
        ConfinedError::Protocol("a frame of positions larger than any".into())
    }

    fn take(&mut self, t: u8, payload: Vec<u8>) -> Result<(), ConfinedError> {
        if t != tag::POSITIONS || !payload.len().is_multiple_of(8) {
            return Err(ConfinedError::Protocol(format!("a frame tagged {t}")));
        }
        for chunk in payload.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            let p = usize::try_from(u64::from_le_bytes(b))
                .ok()
                .filter(|p| *p < self.total)
                .ok_or_else(|| ConfinedError::Protocol("a position past the rows".into()))?;
            self.positions.push(p);
        }
        Ok(())
    }
}

/// Run a DELETE over `rows`; the positions (in `rows`, counted across
/// its batches) of the rows it removed.
pub(crate) fn delete(st: &Statement<'_>, rows: &[RecordBatch]) -> Result<Vec<usize>, StoreError> {
    let mut answer = Removed {
        total: rows.iter().map(RecordBatch::num_rows).sum(),
        positions: Vec::new(),
    };
    let mut feed = |each: &mut RowSink<'_>| rows.iter().try_for_each(|b| each(b.clone()));
    run(st, Mode::Delete, &mut feed, &mut answer)?;
    Ok(answer.positions)
}

/// Start the helper (when a slot is free: see [`HELPERS`]), send it the
/// statement and then the rows as `feed` reads them, while another thread
/// hands each frame it answers to `answer` until it is done. The helper
/// may answer before it has read every row (a refusal, a cap reached):
/// then it is stopped, and the feed ends at its next write.
fn run(
    st: &Statement<'_>,
    mode: Mode,
    feed: &mut Feed<'_>,
    answer: &mut (dyn Answer + Send),
) -> Result<(), StoreError> {
    let settings = st.settings;
    let header = Header {
        schema: st.table.schema.clone(),
        table: st.table.table.clone(),
        sql: st.sql.to_string(),
        mode,
        memory_mb: settings.memory_mb,
        threads: settings.threads,
        now_us: st.now_us,
    };
    let header = serde_json::to_vec(&header).map_err(|e| ConfinedError::Protocol(e.to_string()))?;
    let deadline = Instant::now() + settings.default_time;
    let _slot = HELPERS.take(settings.max_helpers, deadline, st.stop.as_deref())?;
    let mut helper = child::spawn(
        ROLE,
        child::Limits {
            memory_bytes: (settings.memory_mb + OVERHEAD_MB) << 20,
            cpu_seconds: settings.default_time.as_secs().saturating_mul(2).max(10),
        },
    )
    .map_err(ConfinedError::from)?;
    helper.watch(Some(deadline), st.stop.clone());
    let stdin = helper
        .take_stdin()
        .ok_or_else(|| ConfinedError::Protocol("the helper has no input".into()))?;
    let memory_mb = settings.memory_mb;
    let (fed, answered) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let outcome = read_answer(&mut helper, answer, memory_mb);
            if !matches!(outcome, Ok(true)) {
                // Stop it: its input may still be coming.
                helper.kill();
            }
            outcome
        });
        let fed = send(stdin, &header, feed);
        let answered = reader
            .join()
            .unwrap_or_else(|_| Err(ConfinedError::Protocol("its reader panicked".into())));
        (fed, answered)
    });
    let ended = helper.finish();
    match (fed, answered) {
        // The store failed to read the rows (its own time limit, say): the
        // helper's complaint about rows that ended early is only a result.
        (Err(Fed::Store(e)), _) => Err(e),
        (_, Ok(true)) => Ok(()),
        (_, Err(e)) => Err(e.into()),
        (_, Ok(false)) => Err(why_it_ended(&ended, memory_mb).into()),
    }
}

/// Why sending the helper its work stopped.
enum Fed {
    /// It stopped reading: its answer says why.
    Helper,
    Store(StoreError),
}

/// Write the header, the rows as `feed` reads them, and the end.
fn send(stdin: std::process::ChildStdin, header: &[u8], feed: &mut Feed<'_>) -> Result<(), Fed> {
    let mut w = std::io::BufWriter::new(stdin);
    let helper_gone = |_| Fed::Helper;
    child::write_frame(&mut w, tag::HEADER, header).map_err(helper_gone)?;
    let mut gone = false;
    let fed = feed(&mut |batch: RecordBatch| {
        let bytes = encode(&batch).map_err(|e| ConfinedError::Protocol(e.to_string()))?;
        child::write_frame(&mut w, tag::ROWS, &bytes).map_err(|e| {
            gone = true;
            ConfinedError::Helper(child::ChildError::Io(e))
        })?;
        Ok(())
    });
    match fed {
        Err(_) if gone => return Err(Fed::Helper),
        Err(e) => return Err(Fed::Store(e)),
        Ok(()) => {}
    }
    child::write_frame(&mut w, tag::END, &[]).map_err(helper_gone)?;
    std::io::Write::flush(&mut w).map_err(helper_gone)
}

/// Frames until DONE (true) or the end of the output (false); an ERROR
/// frame is the statement's refusal.
fn read_answer(
    helper: &mut child::Child,
    answer: &mut (dyn Answer + Send),
    memory_mb: u64,
) -> Result<bool, ConfinedError> {
    loop {
        match helper.read_frame_within(answer.room()) {
            Ok(Some((tag::DONE, _))) => return Ok(true),
            Ok(Some((tag::ERROR, text))) => {
                let text = String::from_utf8_lossy(&text);
                let text = crate::store::runs::capped_error(&text).into_owned();
                return Err(statement_error(text, memory_mb));
            }
            Ok(Some((t, payload))) => answer.take(t, payload)?,
            Err(child::ChildError::FrameTooLarge { .. }) => return Err(answer.over()),
            // A helper killed mid-frame: its death explains it.
            Ok(None) | Err(child::ChildError::Io(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// DuckDB's own out-of-memory error names settings a batch cannot change;
/// say whose limit it is.
fn statement_error(text: String, memory_mb: u64) -> ConfinedError {
    if text.starts_with("Out of Memory Error") {
        let first = text.lines().next().unwrap_or_default().to_string();
        return ConfinedError::Memory {
            limit_mb: memory_mb,
            detail: format!(" (DuckDB: {first})"),
        };
    }
    ConfinedError::Statement(text)
}

fn why_it_ended(ended: &child::Ended, memory_mb: u64) -> ConfinedError {
    if ended.killed_for.is_some() {
        return ConfinedError::TimedOut;
    }
    if ended.out_of_memory() {
        return ConfinedError::Memory {
            limit_mb: memory_mb,
            detail: String::new(),
        };
    }
    let stderr = ended.stderr.trim();
    ConfinedError::Crashed {
        status: ended.status.to_string(),
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            let tail: String = stderr
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(": {tail}")
        },
    }
}

/// One record batch as an Arrow IPC stream.
fn encode(batch: &RecordBatch) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(buf)
}

/// The one record batch of an Arrow IPC stream.
fn decode(bytes: &[u8]) -> Result<RecordBatch, ConfinedError> {
    let mut reader = arrow::ipc::reader::StreamReader::try_new(bytes, None)
        .map_err(|e| ConfinedError::Protocol(e.to_string()))?;
    match reader.next() {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => Err(ConfinedError::Protocol(e.to_string())),
        None => Err(ConfinedError::Protocol("an empty batch frame".into())),
    }
}

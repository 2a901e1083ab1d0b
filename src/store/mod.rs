//! The storage seam: what the jobs, the scheduler and the dashboard need
//! from a database, as traits ([`MetricsStore`], [`RunHistory`],
//! [`DashboardStore`]) and the fleet of workers sharing it ([`FleetStore`]),
//! and [`Store`], the handle they hold. DuckDB ([`duck`]) is the embedded
//! default; PostgreSQL ([`pg`]) the store several workers share. Another
//! engine is one more module that implements [`Backend`] and one more arm
//! in [`Store::open_limited`].
//!
//! Nothing outside this module names a database crate or writes SQL. The
//! metrics folder's own SQL never reaches a backend: [`Store::query_batch_sql`]
//! and [`Store::delete_batch_sql`] run it in [`confined`], over the rows the
//! backend reads for it.

pub mod confined;
#[cfg(test)]
pub(crate) mod contract;
pub mod dashboard;
pub mod duck;
pub mod error;
pub mod fleet;
pub mod metrics;
pub mod pg;
pub mod runs;
pub mod schema;
pub mod target;
#[cfg(test)]
pub(crate) mod test_rows;

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use arrow::record_batch::RecordBatch;

pub use crate::config::TableKey;
pub use confined::{ConfinedError, ConfinedSettings, ResultCaps};
pub use dashboard::{Anomaly, CardFigures, DashboardStore, Vote};
pub use error::StoreError;
pub use fleet::{Claim, FleetStore, TakenOver, WorkerInfo, WorkerRow};
pub use metrics::{MetricsStore, NewestValue};
pub use runs::{Retention, RunFilter, RunHistory, RunRecord, RunStatus};
pub use schema::metrics_schema;
pub use target::DbTarget;

/// Default database file, relative to the working directory.
pub const DEFAULT_DB: &str = "sandstack.duckdb";

/// The operator's limits on the database engine as a whole (its memory and
/// threads), fixed when it is opened: SQL cannot change them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineLimits {
    pub memory_mb: Option<u64>,
    pub threads: Option<u64>,
}

/// Everything a database behind sandstack provides.
pub trait Backend: MetricsStore + RunHistory + DashboardStore + FleetStore + Send {
    /// Another connection to the same database, for work on another thread.
    fn try_clone(&self) -> Result<Box<dyn Backend>, StoreError>;

    /// For tests and tools that need the concrete backend.
    fn as_any(&self) -> &dyn Any;

    /// Something that stops the statement this connection is running,
    /// from another thread.
    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync>;

    /// What the database takes on disk, if it is on disk.
    fn size_bytes(&self) -> Option<u64>;

    /// Whether a write could be made now (nothing is left written).
    fn check_writable(&self) -> Result<(), StoreError>;
}

/// The database handle the rest of sandstack holds: a [`Backend`] behind a
/// box, so callers never name the engine.
pub struct Store {
    backend: Box<dyn Backend>,
    /// Set when a time limit ran out (see [`Store::with_time_limit`]).
    stop: Arc<AtomicBool>,
    /// The operator's settings for the metrics folder's SQL.
    confined: ConfinedSettings,
    /// The instant the folder's SQL runs at (see [`Store::set_clock`]).
    clock: Option<i64>,
}

/// `md:NAME` or `motherduck:NAME`, DuckDB's names for a MotherDuck
/// database (Anomstack's `ANOMSTACK_DUCKDB_PATH` may hold one). DuckDB
/// would read them as a request for its extension, and fail saying so
/// in words that send the reader after the wrong problem.
fn is_motherduck(path: &Path) -> bool {
    let p = path.to_string_lossy().to_ascii_lowercase();
    p.starts_with("md:") || p.starts_with("motherduck:")
}

impl Store {
    /// Open (creating if missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_limited(path, EngineLimits::default())
    }

    /// Open the database at `path` (a DuckDB file, or a `postgres://` URL)
    /// with the engine's memory and threads capped (DuckDB's; a
    /// PostgreSQL server's are its own operator's).
    pub fn open_limited(path: &Path, limits: EngineLimits) -> Result<Self, StoreError> {
        Self::open_target(&DbTarget::from_path(path), limits)
    }

    /// Open `target` with the engine's memory and threads capped.
    pub fn open_target(target: &DbTarget, limits: EngineLimits) -> Result<Self, StoreError> {
        Ok(match target {
            DbTarget::Postgres(url) => Store::from_backend(Box::new(pg::PgStore::open(url)?)),
            DbTarget::File(path) if is_motherduck(path) => {
                // Its options may hold `motherduck_token`: never said.
                let shown = path.to_string_lossy();
                return Err(StoreError::MotherDuck {
                    path: shown.split('?').next().unwrap_or_default().to_string(),
                });
            }
            DbTarget::File(path) => {
                Store::from_backend(Box::new(duck::DuckStore::open_limited(path, limits)?))
            }
        })
    }

    /// An in-memory database, for tests and dry runs.
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Store::from_backend(Box::new(duck::DuckStore::in_memory()?)))
    }

    /// Wrap a backend built elsewhere.
    pub fn from_backend(backend: Box<dyn Backend>) -> Self {
        Store {
            backend,
            stop: Arc::new(AtomicBool::new(false)),
            confined: ConfinedSettings::default(),
            clock: None,
        }
    }

    /// The same store, running the metrics folder's SQL under `settings`.
    pub fn with_confined_settings(mut self, settings: ConfinedSettings) -> Self {
        self.confined = settings;
        self
    }

    pub fn confined_settings(&self) -> &ConfinedSettings {
        &self.confined
    }

    /// Run the metrics folder's SQL at `now_us` (µs since 1970, UTC): its
    /// `now()`, `current_timestamp`, `current_date` and their relatives
    /// return it, so the shipped templates work unchanged on history of any
    /// age (a replay, a backtest, a caught-up tick). None: the real clock.
    /// Returns the clock it replaces.
    pub fn set_clock(&mut self, now_us: Option<i64>) -> Option<i64> {
        std::mem::replace(&mut self.clock, now_us)
    }

    /// The instant the run is at, when it is not the real clock.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// Another connection to the same database, for work on another
    /// thread.
    pub fn try_clone(&self) -> Result<Self, StoreError> {
        Ok(Store::from_backend(self.backend.try_clone()?).with_confined_settings(self.confined))
    }

    /// Run one query of batch `batch`'s SQL (a template of the metrics
    /// folder, or its `ingest_sql`) over the batch's rows of `table_key`,
    /// in a scratch database of its own ([`confined`]); its rows, within
    /// `caps`. It can read nothing else and change nothing.
    pub fn query_batch_sql(
        &self,
        table_key: &TableKey,
        batch: &str,
        sql: &str,
        caps: ResultCaps,
    ) -> Result<Vec<RecordBatch>, StoreError> {
        let table = table_key;
        let own = (!self.confined.reads_other_batches).then_some(batch);
        let statement = confined::Statement {
            table,
            sql,
            settings: &self.confined,
            stop: Some(self.stop.clone()),
            now_us: self.clock,
        };
        let backend = &self.backend;
        confined::query(
            &statement,
            &mut |each| backend.stream_rows(table_key, own, each),
            caps,
        )
    }

    /// Run batch `batch`'s `delete_sql` over its own rows of `table_key` in
    /// a scratch database, then delete from the store the rows it removed
    /// there (only ever rows of `batch`). Returns how many.
    pub fn delete_batch_sql(
        &mut self,
        table_key: &TableKey,
        batch: &str,
        sql: &str,
    ) -> Result<usize, StoreError> {
        let table = table_key;
        let statement = confined::Statement {
            table,
            sql,
            settings: &self.confined,
            stop: Some(self.stop.clone()),
            now_us: self.clock,
        };
        self.backend.delete_picked(table_key, batch, &mut |rows| {
            confined::delete(&statement, rows)
        })
    }

    /// What the database takes on disk, if it is on disk.
    pub fn size_bytes(&self) -> Option<u64> {
        self.backend.size_bytes()
    }

    /// Whether a write could be made now (for readiness checks).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.backend.check_writable()
    }

    /// The concrete backend, when it is a `B`.
    pub fn backend<B: Backend + 'static>(&self) -> Option<&B> {
        self.backend.as_any().downcast_ref::<B>()
    }

    /// Run `work` for at most `limit`. Past it, the statement running is
    /// stopped (and any started after, until `work` returns) and
    /// [`Store::check_time`] fails, so native code between statements
    /// stops too. Returns what `work` returned and whether the limit ran
    /// out.
    pub fn with_time_limit<R>(
        &mut self,
        limit: Duration,
        work: impl FnOnce(&mut Store) -> R,
    ) -> (R, bool) {
        self.stop.store(false, Ordering::SeqCst);
        let (interrupt, stop) = (self.backend.interrupter(), self.stop.clone());
        let (done, wait) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            stop.store(true, Ordering::SeqCst);
            // Again and again: a statement started after one interrupt is
            // stopped by the next.
            loop {
                interrupt();
                if wait.recv_timeout(Duration::from_millis(50))
                    != Err(mpsc::RecvTimeoutError::Timeout)
                {
                    return;
                }
            }
        });
        let out = work(self);
        drop(done);
        let _ = watchdog.join();
        (out, self.stop.swap(false, Ordering::SeqCst))
    }

    /// Fails once a time limit set by [`Store::with_time_limit`] has run
    /// out, for long native work between statements.
    pub fn check_time(&self) -> Result<(), StoreError> {
        self.time_limit().check()
    }

    /// [`Store::check_time`] for work on other threads (a job's metrics on
    /// every core), which cannot hold the store itself.
    pub fn time_limit(&self) -> TimeLimit {
        TimeLimit(self.stop.clone())
    }
}

/// Whether the time limit of the work under way has run out.
#[derive(Clone)]
pub struct TimeLimit(Arc<AtomicBool>);

impl TimeLimit {
    pub fn check(&self) -> Result<(), StoreError> {
        if self.0.load(Ordering::SeqCst) {
            Err(StoreError::TimedOut)
        } else {
            Ok(())
        }
    }
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.backend.as_mut()
    }
}

//! The storage seam: what the jobs, the scheduler and the dashboard need
//! from a database, as traits ([`MetricsStore`], [`RunHistory`],
//! [`DashboardStore`]), and [`Store`], the handle they hold. DuckDB
//! ([`duck`]) is the one implementation; another engine is one more module
//! that implements [`Backend`] and one more arm in [`Store::open`].
//!
//! Nothing outside this module names a database crate or writes SQL; the
//! only SQL that reaches a backend from outside is the metrics folder's own
//! templates, through [`MetricsStore::query_template`] and
//! [`MetricsStore::execute_template`].

pub mod dashboard;
pub mod duck;
pub mod error;
pub mod metrics;
pub mod runs;
pub mod schema;
pub mod table_key;

use std::any::Any;
use std::ops::{Deref, DerefMut};
use std::path::Path;

pub use dashboard::{Anomaly, CardFigures, DashboardStore, Vote};
pub use error::StoreError;
pub use metrics::{MetricsStore, MetricsTx, NewestValue};
pub use runs::{Retention, RunFilter, RunHistory, RunRecord, RunStatus};
pub use schema::metrics_schema;
pub use table_key::TableKey;

/// Default database file, relative to the working directory.
pub const DEFAULT_DB: &str = "sandstack.duckdb";

/// Everything a database behind sandstack provides.
pub trait Backend: MetricsStore + RunHistory + DashboardStore + Send {
    /// Another connection to the same database, for work on another thread.
    fn try_clone(&self) -> Result<Box<dyn Backend>, StoreError>;

    /// For tests and tools that need the concrete backend.
    fn as_any(&self) -> &dyn Any;
}

/// The database handle the rest of sandstack holds: a [`Backend`] behind a
/// box, so callers never name the engine.
pub struct Store(Box<dyn Backend>);

impl Store {
    /// Open (creating if missing) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Store(Box::new(duck::DuckStore::open(path)?)))
    }

    /// An in-memory database, for tests and dry runs.
    pub fn in_memory() -> Result<Self, StoreError> {
        Ok(Store(Box::new(duck::DuckStore::in_memory()?)))
    }

    /// Wrap a backend built elsewhere.
    pub fn from_backend(backend: Box<dyn Backend>) -> Self {
        Store(backend)
    }

    /// Another connection to the same database, for work on another
    /// thread.
    pub fn try_clone(&self) -> Result<Self, StoreError> {
        Ok(Store(self.0.try_clone()?))
    }

    /// The concrete backend, when it is a `B`.
    pub fn backend<B: Backend + 'static>(&self) -> Option<&B> {
        self.0.as_any().downcast_ref::<B>()
    }
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut()
    }
}

//! The PostgreSQL backend: the store several workers share. The same
//! tables as DuckDB's (a long metrics table per `table_key`,
//! `sandstack_runs`, `sandstack_paused`) plus the fleet's
//! (`sandstack_workers`, `sandstack_ticks`), created by versioned
//! migrations ([`migrations`]); rows go in by binary `COPY` ([`metrics`]);
//! the metrics folder's SQL runs in read-only transactions that are rolled
//! back, and its results come back as Arrow ([`arrow_rows`]).

mod arrow_rows;
mod claims;
pub mod cluster;
mod dashboard;
mod generated;
mod metrics;
mod micros;
mod migrations;
mod runs;
pub mod source;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::cell::{RefCell, RefMut};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::{Client, Config, NoTls};

use super::{Backend, StoreError};

/// The server's own words for a failed statement (the client's `Display`
/// says only "db error"), with its detail and hint.
pub(crate) fn engine_words(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => {
            let mut words = d.message().to_string();
            if let Some(detail) = d.detail() {
                words.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = d.hint() {
                words.push_str(&format!(" (hint: {hint})"));
            }
            words
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Wrap a PostgreSQL error with what was being done.
pub(crate) fn pg_err(context: impl Into<String>) -> impl FnOnce(postgres::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError::Db {
        context,
        source: engine_words(&e).into(),
    }
}

/// Whether `db` names a PostgreSQL database rather than a DuckDB file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// `url` without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            // A password may also come as a query parameter.
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let hidden = k.eq_ignore_ascii_case("password");
                    (
                        k.into_owned(),
                        if hidden { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => "a postgres:// URL that does not parse".into(),
    }
}

/// A table key quoted as PostgreSQL resolves the unquoted name in the
/// metrics folder's SQL (`FROM {{ table_key }}` folds to lower case).
fn quoted(key: &super::TableKey) -> String {
    let key = super::TableKey {
        schema: key.schema.as_ref().map(|s| s.to_lowercase()),
        table: key.table.to_lowercase(),
    };
    key.quoted()
}

type Manager = r2d2_postgres::PostgresConnectionManager<NoTls>;
type Pooled = r2d2_postgres::r2d2::PooledConnection<Manager>;

/// Connections a process keeps at most: the scheduler's, its history's,
/// the fleet's and the dashboard's, one per running job and one per
/// dashboard request in flight.
const POOL_MAX: u32 = 32;

pub struct PgStore {
    /// This handle's connection, from the pool; None only while dropping.
    client: RefCell<Option<Pooled>>,
    /// Shared by the handles of one process; None only while dropping.
    /// (The pool is a handle too; the Arc tells which of ours is last.)
    pool: Option<Arc<r2d2_postgres::r2d2::Pool<Manager>>>,
    /// The URL without its password, for errors.
    label: String,
    /// Metrics tables this process has made sure of (shared by the
    /// handles of one pool).
    tables: Arc<Mutex<HashSet<String>>>,
}

impl PgStore {
    /// Connect to `url` and bring its schema up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let label = redacted(url);
        let open_error = |e: postgres::Error| StoreError::Connect {
            url: label.clone(),
            source: engine_words(&e).into(),
        };
        let mut config: Config = url.parse().map_err(open_error)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("sandstack");
        // Stored timestamps are UTC without a zone, as in DuckDB.
        let options = match config.get_options() {
            Some(o) => format!("{o} -c TimeZone=UTC"),
            None => "-c TimeZone=UTC".to_string(),
        };
        config.options(&options);
        // A first connection of its own says at once what is wrong (the
        // pool would retry until its timeout), and migrates.
        let mut first = config.connect(NoTls).map_err(open_error)?;
        migrations::apply(&mut first)?;
        drop(first);
        let pool = r2d2_postgres::r2d2::Pool::builder()
            .max_size(POOL_MAX)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(15))
            .build(Manager::new(config, NoTls))
            .map_err(|e| StoreError::Connect {
                url: label.clone(),
                source: e.to_string().into(),
            })?;
        PgStore::from_pool(Arc::new(pool), label, Arc::default())
    }

    /// A handle with a connection of its own from `pool`.
    fn from_pool(
        pool: Arc<r2d2_postgres::r2d2::Pool<Manager>>,
        label: String,
        tables: Arc<Mutex<HashSet<String>>>,
    ) -> Result<Self, StoreError> {
        let store = PgStore {
            client: RefCell::new(None),
            pool: Some(pool),
            label,
            tables,
        };
        store.conn()?;
        Ok(store)
    }

    /// The connection, for one statement or transaction at a time; taken
    /// again from the pool first if the server closed it (a restart, a
    /// terminated backend), so one lost connection is one failed
    /// statement, not a dead worker.
    fn conn(&self) -> Result<RefMut<'_, Client>, StoreError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            if slot.is_some() {
                tracing::warn!("PostgreSQL: the connection was closed; connecting again");
            }
            let fresh = self.pool()?.get().map_err(|e| StoreError::Connect {
                url: self.label.clone(),
                source: e.to_string().into(),
            })?;
            if let Some(closed) = slot.replace(fresh) {
                drop_off_runtime(closed);
            }
        }
        Ok(RefMut::map(slot, |c| {
            &mut **c.as_mut().expect("a connection was just put in place")
        }))
    }
}

impl PgStore {
    /// The tables made sure of, whatever a panicking holder left.
    fn known_tables(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pool(&self) -> Result<&Arc<r2d2_postgres::r2d2::Pool<Manager>>, StoreError> {
        self.pool.as_ref().ok_or_else(|| StoreError::Sql {
            context: "connecting".into(),
            message: "the store is being closed".into(),
        })
    }
}

/// Closing a connection, or a pool's idle ones, blocks on the client's
/// own runtime, which tokio refuses inside an async context: close them
/// on a thread of their own then.
fn drop_off_runtime<T: Send + 'static>(closing: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::spawn(move || drop(closing)).join();
    } else {
        drop(closing);
    }
}

impl Drop for PgStore {
    /// A healthy connection just goes back to the pool; a closed one, and
    /// the pool when this is its last handle, close off the async context.
    fn drop(&mut self) {
        if let Some(conn) = self.client.get_mut().take() {
            if conn.is_closed() {
                drop_off_runtime(conn);
            }
        }
        // The last handle's pool closes its idle connections.
        if let Some(Ok(last)) = self.pool.take().map(Arc::try_unwrap) {
            drop_off_runtime(last);
        }
    }
}

impl Backend for PgStore {
    /// Another connection from the same pool.
    fn try_clone(&self) -> Result<Box<dyn Backend>, StoreError> {
        Ok(Box::new(PgStore::from_pool(
            self.pool()?.clone(),
            self.label.clone(),
            self.tables.clone(),
        )?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Cancels the statement running, through a connection of its own.
    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync> {
        let cancel = self.conn().ok().map(|c| c.cancel_token());
        Arc::new(move || {
            if let Some(c) = &cancel {
                let _ = c.cancel_query(NoTls);
            }
        })
    }

    /// The whole database's size (the server's, not this machine's disk).
    fn size_bytes(&self) -> Option<u64> {
        self.conn()
            .ok()?
            .query_one("SELECT pg_database_size(current_database())", &[])
            .ok()
            .and_then(|r| r.try_get::<_, i64>(0).ok())
            .map(|n| n.max(0) as u64)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(pg_err("checking that the database takes writes"))?;
        tx.batch_execute("CREATE TEMPORARY TABLE sandstack_ready_probe (x integer)")
            .map_err(pg_err("checking that the database takes writes"))?;
        tx.rollback()
            .map_err(pg_err("checking that the database takes writes"))
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn urls_are_told_from_files_and_passwords_hidden() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://h/db"));
        assert!(!is_url("metrics.duckdb"));
        assert!(!is_url("./postgres/metrics.duckdb"));
        let shown = redacted("postgres://alice:s3cret@db.internal:5433/metrics?sslmode=disable");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("db.internal:5433/metrics"));
        let shown = redacted("postgres://db.internal/metrics?user=a&password=s3cret");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            redacted("postgres://a:pw@[bad"),
            "a postgres:// URL that does not parse"
        );
    }
}

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
#[cfg(test)]
mod tests;

use std::any::Any;
use std::cell::{RefCell, RefMut};
use std::collections::HashSet;
use std::sync::Arc;
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

pub struct PgStore {
    /// None only while dropping.
    client: RefCell<Option<Client>>,
    url: String,
    cancel: postgres::CancelToken,
    /// Metrics tables this connection has made sure of.
    tables: RefCell<HashSet<String>>,
}

impl PgStore {
    /// Connect to `url` and bring its schema up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(url, true)
    }

    /// Connect; `migrate`: bring the schema up to date first (another
    /// connection of this process already has).
    fn connect(url: &str, migrate: bool) -> Result<Self, StoreError> {
        let open_error = |e: postgres::Error| StoreError::Open {
            engine: "PostgreSQL",
            path: redacted(url).into(),
            source: engine_words(&e).into(),
        };
        let mut config: Config = url.parse().map_err(open_error)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("sandstack");
        let mut client = config.connect(NoTls).map_err(open_error)?;
        // Stored timestamps are UTC without a zone, as in DuckDB.
        client
            .batch_execute("SET TimeZone = 'UTC'")
            .map_err(open_error)?;
        if migrate {
            migrations::apply(&mut client)?;
            warn_if_superuser(&mut client);
        }
        let cancel = client.cancel_token();
        Ok(PgStore {
            client: RefCell::new(Some(client)),
            url: url.to_string(),
            cancel,
            tables: RefCell::new(HashSet::new()),
        })
    }

    /// The connection, for one statement or transaction at a time; made
    /// again first if the server closed it (a restart, a terminated
    /// backend), so one lost connection is one failed statement, not a
    /// dead worker.
    fn conn(&self) -> Result<RefMut<'_, Client>, StoreError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            tracing::warn!("PostgreSQL: the connection was closed; connecting again");
            let fresh = PgStore::connect(&self.url, false)?;
            *slot = fresh.client.borrow_mut().take();
            self.tables.borrow_mut().clear();
        }
        Ok(RefMut::map(slot, |c| {
            c.as_mut().expect("a client was just put in place")
        }))
    }
}

impl Drop for PgStore {
    /// Closing blocks on the client's own runtime, which tokio refuses
    /// inside an async context: close it on a thread of its own then.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(move || drop(client)).join();
            } else {
                drop(client);
            }
        }
    }
}

/// What the operator should revoke so the metrics folder's SQL cannot end
/// or cancel other sessions of sandstack's role (PostgreSQL lets a role
/// signal its own sessions).
pub const REVOKE_SIGNALS: &str =
    "REVOKE EXECUTE ON FUNCTION pg_terminate_backend(integer, bigint), \
     pg_cancel_backend(integer) FROM PUBLIC";

/// Batch SQL runs read-only, but a superuser's read-only query can still
/// read server files (`pg_read_file`), and any role's can end its own
/// other sessions; say so once.
fn warn_if_superuser(client: &mut Client) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if WARNED.is_completed() {
        return;
    }
    WARNED.call_once(|| {});
    let can_signal = client
        .query_one(
            "SELECT has_function_privilege('pg_terminate_backend(integer, bigint)', 'EXECUTE')",
            &[],
        )
        .and_then(|r| r.try_get::<_, bool>(0))
        .unwrap_or(false);
    if can_signal {
        tracing::warn!(
            "the metrics folder's SQL can end this role's other PostgreSQL sessions (the fleet's connections; \
             each would be made again, after one failed statement); to forbid it, as a superuser in this \
             database: {REVOKE_SIGNALS}"
        );
    }
    let superuser = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .and_then(|r| r.try_get::<_, bool>(0))
        .unwrap_or(false);
    if superuser {
        tracing::warn!(
            "connected to PostgreSQL as a superuser: the metrics folder's SQL could read the server's files; \
             connect as a role that owns only sandstack's tables (README, \"Scaling out\")"
        );
    }
}

impl Backend for PgStore {
    fn try_clone(&self) -> Result<Box<dyn Backend>, StoreError> {
        Ok(Box::new(PgStore::connect(&self.url, false)?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    /// Cancels the statement running, through a connection of its own.
    fn interrupter(&self) -> Arc<dyn Fn() + Send + Sync> {
        let cancel = self.cancel.clone();
        Arc::new(move || {
            let _ = cancel.cancel_query(NoTls);
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

//! `db: postgres`: a PostgreSQL server (any, not only a store), named by
//! `ANOMSTACK_POSTGRES_HOST`, `..._PORT` (or Anomstack's `..._FORWARD_PORT`),
//! `..._USER`, `..._PASSWORD` and `..._DB`. The query runs in a read-only
//! transaction with `statement_timeout` (`store::pg::source`), so the
//! server refuses writes and stops a query past its time itself.

use arrow::record_batch::RecordBatch;

use super::{optional, required, Env, QueryLimits, WarehouseError};
use crate::store::pg::source::{read_only_query, SourceQueryError, SourceServer};

pub const NAME: &str = "postgres";
const HOST_ENV: &str = "ANOMSTACK_POSTGRES_HOST";
const PORT_ENV: &str = "ANOMSTACK_POSTGRES_PORT";
const FORWARD_PORT_ENV: &str = "ANOMSTACK_POSTGRES_FORWARD_PORT";
const USER_ENV: &str = "ANOMSTACK_POSTGRES_USER";
const PASSWORD_ENV: &str = "ANOMSTACK_POSTGRES_PASSWORD";
const DB_ENV: &str = "ANOMSTACK_POSTGRES_DB";

pub struct Postgres {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: Option<String>,
}

impl Postgres {
    pub fn from_env(env: &Env) -> Result<Postgres, WarehouseError> {
        let (port_var, port) = match (optional(env, PORT_ENV), optional(env, FORWARD_PORT_ENV)) {
            (Some(p), _) => (PORT_ENV, p),
            (None, Some(p)) => (FORWARD_PORT_ENV, p),
            (None, None) => (PORT_ENV, "5432".into()),
        };
        let port = port.parse().map_err(|_| WarehouseError::Setting {
            db: NAME,
            variable: port_var,
            message: format!("`{port}` is not a port number"),
        })?;
        Ok(Postgres {
            host: optional(env, HOST_ENV).unwrap_or_else(|| "localhost".into()),
            port,
            user: required(env, NAME, USER_ENV, "the user sandstack connects as")?,
            password: env.get(PASSWORD_ENV).filter(|p| !p.is_empty()).cloned(),
            dbname: optional(env, DB_ENV),
        })
    }
}

impl super::Source for Postgres {
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        let server = SourceServer {
            host: &self.host,
            port: self.port,
            user: &self.user,
            password: self.password.as_deref(),
            dbname: self.dbname.as_deref(),
        };
        let batch = read_only_query(
            &server,
            sql,
            limits.timeout,
            limits.max_rows,
            limits.max_bytes,
        )
        .map_err(|e| match e {
            SourceQueryError::Connect { .. } => WarehouseError::Unavailable {
                db: NAME,
                message: e.to_string(),
            },
            SourceQueryError::Query(message) => WarehouseError::Query {
                db: NAME,
                message: super::words(&message),
            },
            SourceQueryError::ReadOnly(message) => WarehouseError::NotReadOnly {
                db: NAME,
                found: format!("a statement that writes ({})", super::words(&message)),
            },
            SourceQueryError::TimedOut => WarehouseError::timed_out(NAME, limits),
            SourceQueryError::TooManyRows => WarehouseError::too_many_rows(NAME, limits),
            SourceQueryError::TooLarge => WarehouseError::too_large(NAME, limits),
        })?;
        Ok(batch)
    }
}

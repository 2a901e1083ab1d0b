//! `db: clickhouse`: the server's HTTP interface, as Anomstack's
//! `ANOMSTACK_CLICKHOUSE_*` variables name it (host, port, user, password,
//! database; HTTPS on port 443 or 8443, or with `..._SECURE=true`). The
//! query runs with `readonly=2` (ClickHouse refuses writes and DDL, and
//! the statement is always one: the HTTP interface runs one per request)
//! and the batch's limits as ClickHouse settings; sandstack enforces the
//! same caps on what comes back, so a query's own `SETTINGS` cannot lift
//! them.

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use reqwest::Method;
use serde_json::Value;

use super::columns::{self, Cell, Columns, Kind};
use super::{optional, passing_status, server_words, Env, QueryLimits, WarehouseError};
use crate::cassette::tape::{Exchange, Tape, TapedHttp};
use crate::cassette::{Interaction, Scrubber};

pub const NAME: &str = "clickhouse";
const HOST_ENV: &str = "ANOMSTACK_CLICKHOUSE_HOST";
const PORT_ENV: &str = "ANOMSTACK_CLICKHOUSE_PORT";
const USER_ENV: &str = "ANOMSTACK_CLICKHOUSE_USER";
const PASSWORD_ENV: &str = "ANOMSTACK_CLICKHOUSE_PASSWORD";
const DATABASE_ENV: &str = "ANOMSTACK_CLICKHOUSE_DATABASE";
const SECURE_ENV: &str = "ANOMSTACK_CLICKHOUSE_SECURE";

/// What a replay may take from its cassette.
pub const REPLAY_SETTINGS: &[&str] = &[HOST_ENV, PORT_ENV, SECURE_ENV, DATABASE_ENV];

/// ClickHouse's error codes sandstack tells apart.
const TIMEOUT_EXCEEDED: &str = "159";
const TOO_MANY_ROWS_OR_BYTES: &str = "396";
const READONLY: &str = "164";
const AUTHENTICATION_FAILED: &str = "516";

pub struct ClickHouse {
    http: TapedHttp,
    base: url::Url,
    headers: Vec<(String, String)>,
}

impl ClickHouse {
    pub fn from_env(env: &Env, tape: Tape, scrub: &[String]) -> Result<ClickHouse, WarehouseError> {
        let setting = |variable, message: String| WarehouseError::Setting {
            db: NAME,
            variable,
            message,
        };
        let host = optional(env, HOST_ENV).unwrap_or_else(|| "localhost".into());
        let port: u16 = match optional(env, PORT_ENV) {
            Some(p) => p
                .parse()
                .map_err(|_| setting(PORT_ENV, format!("`{p}` is not a port number")))?,
            None => 8123,
        };
        let secure = match optional(env, SECURE_ENV).as_deref() {
            Some(v) => matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
            None => matches!(port, 443 | 8443),
        };
        let scheme = if secure { "https" } else { "http" };
        let mut base = url::Url::parse(&format!("{scheme}://placeholder:{port}/"))
            .map_err(|e| setting(PORT_ENV, e.to_string()))?;
        base.set_host(Some(&host))
            .map_err(|e| setting(HOST_ENV, format!("`{host}` is not a host name ({e})")))?;
        {
            let mut q = base.query_pairs_mut();
            if let Some(db) = optional(env, DATABASE_ENV) {
                q.append_pair("database", &db);
            }
        }
        let mut headers = Vec::new();
        if let Some(user) = optional(env, USER_ENV) {
            headers.push(("x-clickhouse-user".to_string(), user));
        }
        if let Some(password) = env.get(PASSWORD_ENV).filter(|p| !p.is_empty()) {
            headers.push(("x-clickhouse-key".to_string(), password.clone()));
        }
        let mut scrubber = Scrubber::new(env, scrub);
        scrubber.learn_headers(&headers);
        let http = TapedHttp::new(tape, scrubber)
            .map_err(|message| WarehouseError::Unavailable { db: NAME, message })?;
        Ok(ClickHouse {
            http,
            base,
            headers,
        })
    }
}

/// A column's kind from its ClickHouse type (wrappers taken off).
fn kind(ch_type: &str) -> Kind {
    let mut t = ch_type.trim();
    for wrapper in ["Nullable(", "LowCardinality("] {
        while let Some(inner) = t.strip_prefix(wrapper).and_then(|r| r.strip_suffix(')')) {
            t = inner;
        }
    }
    if t.starts_with("DateTime") {
        Kind::Timestamp
    } else if t.starts_with("Float")
        || t.starts_with("Int")
        || t.starts_with("UInt")
        || t.starts_with("Decimal")
    {
        Kind::Float
    } else if t == "Bool" {
        Kind::Bool
    } else {
        Kind::Text
    }
}

fn cell(kind: Kind, column: &str, v: &Value) -> Result<Cell, WarehouseError> {
    let bad = |what: &str| WarehouseError::Answer {
        db: NAME,
        message: format!(
            "column `{}`: `{}` is not {what}",
            crate::escape::log_line(column),
            crate::escape::truncate(&crate::escape::log_line(&v.to_string()), 40)
        ),
    };
    Ok(match (kind, v) {
        (_, Value::Null) => Cell::Null,
        (Kind::Float, Value::Number(n)) => Cell::Float(n.as_f64().ok_or_else(|| bad("a number"))?),
        // 64-bit integers and denormals (`nan`, `inf`) come quoted.
        (Kind::Float, Value::String(s)) => columns::float(NAME, column, s)?,
        (Kind::Bool, Value::Bool(b)) => Cell::Bool(*b),
        // With date_time_output_format=iso: `2026-01-02T03:04:05Z`.
        (Kind::Timestamp, Value::String(s)) => Cell::Timestamp(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| bad("an ISO timestamp"))?
                .timestamp_micros(),
        ),
        (Kind::Text, Value::String(s)) => Cell::Text(s.clone()),
        (Kind::Text, other) => Cell::Text(other.to_string()),
        _ => return Err(bad("of its column's type")),
    })
}

/// The error a failed answer means; ClickHouse names its error code in a
/// header (and answers most query errors with 500, so the code decides).
fn failure(answer: &Exchange, limits: &QueryLimits) -> WarehouseError {
    let code = answer
        .header("x-clickhouse-exception-code")
        .map(str::to_string);
    let message = format!("HTTP {}: {}", answer.status, server_words(&answer.body));
    match code.as_deref() {
        Some(TIMEOUT_EXCEEDED) => WarehouseError::timed_out(NAME, limits),
        // One code for both caps; its words say which.
        Some(TOO_MANY_ROWS_OR_BYTES) if message.contains("max bytes") => {
            WarehouseError::too_large(NAME, limits)
        }
        Some(TOO_MANY_ROWS_OR_BYTES) => WarehouseError::too_many_rows(NAME, limits),
        Some(READONLY) => WarehouseError::NotReadOnly {
            db: NAME,
            found: format!("a statement ClickHouse refused in read-only mode ({message})"),
        },
        Some(AUTHENTICATION_FAILED) => WarehouseError::Setting {
            db: NAME,
            variable: USER_ENV,
            message: format!("ClickHouse did not accept the user and password ({message})"),
        },
        Some(_) => WarehouseError::Query { db: NAME, message },
        None if answer.status == 401 || answer.status == 403 => WarehouseError::Setting {
            db: NAME,
            variable: USER_ENV,
            message: format!("ClickHouse did not accept the user and password ({message})"),
        },
        None if passing_status(answer.status) => WarehouseError::Unavailable { db: NAME, message },
        None => WarehouseError::Query { db: NAME, message },
    }
}

impl super::Source for ClickHouse {
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        let deadline = Instant::now() + limits.timeout;
        let mut url = self.base.clone();
        url.query_pairs_mut()
            .append_pair("default_format", "JSONCompact")
            .append_pair("readonly", "2")
            .append_pair(
                "max_execution_time",
                &limits.timeout.as_secs().max(1).to_string(),
            )
            .append_pair("max_result_rows", &limits.max_rows.to_string())
            .append_pair("max_result_bytes", &limits.max_bytes.to_string())
            .append_pair("result_overflow_mode", "throw")
            .append_pair("date_time_output_format", "iso")
            .append_pair("output_format_json_quote_denormals", "1")
            // A query sandstack stops waiting for stops on the server too.
            .append_pair("cancel_http_readonly_queries_on_client_close", "1");
        let answer = super::send(
            &mut self.http,
            NAME,
            "ClickHouse",
            Method::POST,
            &url,
            &self.headers,
            sql.as_bytes(),
            deadline,
            limits,
        )?;
        if answer.status != 200 {
            return Err(failure(&answer, limits));
        }
        // An error after the first rows is appended to a 200's body, so
        // a body that is not JSON shows its end.
        let value: Value = serde_json::from_slice(&answer.body).map_err(|_| {
            let tail = &answer.body[answer.body.len().saturating_sub(600)..];
            WarehouseError::Query {
                db: NAME,
                message: format!("the answer broke off: {}", server_words(tail)),
            }
        })?;
        let meta =
            value
                .get("meta")
                .and_then(Value::as_array)
                .ok_or_else(|| WarehouseError::Answer {
                    db: NAME,
                    message: "the answer has no `meta`".into(),
                })?;
        let mut columns = Columns::new(
            NAME,
            meta.iter()
                .map(|m| {
                    let name = m
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    (
                        name,
                        kind(m.get("type").and_then(Value::as_str).unwrap_or("")),
                    )
                })
                .collect(),
            limits,
        );
        for row in value
            .get("data")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let values = row.as_array().ok_or_else(|| WarehouseError::Answer {
                db: NAME,
                message: "a row of `data` is not an array".into(),
            })?;
            let mut cells = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                let k = columns.kinds().get(i).copied().unwrap_or(Kind::Text);
                let name = columns.names().get(i).cloned().unwrap_or_default();
                cells.push(cell(k, &name, v)?);
            }
            columns.push(cells)?;
        }
        columns.finish()
    }

    fn replay_settings(&self) -> Env {
        let mut env = Env::from([
            (
                HOST_ENV.to_string(),
                self.base.host_str().unwrap_or_default().to_string(),
            ),
            (
                PORT_ENV.to_string(),
                self.base
                    .port_or_known_default()
                    .unwrap_or(8123)
                    .to_string(),
            ),
            (
                SECURE_ENV.to_string(),
                (self.base.scheme() == "https").to_string(),
            ),
        ]);
        if let Some((_, db)) = self.base.query_pairs().find(|(k, _)| k == "database") {
            env.insert(DATABASE_ENV.into(), db.into_owned());
        }
        env
    }

    fn take_interactions(&mut self) -> Vec<Interaction> {
        self.http.take_interactions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_are_read_through_their_wrappers() {
        assert_eq!(kind("Nullable(DateTime64(3, 'UTC'))"), Kind::Timestamp);
        assert_eq!(kind("LowCardinality(Nullable(String))"), Kind::Text);
        assert_eq!(kind("UInt64"), Kind::Float);
        assert_eq!(kind("Decimal(18, 4)"), Kind::Float);
        assert_eq!(kind("Bool"), Kind::Bool);
        assert_eq!(kind("Date"), Kind::Text);
    }

    #[test]
    fn values_read_as_json_compact_sends_them() {
        assert_eq!(
            cell(Kind::Float, "v", &json!("18446744073709551615")).expect("u64"),
            Cell::Float(1.8446744073709552e19)
        );
        assert_eq!(
            cell(Kind::Float, "v", &json!(1.25)).expect("f"),
            Cell::Float(1.25)
        );
        assert!(
            matches!(cell(Kind::Float, "v", &json!("nan")).expect("nan"), Cell::Float(f) if f.is_nan())
        );
        assert_eq!(
            cell(Kind::Timestamp, "t", &json!("2026-01-02T03:04:05.5Z")).expect("ts"),
            Cell::Timestamp(1_767_323_045_500_000)
        );
        let e = cell(Kind::Timestamp, "t", &json!("2026-01-02 03:04:05")).unwrap_err();
        assert!(e.to_string().contains("not an ISO timestamp"), "{e}");
    }
}

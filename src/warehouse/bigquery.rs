//! `db: bigquery`: the REST API's `jobs.query`, then `getQueryResults`
//! page by page, as a service account (Anomstack's
//! `ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS`, a key file, or `..._JSON`,
//! the key itself; `ANOMSTACK_GCP_PROJECT_ID`, else the key's project).
//! Before it runs, the query is dry-run and refused unless BigQuery calls
//! it a `SELECT` (a script or DML is another statement type). The token
//! exchange is never recorded; a replay needs no key.

use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::columns::{self, Cell, Columns, Kind};
use super::jwt::RsaKey;
use super::{left, optional, passing_status, server_words, Env, QueryLimits, WarehouseError};
use crate::cassette::tape::{Exchange, Tape, TapedHttp};
use crate::cassette::{Interaction, Scrubber};

pub const NAME: &str = "bigquery";
/// The operator's override of the API's root (a test server, an emulator).
pub const ENDPOINT_ENV: &str = "SANDSTACK_BIGQUERY_ENDPOINT";
const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";
const KEY_FILE_ENV: &str = "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS";
const KEY_JSON_ENV: &str = "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON";
const PROJECT_ENV: &str = "ANOMSTACK_GCP_PROJECT_ID";
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// The operator's ceiling on the bytes one query may bill (default 10 GiB).
pub const MAX_BYTES_BILLED_ENV: &str = "SANDSTACK_BIGQUERY_MAX_BYTES_BILLED";
const DEFAULT_MAX_BYTES_BILLED: u64 = 10 << 30;
/// What a replay may take from its cassette.
pub const REPLAY_SETTINGS: &[&str] = &[PROJECT_ENV, ENDPOINT_ENV, MAX_BYTES_BILLED_ENV];
/// Rows asked for per page.
const PAGE_ROWS: usize = 10_000;
/// Largest key file read.
const MAX_KEY_BYTES: u64 = 64 << 10;
/// Largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// The parts of a service account key sandstack uses.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

struct Credentials {
    key: RsaKey,
    client_email: String,
    key_id: Option<String>,
    token_uri: url::Url,
}

pub struct BigQuery {
    http: TapedHttp,
    endpoint: url::Url,
    project: String,
    credentials: Option<Credentials>,
    token: Option<String>,
    max_bytes_billed: u64,
}

impl BigQuery {
    /// Read the settings; on a replay no key is needed.
    pub fn from_env(env: &Env, tape: Tape, scrub: &[String]) -> Result<BigQuery, WarehouseError> {
        let setting = |variable, message: String| WarehouseError::Setting {
            db: NAME,
            variable,
            message,
        };
        let replaying = super::offline(&tape);
        let max_bytes_billed = match optional(env, MAX_BYTES_BILLED_ENV) {
            Some(v) => v.parse().map_err(|_| {
                setting(
                    MAX_BYTES_BILLED_ENV,
                    format!("`{v}` is not a number of bytes"),
                )
            })?,
            None => DEFAULT_MAX_BYTES_BILLED,
        };
        let account = match read_key(env)? {
            Some(a) => Some(a),
            None if replaying => None,
            None => {
                return Err(WarehouseError::Missing {
                    db: NAME,
                    variable: KEY_FILE_ENV,
                    what: "the path of a service account's JSON key (or set \
                           ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON to the key itself)",
                })
            }
        };
        let project = optional(env, PROJECT_ENV)
            .or_else(|| account.as_ref().and_then(|a| a.project_id.clone()))
            .ok_or(WarehouseError::Missing {
                db: NAME,
                variable: PROJECT_ENV,
                what: "the project queries run in (the key names none)",
            })?;
        let endpoint = optional(env, ENDPOINT_ENV).unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let endpoint = url::Url::parse(&endpoint)
            .map_err(|e| setting(ENDPOINT_ENV, format!("not a URL ({e})")))?;
        let credentials = match account {
            Some(a) => {
                let key = RsaKey::from_pem(&a.private_key)
                    .map_err(|m| setting(KEY_FILE_ENV, format!("the key's private_key: {m}")))?;
                let token_uri = a
                    .token_uri
                    .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
                let token_uri = url::Url::parse(&token_uri)
                    .map_err(|e| setting(KEY_FILE_ENV, format!("token_uri is not a URL ({e})")))?;
                Some(Credentials {
                    key,
                    client_email: a.client_email,
                    key_id: a.private_key_id,
                    token_uri,
                })
            }
            None => None,
        };
        let mut scrubber = Scrubber::new(env, scrub);
        if let Some(c) = &credentials {
            scrubber.learn_headers(&[("authorization".into(), c.client_email.clone())]);
        }
        let http = TapedHttp::new(tape, scrubber)
            .map_err(|message| WarehouseError::Unavailable { db: NAME, message })?;
        Ok(BigQuery {
            http,
            endpoint,
            project,
            credentials,
            token: None,
            max_bytes_billed,
        })
    }

    /// An access token for the service account (none on a replay).
    fn authorization(
        &mut self,
        deadline: Instant,
    ) -> Result<Vec<(String, String)>, WarehouseError> {
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        if self.http.offline() {
            return Ok(headers);
        }
        if self.token.is_none() {
            let Some(c) = &self.credentials else {
                return Err(WarehouseError::Missing {
                    db: NAME,
                    variable: KEY_FILE_ENV,
                    what: "the path of a service account's JSON key",
                });
            };
            let now = chrono::Utc::now().timestamp();
            let assertion = c
                .key
                .sign(
                    &json!({
                        "iss": c.client_email,
                        "scope": SCOPE,
                        "aud": c.token_uri.as_str(),
                        "iat": now,
                        "exp": now + 3600,
                    }),
                    c.key_id.as_deref(),
                )
                .map_err(|message| WarehouseError::Setting {
                    db: NAME,
                    variable: KEY_FILE_ENV,
                    message,
                })?;
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                .append_pair("assertion", &assertion)
                .finish();
            let answer = self
                .http
                .send_unrecorded(
                    "Google's token endpoint",
                    &c.token_uri,
                    &[(
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    )],
                    body.as_bytes(),
                    left(deadline),
                    MAX_TOKEN_ANSWER,
                )
                .map_err(|e| WarehouseError::Tape(e, NAME))?;
            if answer.status != 200 {
                // The account's address is scrubbed from cassettes; not shown here either.
                let message = format!(
                    "Google's token endpoint refused the service account key (HTTP {}): {}",
                    answer.status,
                    server_words(&answer.body)
                );
                return Err(if passing_status(answer.status) {
                    WarehouseError::Unavailable { db: NAME, message }
                } else {
                    WarehouseError::Setting {
                        db: NAME,
                        variable: KEY_FILE_ENV,
                        message,
                    }
                });
            }
            let token = serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("access_token")?.as_str().map(str::to_string))
                .ok_or_else(|| WarehouseError::Answer {
                    db: NAME,
                    message: "the token endpoint's answer has no access_token".into(),
                })?;
            self.http
                .learn_secret_headers(&[("authorization".into(), token.clone())]);
            self.token = Some(token);
        }
        if let Some(t) = &self.token {
            headers.push(("authorization".into(), format!("Bearer {t}")));
        }
        Ok(headers)
    }

    /// The API's URL for `segments` under the project; each segment is
    /// escaped (a job id comes from the server).
    fn api(&self, segments: &[&str]) -> Result<url::Url, WarehouseError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|_| WarehouseError::Setting {
                db: NAME,
                variable: ENDPOINT_ENV,
                message: "is not a base URL".into(),
            })?
            .pop_if_empty()
            .extend(["bigquery", "v2", "projects", &self.project])
            .extend(segments);
        Ok(url)
    }

    /// One call to the API; an error status becomes the error it means.
    fn call(
        &mut self,
        method: Method,
        url: &url::Url,
        body: Option<&Value>,
        deadline: Instant,
        limits: &QueryLimits,
    ) -> Result<Value, WarehouseError> {
        if Instant::now() >= deadline {
            return Err(WarehouseError::timed_out(NAME, limits));
        }
        let headers = self.authorization(deadline)?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let answer = super::send(
            &mut self.http,
            NAME,
            "BigQuery",
            method,
            url,
            &headers,
            body.as_bytes(),
            deadline,
            limits,
        )?;
        read_answer(answer)
    }
}

/// The service account key the operator named, if any.
fn read_key(env: &Env) -> Result<Option<ServiceAccount>, WarehouseError> {
    let setting = |variable, message: String| WarehouseError::Setting {
        db: NAME,
        variable,
        message,
    };
    let (text, variable) = if let Some(path) = optional(env, KEY_FILE_ENV) {
        let text =
            crate::config::folder_files::read_regular(std::path::Path::new(&path), MAX_KEY_BYTES)
                .map_err(|m| setting(KEY_FILE_ENV, format!("cannot read {path}: {m}")))?;
        (text, KEY_FILE_ENV)
    } else if let Some(text) = optional(env, KEY_JSON_ENV) {
        (text, KEY_JSON_ENV)
    } else {
        return Ok(None);
    };
    serde_json::from_str::<ServiceAccount>(&text)
        .map(Some)
        .map_err(|e| {
            setting(
                variable,
                format!(
                    "not a service account's JSON key ({}): download one from the Cloud console's \
                     IAM > Service accounts > Keys",
                    // serde's message may quote the key's text; say only where.
                    format_args!("line {}, column {}", e.line(), e.column())
                ),
            )
        })
}

/// The JSON of a 2xx answer, or the error an error answer means.
fn read_answer(answer: Exchange) -> Result<Value, WarehouseError> {
    let value: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if (200..300).contains(&answer.status) {
        return value.ok_or_else(|| WarehouseError::Answer {
            db: NAME,
            message: format!("not JSON: {}", server_words(&answer.body)),
        });
    }
    let message = value
        .as_ref()
        .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_string))
        .map(|m| super::words(&m))
        .unwrap_or_else(|| server_words(&answer.body));
    let message = format!("HTTP {}: {message}", answer.status);
    Err(if passing_status(answer.status) {
        WarehouseError::Unavailable { db: NAME, message }
    } else {
        WarehouseError::Query { db: NAME, message }
    })
}

/// A column's kind from its BigQuery type; a REPEATED or RECORD column
/// (arrays, structs) is read as its JSON text.
fn kind(field: &Value) -> Kind {
    if field.get("mode").and_then(Value::as_str) == Some("REPEATED") {
        return Kind::Text;
    }
    match field.get("type").and_then(Value::as_str).unwrap_or("") {
        "TIMESTAMP" => Kind::Timestamp,
        "FLOAT" | "FLOAT64" | "INTEGER" | "INT64" | "NUMERIC" | "BIGNUMERIC" => Kind::Float,
        "BOOLEAN" | "BOOL" => Kind::Bool,
        _ => Kind::Text,
    }
}

fn columns_of(schema: &Value, limits: &QueryLimits) -> Result<Columns, WarehouseError> {
    let fields = schema
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| WarehouseError::Answer {
            db: NAME,
            message: "the answer has no schema.fields".into(),
        })?;
    let columns = fields
        .iter()
        .map(|f| {
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (name, kind(f))
        })
        .collect();
    Ok(Columns::new(NAME, columns, limits))
}

/// A page's `rows` (`[{"f": [{"v": ...}]}]`) into `columns`.
fn push_rows(columns: &mut Columns, page: &Value) -> Result<(), WarehouseError> {
    let Some(rows) = page.get("rows").and_then(Value::as_array) else {
        return Ok(());
    };
    for row in rows {
        let values =
            row.get("f")
                .and_then(Value::as_array)
                .ok_or_else(|| WarehouseError::Answer {
                    db: NAME,
                    message: "a row has no `f`".into(),
                })?;
        let mut cells = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let v = v.get("v").unwrap_or(&Value::Null);
            let k = columns.kinds().get(i).copied().unwrap_or(Kind::Text);
            let name = columns.names().get(i).cloned().unwrap_or_default();
            cells.push(cell(k, &name, v)?);
        }
        columns.push(cells)?;
    }
    Ok(())
}

fn cell(kind: Kind, column: &str, v: &Value) -> Result<Cell, WarehouseError> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    let text = v.as_str();
    Ok(match (kind, text) {
        // With formatOptions.useInt64Timestamp, µs since the epoch.
        (Kind::Timestamp, Some(t)) => match t.parse::<i64>() {
            Ok(us) => Cell::Timestamp(us),
            Err(_) => match columns::seconds_text_to_micros(t) {
                Some(us) => Cell::Timestamp(us),
                None => {
                    return Err(WarehouseError::Answer {
                        db: NAME,
                        message: format!(
                            "column `{}`: `{}` is not a timestamp",
                            crate::escape::log_line(column),
                            crate::escape::log_line(t)
                        ),
                    })
                }
            },
        },
        (Kind::Float, Some(t)) => columns::float(NAME, column, t)?,
        (Kind::Bool, Some(t)) => Cell::Bool(t.eq_ignore_ascii_case("true")),
        (Kind::Text, Some(t)) => Cell::Text(t.to_string()),
        (_, None) => Cell::Text(v.to_string()),
    })
}

impl super::Source for BigQuery {
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        let deadline = Instant::now() + limits.timeout;
        // The dry run says what kind of statement this is, and costs nothing.
        let dry = self.call(
            Method::POST,
            &self.api(&["jobs"])?,
            Some(&json!({
                "configuration": {
                    "dryRun": true,
                    "query": {"query": sql, "useLegacySql": false},
                }
            })),
            deadline,
            limits,
        )?;
        let statement = dry
            .pointer("/statistics/query/statementType")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        if statement != "SELECT" {
            return Err(WarehouseError::NotReadOnly {
                db: NAME,
                found: format!(
                    "a {} statement (BigQuery's dry run)",
                    super::words(statement)
                ),
            });
        }
        let scanned = dry
            .pointer("/statistics/query/totalBytesProcessed")
            .and_then(Value::as_str)
            .and_then(|b| b.parse::<u64>().ok())
            .unwrap_or(0);
        if scanned > self.max_bytes_billed {
            return Err(WarehouseError::Query {
                db: NAME,
                message: format!(
                    "the query would scan {scanned} bytes, over the {} a query may bill \
                     (SANDSTACK_BIGQUERY_MAX_BYTES_BILLED, the operator's): narrow it, or raise the ceiling",
                    self.max_bytes_billed
                ),
            });
        }
        let timeout_ms = limits.timeout.as_millis().min(u128::from(u32::MAX)) as u64;
        let page_rows = PAGE_ROWS.min(limits.max_rows.saturating_add(1));
        let mut page = self.call(
            Method::POST,
            &self.api(&["queries"])?,
            Some(&json!({
                "query": sql,
                "useLegacySql": false,
                "timeoutMs": timeout_ms,
                "jobTimeoutMs": timeout_ms,
                "maximumBytesBilled": self.max_bytes_billed.to_string(),
                "maxResults": page_rows,
                "formatOptions": {"useInt64Timestamp": true},
            })),
            deadline,
            limits,
        )?;
        let job = page
            .pointer("/jobReference/jobId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let location = page
            .pointer("/jobReference/location")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut columns: Option<Columns> = None;
        loop {
            let complete = page.get("jobComplete").and_then(Value::as_bool) == Some(true);
            if complete {
                if columns.is_none() {
                    let schema = page.get("schema").unwrap_or(&Value::Null);
                    columns = Some(columns_of(schema, limits)?);
                }
                if let Some(c) = columns.as_mut() {
                    push_rows(c, &page)?;
                }
            }
            let token = page.get("pageToken").and_then(Value::as_str);
            if complete && token.is_none() {
                break;
            }
            let Some(job) = &job else {
                return Err(WarehouseError::Answer {
                    db: NAME,
                    message: "the answer has more to read but no jobReference.jobId".into(),
                });
            };
            let mut url = self.api(&["queries", job])?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("maxResults", &page_rows.to_string());
                q.append_pair("formatOptions.useInt64Timestamp", "true");
                let wait = super::left(deadline).min(Duration::from_secs(10));
                q.append_pair("timeoutMs", &wait.as_millis().to_string());
                if let Some(l) = &location {
                    q.append_pair("location", l);
                }
                if let (true, Some(t)) = (complete, token) {
                    q.append_pair("pageToken", t);
                }
            }
            match self.call(Method::GET, &url, None, deadline, limits) {
                Ok(next) => page = next,
                Err(e) => {
                    if e.is_timeout() {
                        self.cancel(job.clone(), location.clone());
                    }
                    return Err(e);
                }
            }
        }
        columns
            .ok_or_else(|| WarehouseError::Answer {
                db: NAME,
                message: "the job finished with no schema".into(),
            })?
            .finish()
    }

    fn replay_settings(&self) -> Env {
        let mut env = Env::from([(PROJECT_ENV.to_string(), self.project.clone())]);
        if self.endpoint.as_str().trim_end_matches('/') != DEFAULT_ENDPOINT {
            env.insert(ENDPOINT_ENV.into(), self.endpoint.to_string());
        }
        env
    }

    fn take_interactions(&mut self) -> Vec<Interaction> {
        self.http.take_interactions()
    }
}

impl BigQuery {
    /// Ask BigQuery to stop a job past its time (best effort).
    fn cancel(&mut self, job: String, location: Option<String>) {
        let Ok(mut url) = self.api(&["jobs", &job, "cancel"]) else {
            return;
        };
        if let Some(l) = location {
            url.query_pairs_mut().append_pair("location", &l);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let limits = QueryLimits {
            timeout: Duration::from_secs(5),
            max_rows: 0,
            max_bytes: 1 << 20,
        };
        if let Err(e) = self.call(Method::POST, &url, None, deadline, &limits) {
            tracing::warn!("could not cancel BigQuery job {job}: {e}");
        }
    }
}

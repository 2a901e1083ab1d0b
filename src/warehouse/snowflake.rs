//! `db: snowflake`: Snowflake's SQL API (`POST /api/v2/statements`, then
//! the statement's status and result partitions), as Anomstack's account,
//! user and warehouse (`ANOMSTACK_SNOWFLAKE_*`). The SQL API takes no
//! password: sandstack signs in with a key pair (`..._PRIVATE_KEY_PATH` or
//! `..._PRIVATE_KEY`) or a programmatic access token (`..._TOKEN`).
//!
//! One statement is all Snowflake will run (`MULTI_STATEMENT_COUNT=1`),
//! and it must start as a query does (`SELECT`, `WITH`, `SHOW`,
//! `DESCRIBE`); Snowflake has no read-only session, so the operator's role
//! is what finally bounds it (the README asks for one with SELECT only).

use std::io::Read;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use reqwest::Method;
use serde_json::{json, Value};

use super::columns::{self, Cell, Columns, Kind};
use super::jwt::RsaKey;
use super::{
    left, optional, passing_status, required, server_words, Env, QueryLimits, WarehouseError,
};
use crate::cassette::tape::{Exchange, Tape, TapedHttp};
use crate::cassette::{Interaction, Scrubber};

pub const NAME: &str = "snowflake";
/// The operator's override of the account's URL (a test server).
pub const ENDPOINT_ENV: &str = "SANDSTACK_SNOWFLAKE_ENDPOINT";
const ACCOUNT_ENV: &str = "ANOMSTACK_SNOWFLAKE_ACCOUNT";
const USER_ENV: &str = "ANOMSTACK_SNOWFLAKE_USER";
const PASSWORD_ENV: &str = "ANOMSTACK_SNOWFLAKE_PASSWORD";
const KEY_PATH_ENV: &str = "ANOMSTACK_SNOWFLAKE_PRIVATE_KEY_PATH";
const KEY_ENV: &str = "ANOMSTACK_SNOWFLAKE_PRIVATE_KEY";
const TOKEN_ENV: &str = "ANOMSTACK_SNOWFLAKE_TOKEN";
const MAX_KEY_BYTES: u64 = 64 << 10;
/// What a replay may take from its cassette.
pub const REPLAY_SETTINGS: &[&str] = &[
    ACCOUNT_ENV,
    USER_ENV,
    ENDPOINT_ENV,
    "ANOMSTACK_SNOWFLAKE_WAREHOUSE",
    "ANOMSTACK_SNOWFLAKE_ROLE",
    "ANOMSTACK_SNOWFLAKE_DATABASE",
    "ANOMSTACK_SNOWFLAKE_SCHEMA",
];

enum Auth {
    KeyPair {
        key: RsaKey,
        fingerprint: String,
    },
    Token(String),
    /// A replay: no request leaves the process.
    None,
}

pub struct Snowflake {
    http: TapedHttp,
    base: url::Url,
    account: String,
    user: String,
    auth: Auth,
    context: Vec<(&'static str, String)>,
}

impl Snowflake {
    pub fn from_env(env: &Env, tape: Tape, scrub: &[String]) -> Result<Snowflake, WarehouseError> {
        let setting = |variable, message: String| WarehouseError::Setting {
            db: NAME,
            variable,
            message,
        };
        let replaying = super::offline(&tape);
        let account = required(
            env,
            NAME,
            ACCOUNT_ENV,
            "the account identifier (as in https://ACCOUNT.snowflakecomputing.com)",
        )?;
        if !account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(setting(
                ACCOUNT_ENV,
                "an account identifier is letters, digits, `-`, `_` and `.`".into(),
            ));
        }
        let user = required(env, NAME, USER_ENV, "the user sandstack signs in as")?;
        let base = optional(env, ENDPOINT_ENV)
            .unwrap_or_else(|| format!("https://{account}.snowflakecomputing.com"));
        let base = url::Url::parse(&base)
            .map_err(|e| setting(ENDPOINT_ENV, format!("not a URL ({e})")))?;
        let auth = if replaying {
            Auth::None
        } else if let Some(token) = optional(env, TOKEN_ENV) {
            Auth::Token(token)
        } else {
            let pem = if let Some(path) = optional(env, KEY_PATH_ENV) {
                Some(
                    crate::config::folder_files::read_regular(
                        std::path::Path::new(&path),
                        MAX_KEY_BYTES,
                    )
                    .map_err(|m| setting(KEY_PATH_ENV, format!("cannot read {path}: {m}")))?,
                )
            } else {
                optional(env, KEY_ENV)
            };
            match pem {
                Some(pem) => {
                    let variable = if optional(env, KEY_PATH_ENV).is_some() {
                        KEY_PATH_ENV
                    } else {
                        KEY_ENV
                    };
                    let key = RsaKey::from_pem(&pem).map_err(|m| setting(variable, m))?;
                    let fingerprint = key.public_key_fingerprint().map_err(|m| setting(variable, m))?;
                    Auth::KeyPair { key, fingerprint }
                }
                None if optional(env, PASSWORD_ENV).is_some() => {
                    return Err(setting(
                        PASSWORD_ENV,
                        "Snowflake's SQL API takes no password: register a key pair for the user \
                         (ALTER USER ... SET RSA_PUBLIC_KEY) and set ANOMSTACK_SNOWFLAKE_PRIVATE_KEY_PATH, \
                         or set ANOMSTACK_SNOWFLAKE_TOKEN to a programmatic access token"
                            .into(),
                    ))
                }
                None => {
                    return Err(WarehouseError::Missing {
                        db: NAME,
                        variable: KEY_PATH_ENV,
                        what: "the user's private key, a PKCS#8 PEM file (or set \
                               ANOMSTACK_SNOWFLAKE_TOKEN to a programmatic access token)",
                    })
                }
            }
        };
        let context = [
            ("warehouse", "ANOMSTACK_SNOWFLAKE_WAREHOUSE"),
            ("role", "ANOMSTACK_SNOWFLAKE_ROLE"),
            ("database", "ANOMSTACK_SNOWFLAKE_DATABASE"),
            ("schema", "ANOMSTACK_SNOWFLAKE_SCHEMA"),
        ]
        .into_iter()
        .filter_map(|(k, var)| optional(env, var).map(|v| (k, v)))
        .collect();
        let mut scrubber = Scrubber::new(env, scrub);
        if let Auth::Token(t) = &auth {
            scrubber.learn_headers(&[("authorization".into(), t.clone())]);
        }
        let http = TapedHttp::new(tape, scrubber)
            .map_err(|message| WarehouseError::Unavailable { db: NAME, message })?;
        Ok(Snowflake {
            http,
            base,
            account,
            user,
            auth,
            context,
        })
    }

    fn headers(&mut self) -> Result<Vec<(String, String)>, WarehouseError> {
        let mut h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json".to_string()),
            (
                "user-agent".to_string(),
                format!("sandstack/{}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        let (token, kind) = match &self.auth {
            Auth::None => return Ok(h),
            Auth::Token(t) => (t.clone(), "PROGRAMMATIC_ACCESS_TOKEN"),
            Auth::KeyPair { key, fingerprint } => {
                // The account part before any region, upper case, as
                // Snowflake's key-pair docs ask.
                let account = self
                    .account
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let user = self.user.to_ascii_uppercase();
                let now = chrono::Utc::now().timestamp();
                let jwt = key
                    .sign(
                        &json!({
                            "iss": format!("{account}.{user}.{fingerprint}"),
                            "sub": format!("{account}.{user}"),
                            "iat": now,
                            "exp": now + 3600,
                        }),
                        None,
                    )
                    .map_err(|message| WarehouseError::Setting {
                        db: NAME,
                        variable: KEY_PATH_ENV,
                        message,
                    })?;
                self.http
                    .learn_secret_headers(&[("authorization".into(), jwt.clone())]);
                (jwt, "KEYPAIR_JWT")
            }
        };
        h.push(("authorization".into(), format!("Bearer {token}")));
        h.push((
            "x-snowflake-authorization-token-type".into(),
            kind.to_string(),
        ));
        Ok(h)
    }

    /// `path_and_query` (from the server, for a status URL) on the
    /// account's own origin: one elsewhere would be sent the token.
    fn url(&self, path_and_query: &str) -> Result<url::Url, WarehouseError> {
        let bad = |why: String| WarehouseError::Answer {
            db: NAME,
            message: format!(
                "`{}` {why}",
                crate::escape::truncate(&crate::escape::log_line(path_and_query), 120)
            ),
        };
        let url = self
            .base
            .join(path_and_query)
            .map_err(|e| bad(format!("makes no URL ({e})")))?;
        if url.origin() != self.base.origin() {
            return Err(bad(
                "is not on the account's own address: it was not asked".into()
            ));
        }
        Ok(url)
    }

    fn call(
        &mut self,
        method: Method,
        url: &url::Url,
        body: Option<&Value>,
        deadline: Instant,
        limits: &QueryLimits,
    ) -> Result<Exchange, WarehouseError> {
        if Instant::now() >= deadline {
            return Err(WarehouseError::timed_out(NAME, limits));
        }
        let headers = self.headers()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let answer = super::send(
            &mut self.http,
            NAME,
            "Snowflake",
            method,
            url,
            &headers,
            body.as_bytes(),
            deadline,
            limits,
        )?;
        let cap = limits.max_bytes.saturating_mul(4).max(1 << 20);
        let body = unzip(&answer, cap, limits)?;
        Ok(Exchange { body, ..answer })
    }
}

/// A partition's body, gunzipped when Snowflake sent it so, within `cap`.
fn unzip(answer: &Exchange, cap: usize, limits: &QueryLimits) -> Result<Vec<u8>, WarehouseError> {
    let gzipped = answer
        .header("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(answer.body.clone());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(answer.body.as_slice())
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| WarehouseError::Answer {
            db: NAME,
            message: format!("a gzipped partition does not decode ({e})"),
        })?;
    if out.len() > cap {
        return Err(WarehouseError::too_large(NAME, limits));
    }
    Ok(out)
}

/// The JSON of an answer, or the error its status means.
fn read_answer(answer: &Exchange, limits: &QueryLimits) -> Result<Value, WarehouseError> {
    let value: Option<Value> = serde_json::from_slice(&answer.body).ok();
    if matches!(answer.status, 200 | 202) {
        return value.ok_or_else(|| WarehouseError::Answer {
            db: NAME,
            message: format!("not JSON: {}", server_words(&answer.body)),
        });
    }
    if answer.status == 408 {
        return Err(WarehouseError::timed_out(NAME, limits));
    }
    let message = value
        .as_ref()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .map(|m| super::words(&m))
        .unwrap_or_else(|| server_words(&answer.body));
    let message = format!("HTTP {}: {message}", answer.status);
    Err(if passing_status(answer.status) {
        WarehouseError::Unavailable { db: NAME, message }
    } else if answer.status == 401 || answer.status == 403 {
        WarehouseError::Setting {
            db: NAME,
            variable: USER_ENV,
            message: format!(
                "Snowflake did not accept sandstack's sign-in ({message}): check the user, \
                 its registered public key or token, and the account identifier"
            ),
        }
    } else {
        WarehouseError::Query { db: NAME, message }
    })
}

/// The first word of a statement, past comments and opening parentheses.
fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(r) = rest.strip_prefix("--").or_else(|| rest.strip_prefix("//")) {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_')
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The words of a statement outside its strings, quoted names and
/// comments, upper-cased; None when it holds a `$$` block (a procedure's
/// body, which runs as a script).
fn bare_words(sql: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = sql.chars().peekable();
    let end_word = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word).to_ascii_uppercase());
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                end_word(&mut word, &mut words);
                // A doubled quote escapes it; in a string, so does a backslash.
                while let Some(d) = chars.next() {
                    if d == '\\' && c == '\'' {
                        chars.next();
                    } else if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' | '/' if chars.peek() == Some(&c) => {
                end_word(&mut word, &mut words);
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                end_word(&mut word, &mut words);
                chars.next();
                let mut last = ' ';
                for d in chars.by_ref() {
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            '$' if chars.peek() == Some(&'$') => return None,
            c if c.is_ascii_alphanumeric() || c == '_' || c == '$' => word.push(c),
            _ => end_word(&mut word, &mut words),
        }
    }
    end_word(&mut word, &mut words);
    Some(words)
}

/// A column's kind from its `rowType` entry.
fn kind(field: &Value) -> Kind {
    match field.get("type").and_then(Value::as_str).unwrap_or("") {
        "fixed" | "real" => Kind::Float,
        "boolean" => Kind::Bool,
        "timestamp_ntz" | "timestamp_ltz" | "timestamp_tz" => Kind::Timestamp,
        _ => Kind::Text,
    }
}

fn cell(kind: Kind, snowflake_type: &str, column: &str, v: &Value) -> Result<Cell, WarehouseError> {
    let Some(text) = v.as_str() else {
        return Ok(if v.is_null() {
            Cell::Null
        } else {
            Cell::Text(v.to_string())
        });
    };
    Ok(match kind {
        Kind::Float => columns::float(NAME, column, text)?,
        Kind::Bool => Cell::Bool(text.eq_ignore_ascii_case("true")),
        // Seconds since the epoch (UTC); timestamp_tz adds its offset after a space.
        Kind::Timestamp => {
            let seconds = text.split_whitespace().next().unwrap_or_default();
            Cell::Timestamp(columns::seconds_text_to_micros(seconds).ok_or_else(|| {
                WarehouseError::Answer {
                    db: NAME,
                    message: format!(
                        "column `{}`: `{}` is not a {snowflake_type}",
                        crate::escape::log_line(column),
                        crate::escape::log_line(text)
                    ),
                }
            })?)
        }
        // A date is days since the epoch.
        Kind::Text if snowflake_type == "date" => match text.parse::<i64>() {
            Ok(days) => chrono::DateTime::from_timestamp(days.saturating_mul(86_400), 0)
                .map(|d| Cell::Text(d.format("%Y-%m-%d").to_string()))
                .unwrap_or(Cell::Text(text.to_string())),
            Err(_) => Cell::Text(text.to_string()),
        },
        Kind::Text => Cell::Text(text.to_string()),
    })
}

fn push_data(
    columns: &mut Columns,
    types: &[String],
    answer: &Value,
) -> Result<(), WarehouseError> {
    let Some(rows) = answer.get("data").and_then(Value::as_array) else {
        return Ok(());
    };
    for row in rows {
        let values = row.as_array().ok_or_else(|| WarehouseError::Answer {
            db: NAME,
            message: "a row of `data` is not an array".into(),
        })?;
        let mut cells = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let k = columns.kinds().get(i).copied().unwrap_or(Kind::Text);
            let name = columns.names().get(i).cloned().unwrap_or_default();
            let t = types.get(i).map(String::as_str).unwrap_or("");
            cells.push(cell(k, t, &name, v)?);
        }
        columns.push(cells)?;
    }
    Ok(())
}

impl super::Source for Snowflake {
    fn query(&mut self, sql: &str, limits: &QueryLimits) -> Result<RecordBatch, WarehouseError> {
        // Snowflake has no read-only session: refuse what is not a query
        // before it is sent. `WITH p AS PROCEDURE ... CALL p()` and a `$$`
        // body run as scripts, so neither the words nor the block may appear.
        let script = match bare_words(sql) {
            None => Some("a $$ block".to_string()),
            Some(w) => w
                .into_iter()
                .find(|w| matches!(w.as_str(), "PROCEDURE" | "CALL" | "EXECUTE" | "BEGIN"))
                .map(|w| format!("the word {w}")),
        };
        if let Some(what) = script {
            return Err(WarehouseError::NotReadOnly {
                db: NAME,
                found: format!("a statement with {what} (a procedure or script may write)"),
            });
        }
        let first = first_keyword(sql);
        if !matches!(
            first.as_str(),
            "SELECT" | "WITH" | "SHOW" | "DESCRIBE" | "DESC"
        ) {
            return Err(WarehouseError::NotReadOnly {
                db: NAME,
                found: if first.is_empty() {
                    "not a query".into()
                } else {
                    format!("a statement starting with {first}")
                },
            });
        }
        let deadline = Instant::now() + limits.timeout;
        let mut body = json!({
            "statement": sql,
            "timeout": limits.timeout.as_secs().max(1),
            "parameters": {"MULTI_STATEMENT_COUNT": "1"},
        });
        for (k, v) in &self.context {
            body[*k] = Value::String(v.clone());
        }
        let url = self.url("/api/v2/statements")?;
        let mut answer = self.call(Method::POST, &url, Some(&body), deadline, limits)?;
        let mut value = read_answer(&answer, limits)?;
        // 202: still running; ask its status until it ends or time is up.
        while answer.status == 202 {
            let status_url = value
                .get("statementStatusUrl")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| WarehouseError::Answer {
                    db: NAME,
                    message: "a 202 answer has no statementStatusUrl".into(),
                })?;
            std::thread::sleep(Duration::from_millis(200).min(left(deadline)));
            let url = self.url(&status_url)?;
            answer = self.call(Method::GET, &url, None, deadline, limits)?;
            value = read_answer(&answer, limits)?;
        }
        let meta = value
            .get("resultSetMetaData")
            .cloned()
            .unwrap_or(Value::Null);
        let fields = meta
            .get("rowType")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| WarehouseError::Answer {
                db: NAME,
                message: "the answer has no resultSetMetaData.rowType".into(),
            })?;
        let types: Vec<String> = fields
            .iter()
            .map(|f| {
                f.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let mut columns = Columns::new(
            NAME,
            fields
                .iter()
                .map(|f| {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
                    // Snowflake upper-cases unquoted names; the checks want
                    // metric_timestamp, metric_name, metric_value.
                    (name.to_ascii_lowercase(), kind(f))
                })
                .collect(),
            limits,
        );
        push_data(&mut columns, &types, &value)?;
        let partitions = meta
            .get("partitionInfo")
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        let handle = value
            .get("statementHandle")
            .and_then(Value::as_str)
            .map(str::to_string);
        for partition in 1..partitions {
            let handle = handle.as_deref().ok_or_else(|| WarehouseError::Answer {
                db: NAME,
                message: "the answer has more partitions but no statementHandle".into(),
            })?;
            let mut url = self.url("/api/v2/statements/")?;
            url.path_segments_mut()
                .map_err(|_| WarehouseError::Answer {
                    db: NAME,
                    message: "the account's address is not a base URL".into(),
                })?
                .pop_if_empty()
                .push(handle);
            url.query_pairs_mut()
                .append_pair("partition", &partition.to_string());
            let answer = self.call(Method::GET, &url, None, deadline, limits)?;
            let value = read_answer(&answer, limits)?;
            push_data(&mut columns, &types, &value)?;
        }
        columns.finish()
    }

    fn replay_settings(&self) -> Env {
        let mut env = Env::from([
            (ACCOUNT_ENV.to_string(), self.account.clone()),
            (USER_ENV.to_string(), self.user.clone()),
            (ENDPOINT_ENV.to_string(), self.base.to_string()),
        ]);
        for (k, v) in &self.context {
            env.insert(
                format!("ANOMSTACK_SNOWFLAKE_{}", k.to_ascii_uppercase()),
                v.clone(),
            );
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

    #[test]
    fn the_first_keyword_is_found_past_comments_and_parentheses() {
        assert_eq!(first_keyword("  select 1"), "SELECT");
        assert_eq!(first_keyword("-- a\n/* b */ ( (Select 1))"), "SELECT");
        assert_eq!(
            first_keyword("// x\nwith a as (select 1) select * from a"),
            "WITH"
        );
        assert_eq!(first_keyword("/* select */ delete from t"), "DELETE");
        assert_eq!(first_keyword("/* unclosed select"), "");
    }

    #[test]
    fn procedures_and_scripts_are_found_outside_strings_and_comments() {
        let w = |s: &str| bare_words(s).map(|v| v.join(" "));
        assert_eq!(
            w("select 'call x' as \"PROCEDURE\", 1 -- call\n/* call */ from t").as_deref(),
            Some("SELECT AS 1 FROM T")
        );
        assert_eq!(
            w("select 'it''s', 'a\\'b' from t").as_deref(),
            Some("SELECT FROM T")
        );
        assert_eq!(
            w("with p as procedure() returns int language sql as $$ begin delete from t; end $$ call p()"),
            None
        );
        let words =
            bare_words("WITH p AS PROCEDURE() RETURNS INT AS 'begin delete from t; end' CALL p()")
                .expect("words");
        assert!(words.contains(&"PROCEDURE".to_string()) && words.contains(&"CALL".to_string()));
    }

    #[test]
    fn values_read_as_the_sql_api_sends_them() {
        let ts = cell(
            Kind::Timestamp,
            "timestamp_ltz",
            "t",
            &json!("1700000000.250000000"),
        )
        .expect("ts");
        assert_eq!(ts, Cell::Timestamp(1_700_000_000_250_000));
        let tz = cell(
            Kind::Timestamp,
            "timestamp_tz",
            "t",
            &json!("1700000000.000000000 1500"),
        )
        .expect("tz");
        assert_eq!(tz, Cell::Timestamp(1_700_000_000_000_000));
        assert_eq!(
            cell(Kind::Text, "date", "d", &json!("19000")).expect("d"),
            Cell::Text("2022-01-08".into())
        );
        assert_eq!(
            cell(Kind::Float, "fixed", "v", &json!("12.50")).expect("v"),
            Cell::Float(12.5)
        );
        assert_eq!(
            cell(Kind::Float, "real", "v", &Value::Null).expect("null"),
            Cell::Null
        );
        let e = cell(Kind::Timestamp, "timestamp_ntz", "t", &json!("soon")).unwrap_err();
        assert!(e.to_string().contains("column `t`"), "{e}");
    }
}

//! Typed reads of one key from a rendered batch mapping, collecting errors
//! that name the file, the key, what was expected and what was found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::error::ConfigError;

pub struct FieldReader<'a> {
    file: PathBuf,
    /// Where a key's value came from, when not `file` (the defaults file,
    /// an environment variable).
    origins: BTreeMap<String, PathBuf>,
    map: &'a Mapping,
    pub errors: Vec<ConfigError>,
}

/// A short description of a YAML value for "found ..." messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if s.chars().count() > 40 { "..." } else { "" };
            format!("string \"{shown}{more}\"")
        }
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("tagged value !{}", t.tag),
    }
}

impl<'a> FieldReader<'a> {
    pub fn new(file: &Path, map: &'a Mapping, origins: BTreeMap<String, PathBuf>) -> Self {
        FieldReader {
            file: file.to_path_buf(),
            origins,
            map,
            errors: Vec::new(),
        }
    }

    /// The raw value, treating an explicit null like an absent key.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// The file (or variable) a key's value came from.
    pub fn origin(&self, key: &str) -> PathBuf {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.file.clone())
    }

    fn bad_type(&mut self, key: &str, expected: &str, value: &Value) {
        self.errors.push(ConfigError::BadType {
            file: self.origin(key),
            key: key.to_string(),
            expected: expected.to_string(),
            found: describe(value),
        });
    }

    pub fn bad_value(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::BadValue {
            file: self.origin(key),
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.opt_string(key).unwrap_or_else(|| default.to_string())
    }

    pub fn opt_string(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            // Numbers and booleans written where text is expected are fine
            // as text (`table_key: 2024` is a valid table name).
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.bad_type(key, "a string", other);
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.raw(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(other) => {
                self.bad_type(key, "true or false", other);
                default
            }
        }
    }

    pub fn f64(&mut self, key: &str, default: f64) -> f64 {
        match self.raw(key) {
            None => default,
            Some(Value::Number(n)) => n.as_f64().unwrap_or(default),
            Some(other) => {
                self.bad_type(key, "a number", other);
                default
            }
        }
    }

    /// A non-negative integer.
    pub fn u64(&mut self, key: &str, default: u64) -> u64 {
        match self.raw(key) {
            None => default,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(default),
            Some(other) => {
                self.bad_type(key, "a whole number of 0 or more", other);
                default
            }
        }
    }

    /// A UTC date (`2026-01-01`) or date and time, as µs since the epoch.
    pub fn utc_time(&mut self, key: &str, default: i64) -> i64 {
        let Some(text) = self.opt_string(key) else {
            return default;
        };
        match parse_utc_us(&text) {
            Some(us) => us,
            None => {
                self.bad_value(
                    key,
                    format!("must be a UTC date like 2026-01-01 or 2026-01-01T00:00:00, found \"{text}\""),
                );
                default
            }
        }
    }

    pub fn i64(&mut self, key: &str, default: i64) -> i64 {
        match self.raw(key) {
            None => default,
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(default),
            Some(other) => {
                self.bad_type(key, "a whole number", other);
                default
            }
        }
    }

    /// A duration in seconds: more than 0 and at most [`MAX_SECONDS`]
    /// (larger values would overflow the host's clock arithmetic).
    pub fn seconds(&mut self, key: &str, default: f64) -> f64 {
        let v = self.f64(key, default);
        if !(v.is_finite() && v > 0.0) {
            self.bad_value(key, format!("must be greater than 0, found {v}"));
            default
        } else if v > MAX_SECONDS {
            self.bad_value(
                key,
                format!("must be at most {MAX_SECONDS} seconds (a day), found {v}"),
            );
            default
        } else {
            v
        }
    }

    /// A list of strings; a comma-separated string is accepted too, as
    /// Anomstack writes `alert_methods: "email,slack"`.
    pub fn string_list(&mut self, key: &str) -> Vec<String> {
        match self.raw(key) {
            None => Vec::new(),
            Some(Value::String(s)) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            Some(Value::Sequence(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        Value::Number(n) => out.push(n.to_string()),
                        other => {
                            self.bad_type(key, "a list of strings", other);
                            return Vec::new();
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.bad_type(key, "a list of strings", other);
                Vec::new()
            }
        }
    }

    /// A structured value read through serde, with serde's message.
    pub fn structured<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
        expected: &str,
    ) -> Option<T> {
        let value = self.raw(key)?;
        match serde_yaml_ng::from_value::<T>(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(ConfigError::BadType {
                    file: self.origin(key),
                    key: key.to_string(),
                    expected: expected.to_string(),
                    found: format!("{} ({e})", describe(value)),
                });
                None
            }
        }
    }

    /// Every key as JSON, for templates and later jobs.
    pub fn all_as_json(&self) -> BTreeMap<String, serde_json::Value> {
        self.map
            .iter()
            .filter_map(|(k, v)| {
                let k = k.as_str()?.to_string();
                let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
                Some((k, json))
            })
            .collect()
    }
}

/// Longest duration a `seconds` key takes (`ingest_timeout_s`,
/// `http_timeout_s`).
pub const MAX_SECONDS: f64 = 86_400.0;

/// A date or date and time (UTC) as µs since the epoch.
pub fn parse_utc_us(text: &str) -> Option<i64> {
    let text = text.trim();
    let t = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .or_else(|| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok())
        .or_else(|| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok())?;
    Some(t.and_utc().timestamp_micros())
}

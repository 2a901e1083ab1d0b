//! Typed reads of one key from a rendered batch mapping, collecting errors
//! that name the file, the key, what was expected and what was found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::choices::Choice;
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

    /// The batch file being read.
    pub fn file(&self) -> &Path {
        &self.file
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
        self.read(key)
    }

    pub fn bool(&mut self, key: &str, default: bool) -> bool {
        self.read(key).unwrap_or(default)
    }

    /// One of a fixed set of values; `default` when absent.
    pub fn choice<T: Choice + PartialEq>(&mut self, key: &str, default: T) -> T {
        self.read(key).unwrap_or(default)
    }

    /// `key` read as `T`; None when absent (or null), or when wrong (the
    /// error is recorded).
    fn read<T: ReadAs>(&mut self, key: &str) -> Option<T> {
        let v = self.raw(key)?;
        T::from_value(v).map_err(|p| self.problem(key, v, p)).ok()
    }

    /// A declared key (`settings!`), read as `T`; `default` (its declared
    /// default, as YAML) when absent or wrong (the error is recorded). The
    /// declaration passes its default in, so reading a field needs nothing
    /// from the key table built from the declarations.
    pub fn declared<T: ReadAs>(&mut self, key: &'static str, default: &'static str) -> T {
        if let Some(x) = self.read(key) {
            return x;
        }
        match T::from_value(&parsed_default(default)) {
            Ok(x) => x,
            // The declared defaults are sandstack's own, each read back by
            // a test in `keys`.
            Err(_) => panic!("the declared default of `{key}` does not read as its type"),
        }
    }

    fn problem(&mut self, key: &str, value: &Value, problem: Problem) {
        match problem {
            Problem::Type(expected) => self.bad_type(key, expected, value),
            Problem::Shape(expected, detail) => self.errors.push(ConfigError::BadType {
                file: self.origin(key),
                key: key.to_string(),
                expected: expected.to_string(),
                found: format!("{} ({detail})", describe(value)),
            }),
            Problem::Value(message) => self.bad_value(key, message),
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

/// What is wrong with a value, before the reader adds file and key.
pub enum Problem {
    /// Expected this kind of value.
    Type(&'static str),
    /// Expected this kind of value; the parser's words on what it found.
    Shape(&'static str, String),
    /// Right kind, wrong value: why.
    Value(String),
}

/// A type a declared key is read as ([`FieldReader::declared`]).
pub trait ReadAs: Sized {
    fn from_value(value: &Value) -> Result<Self, Problem>;
}

impl ReadAs for bool {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(Problem::Type("true or false")),
        }
    }
}

impl ReadAs for u64 {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .ok_or(Problem::Type("a whole number of 0 or more")),
            _ => Err(Problem::Type("a whole number of 0 or more")),
        }
    }
}

impl ReadAs for i64 {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::Number(n) => n.as_i64().ok_or(Problem::Type("a whole number")),
            _ => Err(Problem::Type("a whole number")),
        }
    }
}

impl ReadAs for f64 {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::Number(n) => n.as_f64().ok_or(Problem::Type("a number")),
            _ => Err(Problem::Type("a number")),
        }
    }
}

impl ReadAs for String {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::String(s) => Ok(s.clone()),
            // Numbers and booleans written where text is expected are fine
            // as text (`table_key: 2024` is a valid table name).
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(Problem::Type("a string")),
        }
    }
}

/// Absent or null is None.
impl<T: ReadAs> ReadAs for Option<T> {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A list of strings; a comma-separated string is accepted too, as
/// Anomstack writes `alert_methods: "email,slack"`.
impl ReadAs for Vec<String> {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => Ok(s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()),
            Value::Sequence(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(Problem::Type("a list of strings")),
                })
                .collect(),
            _ => Err(Problem::Type("a list of strings")),
        }
    }
}

/// A duration in seconds: more than 0 and at most [`MAX_SECONDS`]
/// (larger values would overflow the host's clock arithmetic).
pub struct Seconds(pub f64);

impl ReadAs for Seconds {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        let v = f64::from_value(v)?;
        if !(v.is_finite() && v > 0.0) {
            Err(Problem::Value(format!("must be greater than 0, found {v}")))
        } else if v > MAX_SECONDS {
            Err(Problem::Value(format!(
                "must be at most {MAX_SECONDS} seconds (a day), found {v}"
            )))
        } else {
            Ok(Seconds(v))
        }
    }
}

/// A UTC date (`2026-01-01`) or date and time, as µs since the epoch.
pub struct UtcMicros(pub i64);

impl ReadAs for UtcMicros {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        let text = String::from_value(v)?;
        parse_utc_us(&text).map(UtcMicros).ok_or_else(|| {
            Problem::Value(format!(
                "must be a UTC date like 2026-01-01 or 2026-01-01T00:00:00, found \"{text}\""
            ))
        })
    }
}

/// A structured value read with serde (mappings and lists of mappings).
pub struct Structured<T>(pub T);

impl<T: serde::de::DeserializeOwned + Described> ReadAs for Structured<T> {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        serde_yaml_ng::from_value::<T>(v.clone())
            .map(Structured)
            .map_err(|e| Problem::Shape(T::EXPECTED, e.to_string()))
    }
}

/// What a structured value should look like, for errors.
pub trait Described {
    const EXPECTED: &'static str;
}

/// One of a fixed set of values.
impl<T: Choice + PartialEq> ReadAs for T {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        T::parse(&String::from_value(v)?).map_err(Problem::Value)
    }
}

/// A list of choices (`a,b` or a YAML list).
impl<T: Choice + PartialEq> ReadAs for Vec<T> {
    fn from_value(v: &Value) -> Result<Self, Problem> {
        Vec::<String>::from_value(v)?
            .iter()
            .map(|text| T::parse(text).map_err(Problem::Value))
            .collect()
    }
}

/// A declared default (YAML), parsed once per process: every batch of
/// every load (the dashboard's every few seconds) reads the same literals.
fn parsed_default(default: &'static str) -> Value {
    static PARSED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, Value>>,
    > = std::sync::OnceLock::new();
    let mut parsed = PARSED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    parsed
        .entry(default)
        .or_insert_with(|| serde_yaml_ng::from_str(default).unwrap_or(Value::Null))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).expect("yaml")
    }

    fn problem<T: ReadAs>(text: &str) -> String {
        match T::from_value(&yaml(text)) {
            Ok(_) => panic!("{text} should not read"),
            Err(Problem::Type(t)) => format!("type: {t}"),
            Err(Problem::Shape(t, d)) => format!("shape: {t}: {d}"),
            Err(Problem::Value(v)) => format!("value: {v}"),
        }
    }

    #[test]
    fn scalars_read_strictly_but_text_takes_numbers() {
        assert_eq!(u64::from_value(&yaml("7")).ok(), Some(7));
        assert_eq!(problem::<u64>("-3"), "type: a whole number of 0 or more");
        assert_eq!(problem::<u64>("1.5"), "type: a whole number of 0 or more");
        assert_eq!(bool::from_value(&yaml("\"TRUE\"")).ok(), Some(true));
        assert_eq!(problem::<bool>("yes please"), "type: true or false");
        assert_eq!(
            String::from_value(&yaml("2024")).ok().as_deref(),
            Some("2024")
        );
        assert_eq!(Option::<String>::from_value(&yaml("~")).ok(), Some(None));
    }

    #[test]
    fn lists_take_comma_text_or_sequences() {
        let v = |t: &str| Vec::<String>::from_value(&yaml(t)).ok();
        assert_eq!(
            v("\"a, b,,c\""),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(v("[a, 1]"), Some(vec!["a".into(), "1".into()]));
        assert_eq!(problem::<Vec<String>>("[[a]]"), "type: a list of strings");
    }

    #[test]
    fn seconds_and_times_are_bounded() {
        assert_eq!(
            Seconds::from_value(&yaml("0.5")).ok().map(|s| s.0),
            Some(0.5)
        );
        assert_eq!(
            problem::<Seconds>("0"),
            "value: must be greater than 0, found 0"
        );
        assert_eq!(
            problem::<Seconds>(".inf"),
            "value: must be greater than 0, found inf"
        );
        assert_eq!(
            problem::<Seconds>("86401"),
            "value: must be at most 86400 seconds (a day), found 86401"
        );
        assert_eq!(
            UtcMicros::from_value(&yaml("1970-01-02")).ok().map(|t| t.0),
            Some(86_400_000_000)
        );
        assert!(problem::<UtcMicros>("soon").starts_with("value: must be a UTC date"));
    }
}

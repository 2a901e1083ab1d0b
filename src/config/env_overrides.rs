//! Environment overrides, applied after the files:
//! `ANOMSTACK_TABLE_KEY` / `ANOMSTACK_MODEL_PATH` for every batch, then
//! `ANOMSTACK__<BATCH>__<KEY>`, then `SANDSTACK__<BATCH>__<KEY>`.
//! Values are read as YAML scalars, so `False` is false and `3` is a number.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

const GLOBALS: [(&str, &str); 2] = [
    ("ANOMSTACK_TABLE_KEY", "table_key"),
    ("ANOMSTACK_MODEL_PATH", "model_path"),
];

/// The batch part of a variable name: upper case, `-` and `.` as `_`.
pub fn env_batch_name(batch: &str) -> String {
    batch
        .chars()
        .map(|c| match c {
            '-' | '.' | ' ' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Parse an override as YAML; text that is not valid YAML on its own (a
/// cron expression starts with `*`, an alias marker) stays a string.
pub fn parse_value(text: &str) -> Value {
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(Value::Null) if !text.trim().is_empty() && !is_null_word(text) => {
            Value::String(text.to_string())
        }
        Ok(v) => v,
        Err(_) => Value::String(text.to_string()),
    }
}

fn is_null_word(text: &str) -> bool {
    matches!(text.trim(), "~" | "null" | "Null" | "NULL")
}

/// Apply every override for `batch` to `map`; returns the variables used.
pub fn apply(batch: &str, map: &mut Mapping, env: &BTreeMap<String, String>) -> Vec<String> {
    let mut used = Vec::new();
    for (var, key) in GLOBALS {
        if let Some(v) = env.get(var) {
            map.insert(Value::String(key.into()), parse_value(v));
            used.push(var.to_string());
        }
    }
    let upper = env_batch_name(batch);
    for prefix in ["ANOMSTACK__", "SANDSTACK__"] {
        let head = format!("{prefix}{upper}__");
        for (var, v) in env.range(head.clone()..) {
            let Some(key) = var.strip_prefix(&head) else {
                break;
            };
            if key.is_empty() {
                continue;
            }
            map.insert(Value::String(key.to_ascii_lowercase()), parse_value(v));
            used.push(var.clone());
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_yaml_typed() {
        assert_eq!(parse_value("False"), Value::Bool(false));
        assert_eq!(parse_value("true"), Value::Bool(true));
        assert_eq!(parse_value("3"), Value::Number(3.into()));
        assert_eq!(
            parse_value("0.5"),
            serde_yaml_ng::from_str::<Value>("0.5").expect("yaml")
        );
        assert_eq!(
            parse_value("*/30 * * * *"),
            Value::String("*/30 * * * *".into())
        );
        assert_eq!(
            parse_value("email,slack"),
            Value::String("email,slack".into())
        );
        assert_eq!(parse_value("null"), Value::Null);
    }

    #[test]
    fn batch_names_map_to_variable_names() {
        assert_eq!(env_batch_name("hn-top.stories"), "HN_TOP_STORIES");
    }

    #[test]
    fn later_prefixes_win() {
        let env = BTreeMap::from([
            (
                "ANOMSTACK__B__ALERT_THRESHOLD".to_string(),
                "0.5".to_string(),
            ),
            (
                "SANDSTACK__B__ALERT_THRESHOLD".to_string(),
                "0.9".to_string(),
            ),
            (
                "ANOMSTACK__BB__ALERT_THRESHOLD".to_string(),
                "0.1".to_string(),
            ),
        ]);
        let mut map = Mapping::new();
        apply("b", &mut map, &env);
        assert_eq!(
            map.get("alert_threshold").and_then(Value::as_f64),
            Some(0.9)
        );
    }
}

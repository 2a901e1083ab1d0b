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

/// Whether `var` is the global variable that sets `key` for every batch.
pub fn sets_globally(var: &str, key: &str) -> bool {
    GLOBALS.iter().any(|(v, k)| *v == var && *k == key)
}

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

/// How many of a folder's batches share each variable form of their name
/// (`Weather` and `weather` are both `WEATHER`).
pub struct EnvNames(BTreeMap<String, Vec<String>>);

pub fn names_in_use<'a>(names: impl Iterator<Item = &'a str>) -> EnvNames {
    let mut by_form: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in names {
        by_form
            .entry(env_batch_name(n))
            .or_default()
            .push(n.to_string());
    }
    EnvNames(by_form)
}

/// The overrides that reach one batch: the globals, and each prefix's
/// variables named for the batch. A variable reaches a batch whose name it
/// spells exactly (`SANDSTACK__hn-top__KEY`), or whose name's variable form
/// it is when no other batch of the folder has the same form.
pub struct Overrides {
    /// (variable, key, value), in the order they apply.
    vars: Vec<(String, String, String)>,
}

pub fn for_batch(
    batch: &str,
    env: &BTreeMap<String, String>,
    names: &EnvNames,
    warnings: &mut Vec<String>,
) -> Overrides {
    let mut vars = Vec::new();
    for (var, key) in GLOBALS {
        if let Some(v) = env.get(var) {
            vars.push((var.to_string(), key.to_string(), v.clone()));
        }
    }
    let form = env_batch_name(batch);
    let sharing = names.0.get(&form).map_or(&[][..], Vec::as_slice);
    for prefix in ["ANOMSTACK__", "SANDSTACK__"] {
        let mut heads = Vec::new();
        // A form several batches share names none of them, even the one
        // spelled that way (`VICTIM` beside `victim`): which was meant
        // cannot be told.
        if sharing.len() <= 1 {
            heads.push(format!("{prefix}{form}__"));
        } else if batch == sharing[0] {
            // Said once, for the first of the batches that share it.
            let head = format!("{prefix}{form}__");
            if let Some((var, _)) = env
                .range(head.clone()..)
                .next()
                .filter(|(v, _)| v.starts_with(&head))
            {
                warnings.push(format!(
                    "environment variable {var}: the batches {} share the name {form} in variables, so \
                     it reaches none of them; name the batch exactly ({prefix}<batch>__<KEY>) where that \
                     differs from {form}",
                    sharing.join(", ")
                ));
            }
        }
        if batch != form {
            heads.push(format!("{prefix}{batch}__"));
        }
        for head in heads {
            for (var, v) in env.range(head.clone()..) {
                let Some(key) = var.strip_prefix(&head) else {
                    break;
                };
                if !key.is_empty() {
                    vars.push((var.clone(), key.to_ascii_lowercase(), v.clone()));
                }
            }
        }
    }
    Overrides { vars }
}

impl Overrides {
    /// Set each override in `map`, later ones winning; returns the
    /// variables used.
    pub fn apply(&self, map: &mut Mapping) -> Vec<String> {
        let mut used = Vec::new();
        for (var, key, v) in &self.vars {
            map.insert(Value::String(key.clone()), parse_value(v));
            used.push(var.clone());
        }
        used
    }
}

/// Apply every override for `batch` to `map` as if it were the folder's
/// only batch; returns the variables used.
#[cfg(test)]
fn apply(batch: &str, map: &mut Mapping, env: &BTreeMap<String, String>) -> Vec<String> {
    let names = names_in_use(std::iter::once(batch));
    for_batch(batch, env, &names, &mut Vec::new()).apply(map)
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
    fn a_variable_reaches_only_the_batch_it_names() {
        let env = BTreeMap::from([
            (
                "SANDSTACK__WEATHER__ALERT_THRESHOLD".to_string(),
                "0.5".to_string(),
            ),
            (
                "SANDSTACK__weather__ALERT_SMOOTH_N".to_string(),
                "7".to_string(),
            ),
        ]);
        let names = names_in_use(["weather", "Weather"].into_iter());
        let mut warnings = Vec::new();
        let mut map = Mapping::new();
        for_batch("weather", &env, &names, &mut warnings).apply(&mut map);
        assert_eq!(map.get("alert_smooth_n").and_then(Value::as_u64), Some(7));
        assert!(
            map.get("alert_threshold").is_none(),
            "shared form reaches none"
        );
        let mut other = Mapping::new();
        for_batch("Weather", &env, &names, &mut warnings).apply(&mut other);
        assert!(other.is_empty(), "{other:?}");
        // A batch spelled as the shared form does not take it either.
        let victims = names_in_use(["victim", "VICTIM"].into_iter());
        let victim_env = BTreeMap::from([(
            "ANOMSTACK__VICTIM__INGEST_ENV".to_string(),
            "[MY_SECRET]".to_string(),
        )]);
        for b in ["victim", "VICTIM"] {
            let mut map = Mapping::new();
            for_batch(b, &victim_env, &victims, &mut Vec::new()).apply(&mut map);
            assert!(map.is_empty(), "{b}: {map:?}");
        }
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("Weather, weather") || warnings[0].contains("weather, Weather")
        );
        // Alone, the batch takes its variable form as before.
        let alone = names_in_use(["weather"].into_iter());
        let mut map = Mapping::new();
        for_batch("weather", &env, &alone, &mut Vec::new()).apply(&mut map);
        assert_eq!(
            map.get("alert_threshold").and_then(Value::as_f64),
            Some(0.5)
        );
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

//! The templates sandstack ships (`metrics/defaults/`), compiled in, so a
//! policy with `allow_template_overrides: false` can tell a batch that uses
//! them from one that replaced them, in its own keys or by editing the
//! files its defaults include.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_yaml_ng::{Mapping, Value};

use super::spec::{BatchSpec, Job};

const DEFAULTS_YAML: &str = include_str!("../../metrics/defaults/defaults.yaml");

/// Every file the shipped defaults include, by its path in the folder.
const FILES: &[(&str, &str)] = &[
    (
        "defaults/python/preprocess.py",
        include_str!("../../metrics/defaults/python/preprocess.py"),
    ),
    (
        "defaults/sql/train.sql",
        include_str!("../../metrics/defaults/sql/train.sql"),
    ),
    (
        "defaults/sql/score.sql",
        include_str!("../../metrics/defaults/sql/score.sql"),
    ),
    (
        "defaults/sql/alerts.sql",
        include_str!("../../metrics/defaults/sql/alerts.sql"),
    ),
    (
        "defaults/sql/change.sql",
        include_str!("../../metrics/defaults/sql/change.sql"),
    ),
    (
        "defaults/sql/plot.sql",
        include_str!("../../metrics/defaults/sql/plot.sql"),
    ),
    (
        "defaults/sql/llmalert.sql",
        include_str!("../../metrics/defaults/sql/llmalert.sql"),
    ),
    (
        "defaults/sql/dashboard.sql",
        include_str!("../../metrics/defaults/sql/dashboard.sql"),
    ),
    (
        "defaults/sql/delete.sql",
        include_str!("../../metrics/defaults/sql/delete.sql"),
    ),
    (
        "defaults/sql/summary.sql",
        include_str!("../../metrics/defaults/sql/summary.sql"),
    ),
];

/// The template keys a policy may pin to the shipped ones.
fn template_keys() -> impl Iterator<Item = &'static str> {
    Job::ALL
        .iter()
        .filter_map(|j| j.sql_key())
        .chain(["dashboard_sql", "preprocess_fn"])
}

fn shipped_values() -> &'static BTreeMap<String, String> {
    static VALUES: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    VALUES.get_or_init(|| {
        let map: Mapping = serde_yaml_ng::from_str(DEFAULTS_YAML).unwrap_or_default();
        map.iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
            .collect()
    })
}

/// The `{% include "..." %}` names in a template's text.
fn includes(text: &str) -> Vec<&str> {
    text.split("{%")
        .skip(1)
        .filter_map(|part| {
            let part = part.trim_start().strip_prefix("include")?.trim_start();
            let quote = part.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            part[1..].split(quote).next()
        })
        .map(|name| name.trim_start_matches("./"))
        .collect()
}

/// The template keys of `spec` that are not the shipped templates: a value
/// other than the shipped defaults' text, or an included file that differs
/// from the shipped file.
pub fn overridden(spec: &BatchSpec) -> Vec<String> {
    let shipped = shipped_values();
    let merged = &spec.source.merged;
    template_keys()
        .filter(|key| {
            let raw = merged.get(*key).and_then(Value::as_str);
            let Some(raw) = raw else {
                return false; // not set at all: nothing of the batch's runs
            };
            if shipped.get(*key).map(String::as_str) != Some(raw) {
                return true;
            }
            includes(raw).into_iter().any(|name| {
                let expected = FILES
                    .iter()
                    .find(|(path, _)| *path == name)
                    .map(|(_, t)| *t);
                let found =
                    super::folder_files::read_regular(&spec.source.dir.join(name), 1 << 20).ok();
                expected.is_none() || found.as_deref() != expected
            })
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_included_names() {
        assert_eq!(
            includes("{% include \"./defaults/sql/train.sql\" %} and {%include 'x.sql'%}"),
            vec!["defaults/sql/train.sql", "x.sql"]
        );
        assert!(includes("SELECT 1").is_empty());
    }

    #[test]
    fn every_shipped_template_is_compiled_in() {
        let shipped = shipped_values();
        for key in template_keys() {
            let raw = shipped
                .get(key)
                .unwrap_or_else(|| panic!("defaults.yaml sets {key}"));
            for name in includes(raw) {
                assert!(
                    FILES.iter().any(|(p, _)| *p == name),
                    "{name} is not compiled in"
                );
            }
        }
    }
}

//! `detection_defaults`: which built-in values the detection keys take when
//! the folder (defaults file, batch file, environment) leaves them unset.
//!
//! sandstack's own values (the defaults declared in [`super::sections`])
//! were chosen with `sandstack backtest` on the evaluation corpus that
//! `scripts/eval-corpus.py` builds (README, "Tuning detection").
//! `detection_defaults: anomstack` puts Anomstack's values back for a user
//! who wants Anomstack's thresholds, smoothing and snoozes (the scores
//! themselves are calibrated as sandstack's models are: see `models`). A
//! value the folder sets always wins over either set.

use serde_yaml_ng::{Mapping, Value};

use super::choices::{Choice, DetectionDefaults};
use super::keys;

/// The keys whose built-in value differs between the two sets, with
/// Anomstack's value (YAML).
pub const ANOMSTACK: &[(&str, &str)] = &[
    ("alert_threshold", "0.8"),
    ("alert_smooth_n", "3"),
    ("alert_snooze_n", "3"),
    ("alert_recent_n", "1"),
    ("change_threshold", "3.5"),
    ("change_detect_last_n", "1"),
    ("change_baseline_n", "0"),
    ("change_smooth_n", "1"),
    ("change_snooze_n", "3"),
];

/// Give every key of [`ANOMSTACK`] that `merged` lacks (or holds as null,
/// which a key's reading takes as unset) the value of the set
/// `detection_defaults` names there: Anomstack's, or sandstack's (its
/// declared default). Filled in, not left to each key's reading, because
/// the templates (`alerts.sql`, `change.sql`) read them as variables too. A
/// value that is not one of the choices gets sandstack's set, and the key's
/// own reading refuses it with the file and the choices. Returns the keys
/// it filled.
///
/// One exception: a folder that sets `change_threshold` itself chose it for
/// the whole-window baseline (Anomstack's defaults file states 3.5), so
/// there `change_baseline_n` left unset stays 0, the whole window.
pub fn apply(merged: &mut Mapping) -> Vec<String> {
    let unset = |m: &Mapping, key: &str| m.get(key).is_none_or(Value::is_null);
    let chosen = merged
        .get("detection_defaults")
        .and_then(Value::as_str)
        .and_then(|text| DetectionDefaults::parse(text).ok())
        .unwrap_or(DetectionDefaults::Sandstack);
    let own_threshold = !unset(merged, "change_threshold");
    let mut filled = Vec::new();
    for (key, text) in ANOMSTACK {
        if !unset(merged, key) {
            continue;
        }
        let anomstack = chosen == DetectionDefaults::Anomstack
            || (*key == "change_baseline_n" && own_threshold);
        let value = if anomstack {
            serde_yaml_ng::from_str::<Value>(text).ok()
        } else {
            Some(keys::default_value(key).clone())
        };
        if let Some(value) = value {
            merged.insert(Value::String((*key).to_string()), value);
            filled.push((*key).to_string());
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_yaml_ng::from_str(yaml).expect("yaml")
    }

    #[test]
    fn anomstack_fills_only_what_the_folder_left_unset() {
        let mut m = mapping("detection_defaults: Anomstack\nalert_threshold: 0.7\n");
        assert_eq!(apply(&mut m).len(), ANOMSTACK.len() - 1);
        assert_eq!(m.get("alert_threshold").and_then(Value::as_f64), Some(0.7));
        assert_eq!(m.get("alert_smooth_n").and_then(Value::as_u64), Some(3));
        assert_eq!(m.get("alert_recent_n").and_then(Value::as_u64), Some(1));
        assert_eq!(m.get("change_snooze_n").and_then(Value::as_u64), Some(3));
    }

    #[test]
    fn null_is_unset_and_a_folders_own_change_threshold_keeps_the_whole_window() {
        let mut m = mapping("detection_defaults: anomstack\nchange_threshold: ~\n");
        apply(&mut m);
        assert_eq!(m.get("change_threshold").and_then(Value::as_f64), Some(3.5));
        let mut m = mapping("change_threshold: 3.5\n");
        apply(&mut m);
        assert_eq!(m.get("change_baseline_n").and_then(Value::as_u64), Some(0));
        assert_eq!(
            m.get("alert_threshold"),
            Some(keys::default_value("alert_threshold"))
        );
        let mut m = mapping("change_threshold: 3.5\nchange_baseline_n: 30\n");
        apply(&mut m);
        assert_eq!(m.get("change_baseline_n").and_then(Value::as_u64), Some(30));
    }

    #[test]
    fn sandstack_or_no_choice_fills_the_declared_defaults() {
        for yaml in [
            "{}",
            "detection_defaults: sandstack",
            "detection_defaults: anomstak",
        ] {
            let mut m = mapping(yaml);
            assert_eq!(apply(&mut m).len(), ANOMSTACK.len(), "{yaml}");
            for (key, _) in ANOMSTACK {
                assert_eq!(m.get(*key), Some(keys::default_value(key)), "{yaml}: {key}");
            }
        }
    }

    /// Each key is a real one, and its sandstack default differs from
    /// Anomstack's (else it does not belong in the table).
    #[test]
    fn every_key_is_declared_and_differs() {
        for (key, text) in ANOMSTACK {
            assert!(keys::is_known(key), "{key} is not a declared key");
            let theirs: Value = serde_yaml_ng::from_str(text).expect("Anomstack's value");
            assert_ne!(keys::default_value(key), &theirs, "{key}");
        }
    }

    type Detection = (f64, u64, u64, u64, f64, u64, u64, u64, u64);

    fn detection(spec: &crate::config::BatchSpec) -> Detection {
        (
            spec.alert.threshold,
            spec.alert.smooth_n,
            spec.alert.snooze_n,
            spec.alert.recent_n,
            spec.change.threshold,
            spec.change.detect_last_n,
            spec.change.baseline_n,
            spec.change.smooth_n,
            spec.change.snooze_n,
        )
    }

    /// Through the loader with the shipped defaults file: each set as
    /// documented, a batch's own value kept, and `--set` (with_values)
    /// switching either way.
    #[test]
    fn a_batch_gets_the_set_it_names_and_keeps_its_own_values() {
        let (_dir, ours) = crate::config::test_folder("metric_batch: b\ndisable_ingest: true\n");
        assert_eq!(detection(&ours), (0.95, 1, 20, 3, 5.0, 3, 60, 3, 60));
        let theirs = crate::config::test_spec(
            "metric_batch: b\ndisable_ingest: true\ndetection_defaults: anomstack\nalert_snooze_n: 7\n",
        );
        assert_eq!(detection(&theirs), (0.8, 3, 7, 1, 3.5, 1, 0, 1, 3));

        let value = |t: &str| serde_yaml_ng::from_str::<Value>(t).expect("yaml");
        let switched =
            crate::config::with_values(&ours, &[("detection_defaults", value("anomstack"))])
                .expect("switch");
        assert_eq!(detection(&switched), (0.8, 3, 3, 1, 3.5, 1, 0, 1, 3));
        let back =
            crate::config::with_values(&switched, &[("detection_defaults", value("sandstack"))])
                .expect("back");
        assert_eq!(detection(&back), detection(&ours));
    }

    /// What loading a batch with `detection_defaults` set to `value` says.
    fn refusal(value: Value) -> String {
        let (_dir, ours) = crate::config::test_folder("metric_batch: b\ndisable_ingest: true\n");
        let errors =
            crate::config::with_values(&ours, &[("detection_defaults", value)]).unwrap_err();
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A template would be read as one set after the values were picked
    /// from another: it is read as written, and refused.
    #[test]
    fn a_templated_choice_is_refused() {
        let text = refusal(Value::String("{{ 'anomstack' }}".into()));
        assert!(
            text.contains("detection_defaults") && text.contains("use sandstack, anomstack"),
            "{text}"
        );
    }

    #[test]
    fn a_misspelt_set_is_refused_with_the_choices() {
        let text = refusal(Value::String("anomstak".into()));
        assert!(
            text.contains("detection_defaults") && text.contains("did you mean `anomstack`"),
            "{text}"
        );
    }
}

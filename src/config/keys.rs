//! The key table: every configuration key sandstack knows, declared once in
//! [`super::sections`] (or below, for the per-job keys and Anomstack's keys
//! that are accepted without being used), with its default and doc. It
//! answers the unknown-key warnings (with a did-you-mean), the defaults the
//! reader falls back to, `sandstack keys` and the README's table.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_yaml_ng::Value;

use super::declare::KeyDoc;
use super::sections::{
    AlertSettings, BatchKeys, ChangeSettings, DeleteSettings, HttpPolicy, IngestSettings,
    JobLimits, LlmAlertSettings, PreprocessSettings, SandboxLimits, ScoreSettings,
    ThresholdAlertSettings, TrainSettings,
};
use super::Job;

/// The sections' keys, in the order they are documented.
pub fn declared() -> impl Iterator<Item = &'static KeyDoc> {
    [
        BatchKeys::KEYS,
        IngestSettings::KEYS,
        SandboxLimits::KEYS,
        HttpPolicy::KEYS,
        PreprocessSettings::KEYS,
        TrainSettings::KEYS,
        ScoreSettings::KEYS,
        AlertSettings::KEYS,
        ThresholdAlertSettings::KEYS,
        ChangeSettings::KEYS,
        LlmAlertSettings::KEYS,
        JobLimits::KEYS,
        DeleteSettings::KEYS,
    ]
    .into_iter()
    .flatten()
}

/// Keys every job has, `<job>` standing for its name.
pub const JOB_KEYS: &[KeyDoc] = &[
    KeyDoc {
        name: "<job>_cron_schedule",
        default: "(per job)",
        doc: "when the job runs: cron, 5 fields (Dagster's), or 6 with seconds first",
        section: "schedule",
    },
    KeyDoc {
        name: "<job>_default_schedule_status",
        default: "STOPPED",
        doc: "RUNNING or STOPPED: whether `sandstack run` schedules the job; left unset, the summary is RUNNING for a batch with `alert_methods` (the folder's one summary, see \"Alerts\")",
        section: "schedule",
    },
    KeyDoc {
        name: "disable_<job>",
        default: "false",
        doc: "turn the job off (llmalert is off unless set to false, and its `llmalert_sql` is only rendered then)",
        section: "schedule",
    },
    KeyDoc {
        name: "<job>_sql",
        default: "(shipped)",
        doc: "the job's SQL template (also `dashboard_sql`); exactly one statement",
        section: "schedule",
    },
];

/// Anomstack keys that sandstack accepts without using them (yet), so a
/// migrated folder loads without a wall of warnings.
pub const ANOMSTACK_ACCEPTED: &[&str] = &[
    "gcp_project_id",
    "project_id",
    "dataset",
    "model_name",
    "alert_metric_rounding",
    "plot_max_n",
    "plot_smooth_n",
    "plot_metric_timestamp_max_days_ago",
    "score_metric_timestamp_max_days_ago",
    "change_max_n",
    "summary_metric_timestamp_max_days_ago",
    "slack_channel",
    "email_to",
    "preprocess_diff_n",
    "preprocess_smooth_n",
    "preprocess_lags_n",
    "metrics_dir",
    "dashboard_stale_metric_max_days_ago",
    "prompt_fn",
];

/// Keys whose text is sent as written, never rendered as a template: a
/// prompt may hold `{{` for the model's sake; `detection_defaults` picks
/// values before anything renders, so a template there would be read as one
/// choice and acted on as another (it is refused, as written, instead).
const PLAIN_TEXT: &[&str] = &[
    "detection_defaults",
    "llmalert_anomaly_agent_detection_prompt",
    "llmalert_anomaly_agent_verification_prompt",
    "llmalert_anomaly_agent_system_prompt",
];

/// Templates rendered each time they are used, with run-time variables:
/// Anomstack's dashboard passes `last_n` (or `cutoff_time`) to
/// `dashboard_sql`. At load they are only checked, with representative
/// values.
pub const RENDERED_AT_USE: &[&str] = &["dashboard_sql"];

/// Whether sandstack renders `key`'s value at load: it reads the key and
/// needs nothing from the run. Keys it accepts without using, and keys it
/// does not know, are left as written (Anomstack renders a key only when a
/// job uses it).
pub fn is_rendered(key: &str) -> bool {
    is_known(key)
        && !is_unused(key)
        && !RENDERED_AT_USE.contains(&key)
        && !PLAIN_TEXT.contains(&key)
}

/// An Anomstack key sandstack accepts but does not use.
fn is_unused(key: &str) -> bool {
    ANOMSTACK_ACCEPTED.contains(&key)
}

/// Keys in `map` that sandstack accepts from Anomstack but does not use.
pub fn unused_in(map: &serde_yaml_ng::Mapping) -> Vec<&str> {
    map.keys()
        .filter_map(Value::as_str)
        .filter(|k| is_unused(k))
        .collect()
}

/// The keys one job has.
fn job_keys(job: Job) -> [String; 4] {
    let n = job.name();
    [
        format!("{n}_cron_schedule"),
        format!("{n}_default_schedule_status"),
        format!("disable_{n}"),
        format!("{n}_sql"),
    ]
}

/// Whether `key` is a per-job key (`<job>_cron_schedule`,
/// `<job>_default_schedule_status`, `disable_<job>`, `<job>_sql`).
pub fn is_job_key(key: &str) -> bool {
    Job::ALL
        .iter()
        .any(|job| job_keys(*job).iter().any(|k| k == key))
}

pub fn is_known(key: &str) -> bool {
    key == "metric_batch"
        || declared().any(|k| k.name == key)
        || ANOMSTACK_ACCEPTED.contains(&key)
        || RENDERED_AT_USE.contains(&key)
        || is_job_key(key)
}

/// The closest known key, if one is close enough to be a likely typo.
pub fn suggest(key: &str) -> Option<String> {
    let mut candidates: Vec<String> = declared()
        .map(|k| k.name.to_string())
        .chain(ANOMSTACK_ACCEPTED.iter().map(|k| k.to_string()))
        .collect();
    for job in Job::ALL {
        candidates.extend(job_keys(job));
    }
    super::choices::closest(key, candidates.iter().map(String::as_str)).map(str::to_string)
}

/// A declared key's default, parsed from its YAML text once.
pub fn default_value(key: &str) -> &'static Value {
    static DEFAULTS: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    static NULL: Value = Value::Null;
    DEFAULTS
        .get_or_init(|| {
            declared()
                .map(|k| {
                    let v = serde_yaml_ng::from_str(k.default).unwrap_or(Value::Null);
                    (k.name, v)
                })
                .collect()
        })
        .get(key)
        .unwrap_or(&NULL)
}

/// The key table in Markdown, as `sandstack keys` prints it and the README
/// holds it.
pub fn markdown_table() -> String {
    let mut out = String::from("| key | default | section | meaning |\n|---|---|---|---|\n");
    for k in declared().chain(JOB_KEYS) {
        let default = match k.default {
            "~" => "(none)",
            d => d,
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            k.name,
            default.replace('|', "\\|"),
            k.section,
            k.doc.trim()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(
            suggest("alert_treshold").as_deref(),
            Some("alert_threshold")
        );
        assert_eq!(
            suggest("ingest_cron_schedul").as_deref(),
            Some("ingest_cron_schedule")
        );
        assert_eq!(suggest("completely_different"), None);
    }

    #[test]
    fn job_keys_are_known() {
        assert!(is_known("train_cron_schedule"));
        assert!(is_known("disable_alert"));
        assert!(is_known("change_default_schedule_status"));
        assert!(!is_known("trian_cron_schedule"));
    }

    #[test]
    fn every_key_is_declared_once_and_its_default_reads() {
        let mut seen = std::collections::BTreeSet::new();
        for k in declared() {
            assert!(seen.insert(k.name), "{} is declared twice", k.name);
            assert!(!k.doc.trim().is_empty(), "{} has no doc", k.name);
            assert!(
                serde_yaml_ng::from_str::<Value>(k.default).is_ok(),
                "{}: default {:?} is not YAML",
                k.name,
                k.default
            );
            assert!(
                !ANOMSTACK_ACCEPTED.contains(&k.name),
                "{} is also 'accepted'",
                k.name
            );
        }
        // Reading every section at its defaults panics if one does not read.
        let _ = (
            BatchKeys::default(),
            IngestSettings::default(),
            SandboxLimits::default(),
            HttpPolicy::default(),
            PreprocessSettings::default(),
            TrainSettings::default(),
            ScoreSettings::default(),
            AlertSettings::default(),
            ThresholdAlertSettings::default(),
            ChangeSettings::default(),
            LlmAlertSettings::default(),
            JobLimits::default(),
            DeleteSettings::default(),
        );
    }

    #[test]
    fn the_readme_holds_the_key_table() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- keys:begin (generated by `sandstack keys`) -->\n";
        let start = readme
            .find(begin)
            .expect("README has the keys:begin marker")
            + begin.len();
        let end = readme
            .find("<!-- keys:end -->")
            .expect("README has the keys:end marker");
        assert!(
            readme[start..end] == markdown_table(),
            "the README's key table is out of date: replace it with `sandstack keys`"
        );
    }

    #[test]
    fn the_shipped_defaults_file_uses_only_known_keys() {
        let text = include_str!("../../metrics/defaults/defaults.yaml");
        let map: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(text).expect("defaults.yaml");
        for k in map.keys().filter_map(Value::as_str) {
            assert!(is_known(k), "defaults.yaml sets unknown key {k}");
        }
    }
}

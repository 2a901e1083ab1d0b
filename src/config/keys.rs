//! The configuration keys sandstack knows, for unknown-key warnings with a
//! did-you-mean suggestion.

use super::Job;

/// Keys read by [`super::BatchSpec`].
pub const SPEC_KEYS: &[&str] = &[
    "metric_batch",
    "db",
    "table_key",
    "model_path",
    "disable_batch",
    "alert_methods",
    "tholdalert_methods",
    "tholdalert_thresholds",
    "tholdalert_snooze_n",
    "ingest_fn",
    "ingest_fn_name",
    "ingest_sql",
    "preprocess_fn",
    "preprocess_params",
    "model_configs",
    "model_combination_method",
    "train_max_n",
    "train_min_n",
    "train_metric_timestamp_max_days_ago",
    "train_exclude_metrics",
    "score_max_n",
    "score_exclude_metrics",
    "alert_threshold",
    "alert_smooth_n",
    "alert_snooze_n",
    "alert_recent_n",
    "alert_max_n",
    "alert_always",
    "alert_exclude_metrics",
    "alert_metric_timestamp_max_days_ago",
    "change_threshold",
    "change_detect_last_n",
    "change_smooth_n",
    "change_snooze_n",
    "change_include_metrics",
    "change_exclude_metrics",
    "change_metric_timestamp_max_days_ago",
    "delete_after_n_days",
    "ingest_metric_rounding",
    "metric_tags",
    "ingest_fuel",
    "ingest_timeout_s",
    "ingest_memory_mb",
    "ingest_max_rows",
    "ingest_max_output_kb",
    "ingest_max_result_kb",
    "ingest_max_name_len",
    "ingest_timestamp_min",
    "ingest_timestamp_max",
    "ingest_env",
    "http_max_requests",
    "http_max_response_kb",
    "http_timeout_s",
    "http_allow_private",
    "http_allow_hosts",
    "http_rewrite",
    "record_runs",
    "catch_up",
];

/// Anomstack keys that sandstack accepts without using them (yet), so a
/// migrated folder loads without a wall of warnings.
pub const ANOMSTACK_ACCEPTED: &[&str] = &[
    "gcp_project_id",
    "project_id",
    "dataset",
    "model_name",
    "alert_metric_rounding",
    "llmalert_recent_n",
    "llmalert_smooth_n",
    "llmalert_metric_rounding",
    "llmalert_metric_timestamp_max_days_ago",
    "llmalert_prompt_max_n",
    "llmalert_exclude_metrics",
    "plot_max_n",
    "plot_smooth_n",
    "plot_metric_timestamp_max_days_ago",
    "score_metric_timestamp_max_days_ago",
    "change_max_n",
    "summary_metric_timestamp_max_days_ago",
    "dashboard_sql",
    "slack_channel",
    "email_to",
    "preprocess_diff_n",
    "preprocess_smooth_n",
    "preprocess_lags_n",
];

/// Whether `key` is a per-job key (`<job>_cron_schedule`,
/// `<job>_default_schedule_status`, `disable_<job>`, `<job>_sql`).
pub fn is_job_key(key: &str) -> bool {
    Job::ALL.iter().any(|job| {
        let n = job.name();
        key == format!("{n}_cron_schedule")
            || key == format!("{n}_default_schedule_status")
            || key == format!("disable_{n}")
            || key == format!("{n}_sql")
    }) || key == "disable_dashboard"
}

pub fn is_known(key: &str) -> bool {
    SPEC_KEYS.contains(&key) || ANOMSTACK_ACCEPTED.contains(&key) || is_job_key(key)
}

/// The closest known key, if one is close enough to be a likely typo.
pub fn suggest(key: &str) -> Option<String> {
    let mut candidates: Vec<String> = SPEC_KEYS
        .iter()
        .chain(ANOMSTACK_ACCEPTED)
        .map(|k| k.to_string())
        .collect();
    for job in Job::ALL {
        let n = job.name();
        candidates.push(format!("{n}_cron_schedule"));
        candidates.push(format!("{n}_default_schedule_status"));
        candidates.push(format!("disable_{n}"));
        candidates.push(format!("{n}_sql"));
    }
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(key, &c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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
}

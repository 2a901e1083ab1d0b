//! `BatchSpec`: one metric batch's configuration, typed, with Anomstack's
//! defaults for every key a batch does not set.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cron_expr::CronExpr;
use super::error::ConfigError;
use super::fields::FieldReader;

/// The jobs a batch can run, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Ingest,
    Train,
    Score,
    Alert,
    Change,
    Llmalert,
    Plot,
    Delete,
    Summary,
}

impl Job {
    pub const ALL: [Job; 9] = [
        Job::Ingest,
        Job::Train,
        Job::Score,
        Job::Alert,
        Job::Change,
        Job::Llmalert,
        Job::Plot,
        Job::Delete,
        Job::Summary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Ingest => "ingest",
            Job::Train => "train",
            Job::Score => "score",
            Job::Alert => "alert",
            Job::Change => "change",
            Job::Llmalert => "llmalert",
            Job::Plot => "plot",
            Job::Delete => "delete",
            Job::Summary => "summary",
        }
    }

    /// Anomstack's default schedule for each job.
    pub fn default_cron(self) -> &'static str {
        match self {
            Job::Ingest => "*/3 * * * *",
            Job::Train => "0 * * * *",
            Job::Score => "*/4 * * * *",
            Job::Alert => "*/5 * * * *",
            Job::Change => "*/5 * * * *",
            Job::Llmalert => "*/5 * * * *",
            Job::Plot => "*/5 * * * *",
            Job::Delete => "0 6 * * *",
            Job::Summary => "0 9 * * *",
        }
    }

    /// The SQL template key the job renders, as Anomstack names it.
    pub fn sql_key(self) -> Option<&'static str> {
        match self {
            Job::Ingest => None,
            Job::Train => Some("train_sql"),
            Job::Score => Some("score_sql"),
            Job::Alert => Some("alert_sql"),
            Job::Change => Some("change_sql"),
            Job::Llmalert => Some("llmalert_sql"),
            Job::Plot => Some("plot_sql"),
            Job::Delete => Some("delete_sql"),
            Job::Summary => Some("summary_sql"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ScheduleStatus {
    Running,
    Stopped,
}

/// When and whether a job of a batch runs.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    pub cron: CronExpr,
    pub status: ScheduleStatus,
    /// `disable_<job>: true`.
    pub disabled: bool,
}

/// Where a batch's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestSource {
    /// Python run in the sandbox.
    Python(PythonSource),
    /// DuckDB SQL run natively.
    Sql(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PythonSource {
    /// The rendered code.
    pub code: String,
    /// File name shown in tracebacks: the included `.py` when the value is
    /// one include (so line numbers match the file), else `<file:key>`.
    pub filename: String,
    /// The function to call, with its default arguments.
    pub function: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_name: String,
    #[serde(default)]
    pub model_tag: Option<String>,
    #[serde(default)]
    pub model_params: BTreeMap<String, serde_json::Value>,
}

impl ModelConfig {
    pub fn tag(&self) -> String {
        self.model_tag
            .clone()
            .unwrap_or_else(|| self.model_name.to_lowercase())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessParams {
    #[serde(default = "one")]
    pub diff_n: u32,
    #[serde(default = "three")]
    pub smooth_n: u32,
    #[serde(default = "five")]
    pub lags_n: u32,
    #[serde(default)]
    pub freq: Option<String>,
    #[serde(default = "mean")]
    pub freq_agg: String,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn five() -> u32 {
    5
}
fn mean() -> String {
    "mean".into()
}

impl Default for PreprocessParams {
    fn default() -> Self {
        PreprocessParams {
            diff_n: 1,
            smooth_n: 3,
            lags_n: 5,
            freq: None,
            freq_agg: "mean".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default)]
    pub upper: Option<f64>,
    #[serde(default)]
    pub lower: Option<f64>,
}

/// The sandbox's limits for one batch's ingest runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxLimits {
    pub fuel: u64,
    pub timeout_s: f64,
    pub memory_mb: u64,
    pub max_rows: u64,
    pub max_output_kb: u64,
    pub max_result_kb: u64,
    pub http_max_requests: u64,
    pub http_max_response_kb: u64,
    pub http_timeout_s: f64,
    /// Longest metric name stored, in characters (SQL ingests too).
    pub max_name_len: u64,
    /// Range of stored times, µs since the epoch (SQL ingests too).
    pub timestamp_min_us: i64,
    pub timestamp_max_us: i64,
}

/// `ingest_timestamp_min` and `ingest_timestamp_max` by default.
pub const DEFAULT_TIMESTAMP_RANGE: (&str, &str) = ("1900-01-01", "2200-01-01");

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel: 20_000_000_000,
            timeout_s: 30.0,
            memory_mb: 1024,
            max_rows: 100_000,
            max_output_kb: 256,
            max_result_kb: 65_536,
            http_max_requests: 100,
            http_max_response_kb: 10_240,
            http_timeout_s: 10.0,
            max_name_len: 200,
            timestamp_min_us: super::fields::parse_utc_us(DEFAULT_TIMESTAMP_RANGE.0).unwrap_or(0),
            timestamp_max_us: super::fields::parse_utc_us(DEFAULT_TIMESTAMP_RANGE.1)
                .unwrap_or(i64::MAX),
        }
    }
}

/// Who the sandbox's HTTP may reach.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HttpPolicy {
    /// Allow loopback, private, link-local and metadata addresses.
    pub allow_private: bool,
    /// If non-empty, the only hosts that may be reached.
    pub allow_hosts: Vec<String>,
    /// URL prefix rewrites (`https://api.example.com` -> `http://127.0.0.1:8080`),
    /// for tests and local mirrors; the policy applies to the rewritten URL.
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub metric_batch: String,
    /// The batch's YAML file.
    pub file: PathBuf,
    pub db: String,
    pub table_key: String,
    pub model_path: String,
    pub disable_batch: bool,
    pub ingest: IngestSource,
    /// A preprocess function other than the shipped default, run in the
    /// sandbox; None means the native equivalent of the shipped
    /// `defaults/python/preprocess.py`.
    pub preprocess_fn: Option<PythonSource>,
    /// Rendered SQL templates by key (`train_sql`, ...).
    pub sql: BTreeMap<String, String>,
    pub schedules: BTreeMap<Job, JobSchedule>,
    pub alert_methods: Vec<String>,
    pub tholdalert_methods: Vec<String>,
    pub tholdalert_thresholds: BTreeMap<String, Thresholds>,
    pub tholdalert_snooze_n: u64,
    pub model_configs: Vec<ModelConfig>,
    pub model_combination_method: String,
    pub train_max_n: u64,
    pub train_min_n: u64,
    pub train_metric_timestamp_max_days_ago: u64,
    pub train_exclude_metrics: Vec<String>,
    pub score_max_n: u64,
    pub score_exclude_metrics: Vec<String>,
    pub preprocess_params: PreprocessParams,
    pub alert_threshold: f64,
    pub alert_smooth_n: u64,
    pub alert_snooze_n: u64,
    pub alert_recent_n: u64,
    pub alert_max_n: u64,
    pub alert_always: bool,
    pub alert_exclude_metrics: Vec<String>,
    pub alert_metric_timestamp_max_days_ago: u64,
    pub change_threshold: f64,
    pub change_detect_last_n: u64,
    pub change_smooth_n: u64,
    pub change_snooze_n: u64,
    pub change_include_metrics: Vec<String>,
    pub change_exclude_metrics: Vec<String>,
    pub change_metric_timestamp_max_days_ago: u64,
    pub delete_after_n_days: u64,
    pub ingest_metric_rounding: i64,
    pub metric_tags: BTreeMap<String, serde_json::Value>,
    pub limits: SandboxLimits,
    pub http: HttpPolicy,
    /// Names of host environment variables the guest may read.
    pub ingest_env: Vec<String>,
    pub record_runs: bool,
    pub catch_up: bool,
    /// Every rendered key, for SQL templates and later jobs.
    pub values: BTreeMap<String, serde_json::Value>,
}

impl BatchSpec {
    /// The jobs not turned off with `disable_<job>`, whatever their
    /// schedule status (RUNNING or STOPPED).
    pub fn scheduled_jobs(&self) -> impl Iterator<Item = (Job, &JobSchedule)> {
        self.schedules
            .iter()
            .filter(|(_, s)| !s.disabled)
            .map(|(j, s)| (*j, s))
    }
}

/// Read a rendered mapping into a spec. `raw_ingest_fn` is the value before
/// rendering, used to find the file a traceback should name.
pub(super) fn read_spec(
    file: &std::path::Path,
    name: &str,
    map: &serde_yaml_ng::Mapping,
    raw_ingest_fn: Option<&str>,
    raw_preprocess_fn: Option<&str>,
    origins: BTreeMap<String, PathBuf>,
) -> Result<BatchSpec, Vec<ConfigError>> {
    let mut r = FieldReader::new(file, map, origins);
    let d = SandboxLimits::default();

    let ingest_fn = r.opt_string("ingest_fn");
    let ingest_sql = r.opt_string("ingest_sql");
    let function = r.string("ingest_fn_name", "ingest");
    let ingest = match (ingest_fn, ingest_sql) {
        (Some(code), None) => {
            let filename = raw_ingest_fn
                .and_then(super::template::sole_include)
                .unwrap_or_else(|| format!("<{}:ingest_fn>", file.display()));
            Some(IngestSource::Python(PythonSource {
                code,
                filename,
                function,
            }))
        }
        (None, Some(sql)) => Some(IngestSource::Sql(sql)),
        (Some(_), Some(_)) => {
            r.bad_value(
                "ingest_fn",
                "set either ingest_fn (Python) or ingest_sql (SQL), not both",
            );
            None
        }
        (None, None) => {
            r.bad_value(
                "ingest_fn",
                "a batch needs ingest_fn (Python) or ingest_sql (SQL) to get its metrics",
            );
            None
        }
    };

    let mut schedules = BTreeMap::new();
    for job in Job::ALL {
        let key = format!("{}_cron_schedule", job.name());
        let text = r.string(&key, job.default_cron());
        let cron = match CronExpr::parse(&text) {
            Ok(c) => Some(c),
            Err(message) => {
                r.errors.push(ConfigError::BadCron {
                    file: r.origin(&key),
                    key: key.clone(),
                    expr: text.clone(),
                    message,
                });
                None
            }
        };
        let status_key = format!("{}_default_schedule_status", job.name());
        let status_text = r.string(&status_key, "STOPPED");
        let status = match status_text.to_ascii_uppercase().as_str() {
            "RUNNING" => ScheduleStatus::Running,
            "STOPPED" => ScheduleStatus::Stopped,
            _ => {
                r.bad_value(
                    &status_key,
                    format!("must be RUNNING or STOPPED, found \"{status_text}\""),
                );
                ScheduleStatus::Stopped
            }
        };
        let disabled = r.bool(&format!("disable_{}", job.name()), job == Job::Llmalert);
        if let Some(cron) = cron {
            schedules.insert(
                job,
                JobSchedule {
                    cron,
                    status,
                    disabled,
                },
            );
        }
    }

    let mut sql = BTreeMap::new();
    for job in Job::ALL {
        if let Some(key) = job.sql_key() {
            if let Some(text) = r.opt_string(key) {
                sql.insert(key.to_string(), text);
            }
        }
    }
    if let Some(text) = r.opt_string("dashboard_sql") {
        sql.insert("dashboard_sql".into(), text);
    }

    let model_configs: Vec<ModelConfig> = r
        .structured(
            "model_configs",
            "a list of {model_name, model_tag, model_params}",
        )
        .unwrap_or_else(default_models);
    let model_combination_method = r.string("model_combination_method", "mean");
    if !["mean", "min", "max"].contains(&model_combination_method.as_str()) {
        r.bad_value(
            "model_combination_method",
            format!("must be mean, min or max, found \"{model_combination_method}\""),
        );
    }
    let preprocess_params: PreprocessParams = r
        .structured(
            "preprocess_params",
            "a mapping with diff_n, smooth_n, lags_n, freq, freq_agg",
        )
        .unwrap_or_default();
    let tholdalert_thresholds: BTreeMap<String, Thresholds> = r
        .structured(
            "tholdalert_thresholds",
            "a mapping of metric name to {upper, lower}",
        )
        .unwrap_or_default();
    let metric_tags: BTreeMap<String, serde_json::Value> = r
        .structured("metric_tags", "a mapping of metric name to tags")
        .unwrap_or_default();

    let table_key = r.string("table_key", "metrics");
    if let Err(message) = super::validate_table_key(&table_key) {
        r.bad_value("table_key", message);
    }

    let limits = SandboxLimits {
        fuel: r.u64("ingest_fuel", d.fuel),
        timeout_s: r.seconds("ingest_timeout_s", d.timeout_s),
        memory_mb: r.u64("ingest_memory_mb", d.memory_mb),
        max_rows: r.u64("ingest_max_rows", d.max_rows),
        max_output_kb: r.u64("ingest_max_output_kb", d.max_output_kb),
        max_result_kb: r.u64("ingest_max_result_kb", d.max_result_kb),
        http_max_requests: r.u64("http_max_requests", d.http_max_requests),
        http_max_response_kb: r.u64("http_max_response_kb", d.http_max_response_kb),
        http_timeout_s: r.seconds("http_timeout_s", d.http_timeout_s),
        max_name_len: r.u64("ingest_max_name_len", d.max_name_len),
        timestamp_min_us: r.utc_time("ingest_timestamp_min", d.timestamp_min_us),
        timestamp_max_us: r.utc_time("ingest_timestamp_max", d.timestamp_max_us),
    };
    if limits.timestamp_min_us >= limits.timestamp_max_us {
        r.bad_value(
            "ingest_timestamp_max",
            "must be later than ingest_timestamp_min",
        );
    }
    if limits.memory_mb > 4096 {
        r.bad_value(
            "ingest_memory_mb",
            format!(
                "must be at most 4096 (a 32-bit guest's address space), found {}",
                limits.memory_mb
            ),
        );
    }

    let spec = BatchSpec {
        metric_batch: name.to_string(),
        file: file.to_path_buf(),
        db: r.string("db", "duckdb"),
        table_key,
        model_path: r.string("model_path", "local://./models"),
        disable_batch: r.bool("disable_batch", false),
        ingest: ingest.unwrap_or(IngestSource::Sql(String::new())),
        preprocess_fn: custom_preprocess(r.opt_string("preprocess_fn"), raw_preprocess_fn, file),
        sql,
        schedules,
        alert_methods: r.string_list("alert_methods"),
        tholdalert_methods: r.string_list("tholdalert_methods"),
        tholdalert_thresholds,
        tholdalert_snooze_n: r.u64("tholdalert_snooze_n", 3),
        model_configs,
        model_combination_method,
        train_max_n: r.u64("train_max_n", 2500),
        train_min_n: r.u64("train_min_n", 14),
        train_metric_timestamp_max_days_ago: r.u64("train_metric_timestamp_max_days_ago", 90),
        train_exclude_metrics: r.string_list("train_exclude_metrics"),
        score_max_n: r.u64("score_max_n", 25),
        score_exclude_metrics: r.string_list("score_exclude_metrics"),
        preprocess_params,
        alert_threshold: r.f64("alert_threshold", 0.8),
        alert_smooth_n: r.u64("alert_smooth_n", 3),
        alert_snooze_n: r.u64("alert_snooze_n", 3),
        alert_recent_n: r.u64("alert_recent_n", 1),
        alert_max_n: r.u64("alert_max_n", 250),
        alert_always: r.bool("alert_always", false),
        alert_exclude_metrics: r.string_list("alert_exclude_metrics"),
        alert_metric_timestamp_max_days_ago: r.u64("alert_metric_timestamp_max_days_ago", 45),
        change_threshold: r.f64("change_threshold", 3.5),
        change_detect_last_n: r.u64("change_detect_last_n", 1),
        change_smooth_n: r.u64("change_smooth_n", 1),
        change_snooze_n: r.u64("change_snooze_n", 3),
        change_include_metrics: r.string_list("change_include_metrics"),
        change_exclude_metrics: r.string_list("change_exclude_metrics"),
        change_metric_timestamp_max_days_ago: r.u64("change_metric_timestamp_max_days_ago", 45),
        delete_after_n_days: r.u64("delete_after_n_days", 365),
        ingest_metric_rounding: r.i64("ingest_metric_rounding", 4),
        metric_tags,
        limits,
        http: HttpPolicy {
            allow_private: r.bool("http_allow_private", false),
            allow_hosts: r.string_list("http_allow_hosts"),
            rewrite: r
                .structured(
                    "http_rewrite",
                    "a mapping of URL prefix to replacement prefix",
                )
                .unwrap_or_default(),
        },
        ingest_env: r.string_list("ingest_env"),
        record_runs: r.bool("record_runs", false),
        catch_up: r.bool("catch_up", false),
        values: r.all_as_json(),
    };
    if r.errors.is_empty() {
        Ok(spec)
    } else {
        Err(r.errors)
    }
}

/// The shipped default preprocess, which runs natively.
const SHIPPED_PREPROCESS: &str = include_str!("../../metrics/defaults/python/preprocess.py");

/// A preprocess function that differs from the shipped default (set by the
/// batch, or edited in the defaults folder) runs in the sandbox.
fn custom_preprocess(
    code: Option<String>,
    raw: Option<&str>,
    file: &std::path::Path,
) -> Option<PythonSource> {
    let code = code?;
    if code.trim() == SHIPPED_PREPROCESS.trim() || code.trim().is_empty() {
        return None;
    }
    let filename = raw
        .and_then(super::template::sole_include)
        .unwrap_or_else(|| format!("<{}:preprocess_fn>", file.display()));
    Some(PythonSource {
        code,
        filename,
        function: "preprocess".into(),
    })
}

fn default_models() -> Vec<ModelConfig> {
    ["PCA", "KNN"]
        .iter()
        .map(|name| ModelConfig {
            model_name: name.to_string(),
            model_tag: Some(format!("{}_default", name.to_lowercase())),
            model_params: BTreeMap::from([("contamination".to_string(), serde_json::json!(0.01))]),
        })
        .collect()
}

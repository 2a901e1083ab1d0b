//! Each job's settings as a small typed section, every key declared once
//! (type, key, default, doc) with [`crate::settings!`]. `read_spec` reads
//! the sections; [`super::keys`] lists their keys for the unknown-key
//! warnings, `sandstack keys` and the README.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::choices::{AlertMethod, Choice, CombinationMethod, Db, DetectionDefaults, ModelKind};
use super::fields::{Described, Seconds, Structured, UtcMicros};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model_name: ModelKind,
    #[serde(default)]
    pub model_tag: Option<String>,
    #[serde(default)]
    pub model_params: BTreeMap<String, serde_json::Value>,
}

impl ModelConfig {
    pub fn tag(&self) -> String {
        self.model_tag
            .clone()
            .unwrap_or_else(|| self.model_name.name().to_lowercase())
    }
}

/// Longest model name accepted for `llmalert_model`.
const MAX_LLM_MODEL_LEN: usize = 200;

/// Whether `model` can name the LLM alert's chat model: printable, at most
/// 200 characters, and not Anomstack's `random` (a pick among
/// `ANOMSTACK_LLMALERT_MODELS` per run, which no replay could repeat).
/// Checked at load for the batch's `llmalert_model` and at run time for
/// the model the operator's variables name.
pub fn check_llm_model(model: &str) -> Result<(), String> {
    if model.len() > MAX_LLM_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(format!(
            "llmalert_model must be a model name of at most {MAX_LLM_MODEL_LEN} printable characters"
        ));
    }
    if model.trim().eq_ignore_ascii_case("random") {
        return Err(
            "llmalert_model: random (Anomstack's pick among ANOMSTACK_LLMALERT_MODELS) would make runs \
             unrepeatable; name one model"
                .into(),
        );
    }
    Ok(())
}

/// The shortest and longest `preprocess_params.freq`: a shorter bin over
/// a day of data makes tens of thousands of bins per metric, and a longer
/// one than a year holds every observation a batch keeps.
pub const FREQ_RANGE_US: (i64, i64) = (1_000_000, 366 * 86_400_000_000);

/// What a `preprocess_params.freq` may be, for the errors that refuse one.
pub const FREQ_EXPECTED: &str = "use one from 1s to 366D, e.g. 30s, 5min, 1h, 1D";

/// The aggregates `preprocess_params.freq_agg` may name.
pub const FREQ_AGGS: [&str; 8] = [
    "mean", "sum", "min", "max", "median", "first", "last", "count",
];

/// A pandas offset alias (`preprocess_params.freq`) as microseconds: `30s`,
/// `5min` (or `5T`), `1h` (or `H`), `1D`, within [`FREQ_RANGE_US`]; None
/// for anything else.
pub fn freq_micros(freq: &str) -> Option<i64> {
    let f = freq.trim();
    let split = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
    let (num, unit) = f.split_at(split);
    let n: i64 = if num.is_empty() { 1 } else { num.parse().ok()? };
    let unit_us: i64 = match unit {
        "us" | "U" => 1,
        "ms" | "L" => 1_000,
        "s" | "S" => 1_000_000,
        "min" | "T" => 60_000_000,
        "h" | "H" => 3_600_000_000,
        "D" | "d" => 86_400_000_000,
        _ => return None,
    };
    if n <= 0 {
        return None;
    }
    n.checked_mul(unit_us)
        .filter(|us| (FREQ_RANGE_US.0..=FREQ_RANGE_US.1).contains(us))
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

impl PreprocessParams {
    /// The `freq` the batch resamples to, if it does (an empty one does not).
    pub fn resampling(&self) -> Option<&str> {
        self.freq.as_deref().filter(|f| !f.trim().is_empty())
    }
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

impl Described for Vec<ModelConfig> {
    const EXPECTED: &'static str = "a list of {model_name, model_tag, model_params}";
}
impl Described for PreprocessParams {
    const EXPECTED: &'static str = "a mapping with diff_n, smooth_n, lags_n, freq, freq_agg";
}
impl Described for BTreeMap<String, Thresholds> {
    const EXPECTED: &'static str = "a mapping of metric name to {upper, lower}";
}
impl Described for BTreeMap<String, serde_json::Value> {
    const EXPECTED: &'static str = "a mapping of metric name to tags";
}
impl Described for BTreeMap<String, String> {
    const EXPECTED: &'static str = "a mapping of URL prefix to replacement prefix";
}

crate::settings! {
    /// Where a batch's rows live and whether it runs at all.
    "batch" => pub struct BatchKeys {
        /// where `ingest_sql` runs: `duckdb` (over the batch's own rows), `sqlite` (or `turso`), `postgres`, `clickhouse`, `bigquery`, `snowflake`; the rows are stored in sandstack's own database either way
        db: Db = "db", "duckdb";
        /// the metrics table (`table` or `schema.table`)
        table_key: String = "table_key", "metrics";
        /// where models are saved (`local://DIR`)
        model_path: String = "model_path", "local://./models";
        /// turn the whole batch off
        disable_batch: bool = "disable_batch", "false";
        /// leave the batch out of the dashboard's pages (its jobs still run)
        disable_dashboard: bool = "disable_dashboard", "false";
        /// tags per metric name, carried into alerts
        metric_tags: BTreeMap<String, serde_json::Value> [Structured<BTreeMap<String, serde_json::Value>>] = "metric_tags", "{}";
    }
}

crate::settings! {
    /// Where the rows come from and how an ingest run is kept.
    "ingest" => pub struct IngestSettings {
        /// Python (a template, usually `{% include %}` of a `.py` file) defining the ingest function
        ingest_fn: Option<String> = "ingest_fn", "~";
        /// SQL that returns the rows (instead of `ingest_fn`): DuckDB over the batch's own rows, or the warehouse `db` names, in its dialect
        ingest_sql: Option<String> = "ingest_sql", "~";
        /// the function `ingest_fn` defines and sandstack calls (with its default arguments)
        fn_name: String = "ingest_fn_name", "ingest";
        /// decimals `metric_value` is rounded to
        metric_rounding: i64 = "ingest_metric_rounding", "4";
        /// host environment variables the code may read, by name; no others exist in the guest
        env: Vec<String> = "ingest_env", "[]";
        /// write a cassette of every scheduled Python run (`sandstack replay` plays it back)
        record_runs: bool = "record_runs", "false";
        /// after downtime, run the ticks missed since the last recorded run, with the clock at each
        catch_up: bool = "catch_up", "false";
        /// retries of a scheduled ingest whose failure can pass (network errors, HTTP 5xx, 408, 429, timeouts), 1, 2, 4 ... s apart; at most 10
        retries: u64 = "ingest_retries", "0";
    }
}

crate::settings! {
    /// The sandbox's limits for one batch's ingest runs.
    #[derive(Serialize)]
    "sandbox" => pub struct SandboxLimits {
        /// CPU budget per run, in wasm fuel (about one unit per instruction)
        fuel: u64 = "ingest_fuel", "20000000000";
        /// wall clock per run (at most 86400), including time waiting on HTTP and in `time.sleep`/`select`
        timeout_s: f64 [Seconds] = "ingest_timeout_s", "30";
        /// guest memory (at most 4096)
        memory_mb: u64 = "ingest_memory_mb", "1024";
        /// rows a run may return
        max_rows: u64 = "ingest_max_rows", "100000";
        /// stdout, stderr and log records together
        max_output_kb: u64 = "ingest_max_output_kb", "256";
        /// size of the returned data
        max_result_kb: u64 = "ingest_max_result_kb", "65536";
        /// requests per run (each redirect hop counts)
        http_max_requests: u64 = "http_max_requests", "100";
        /// size of one response
        http_max_response_kb: u64 = "http_max_response_kb", "10240";
        /// per request (`timeout=` may lower it)
        http_timeout_s: f64 [Seconds] = "http_timeout_s", "10";
        /// longest metric name stored, in characters (SQL ingests too)
        max_name_len: u64 = "ingest_max_name_len", "200";
        /// earliest `metric_timestamp` stored, a UTC date or date and time (SQL ingests too)
        timestamp_min_us: i64 [UtcMicros] = "ingest_timestamp_min", "1900-01-01";
        /// latest `metric_timestamp` stored (SQL ingests too)
        timestamp_max_us: i64 [UtcMicros] = "ingest_timestamp_max", "2200-01-01";
    }
}

crate::settings! {
    /// Who the sandbox's HTTP may reach.
    #[derive(Serialize)]
    "http" => pub struct HttpPolicy {
        /// allow addresses that are not globally reachable (loopback, private, link-local, metadata, this machine's own)
        allow_private: bool = "http_allow_private", "false";
        /// if set, the only hosts the code may reach (`*.example.com` allowed)
        allow_hosts: Vec<String> = "http_allow_hosts", "[]";
        /// URL prefix rewrites for local mirrors and tests; the code never sees the target
        rewrite: BTreeMap<String, String> [Structured<BTreeMap<String, String>>] = "http_rewrite", "{}";
    }
}

crate::settings! {
    /// The features models see (train and score).
    "preprocess" => pub struct PreprocessSettings {
        /// Python preprocess function; one other than the shipped default runs in the sandbox
        preprocess_fn: Option<String> = "preprocess_fn", "~";
        /// resample (`freq`, `freq_agg`), difference (`diff_n`), smooth (`smooth_n`), lag (`lags_n`)
        params: PreprocessParams [Structured<PreprocessParams>] = "preprocess_params", "{diff_n: 1, smooth_n: 3, lags_n: 5, freq: null, freq_agg: mean}";
    }
}

crate::settings! {
    /// The train job.
    "train" => pub struct TrainSettings {
        /// newest rows per metric a model is trained on
        max_n: u64 = "train_max_n", "2500";
        /// fewest rows a metric needs to be trained
        min_n: u64 = "train_min_n", "14";
        /// oldest row trained on, in days
        metric_timestamp_max_days_ago: u64 = "train_metric_timestamp_max_days_ago", "90";
        /// metrics not trained
        exclude_metrics: Vec<String> = "train_exclude_metrics", "[]";
        /// models per metric: `model_name` (PCA, KNN, IForest, ECOD, COPOD, HBOS, LOF, MAD, OCSVM: PyOD's, with its parameter names and defaults), `model_tag`, `model_params`
        model_configs: Vec<ModelConfig> [Structured<Vec<ModelConfig>>] = "model_configs", "[{model_name: PCA, model_tag: pca_default, model_params: {contamination: 0.01}}, {model_name: KNN, model_tag: knn_default, model_params: {contamination: 0.01}}]";
    }
}

crate::settings! {
    /// The score job.
    "score" => pub struct ScoreSettings {
        /// newest rows per metric scored
        max_n: u64 = "score_max_n", "25";
        /// metrics not scored
        exclude_metrics: Vec<String> = "score_exclude_metrics", "[]";
        /// how several models' probabilities become one score (mean, min, max)
        combination_method: CombinationMethod = "model_combination_method", "mean";
        /// decimals scores are rounded to (-1: not rounded)
        metric_rounding: i64 = "score_metric_rounding", "4";
    }
}

crate::settings! {
    /// The alert job.
    "alert" => pub struct AlertSettings {
        /// channels alerts and changes go to (email, slack, webhook, log)
        methods: Vec<AlertMethod> = "alert_methods", "[]";
        /// which built-in values the detection keys the folder leaves unset take: sandstack (chosen on the evaluation corpus) or anomstack (Anomstack's thresholds, smoothing, snoozes and whole-window change baseline); not a template
        detection_defaults: DetectionDefaults = "detection_defaults", "sandstack";
        /// smoothed score at which a metric alerts (anomstack: 0.8)
        threshold: f64 = "alert_threshold", "0.95";
        /// observations the score is smoothed over (anomstack: 3)
        smooth_n: u64 = "alert_smooth_n", "1";
        /// observations after an alert in which the metric does not alert again (anomstack: 3)
        snooze_n: u64 = "alert_snooze_n", "20";
        /// newest observations that may alert (anomstack: 1)
        recent_n: u64 = "alert_recent_n", "3";
        /// rows per metric read
        max_n: u64 = "alert_max_n", "250";
        /// every metric's newest observation alerts, whatever its score (to test the alert setup)
        always: bool = "alert_always", "false";
        /// metrics that never alert
        exclude_metrics: Vec<String> = "alert_exclude_metrics", "[]";
        /// oldest row read, in days
        metric_timestamp_max_days_ago: u64 = "alert_metric_timestamp_max_days_ago", "45";
        /// a scheduled job failing this many runs in a row sends one alert through `alert_methods`, and one more when it succeeds again; 0: never
        on_failure_n: u64 = "alert_on_failure_n", "3";
    }
}

crate::settings! {
    /// Threshold alerts (part of the alert job).
    "tholdalert" => pub struct ThresholdAlertSettings {
        /// turn threshold alerts off (Anomstack's defaults file sets it true)
        disabled: bool = "disable_tholdalert", "false";
        /// channels threshold alerts go to
        methods: Vec<AlertMethod> = "tholdalert_methods", "[]";
        /// newest observations checked against the bounds
        recent_n: u64 = "tholdalert_recent_n", "1";
        /// bounds per metric: `{metric: {upper, lower}}`
        thresholds: BTreeMap<String, Thresholds> [Structured<BTreeMap<String, Thresholds>>] = "tholdalert_thresholds", "{}";
        /// observations after a threshold alert in which the metric does not alert again
        snooze_n: u64 = "tholdalert_snooze_n", "3";
        /// metrics never checked against their bounds
        exclude_metrics: Vec<String> = "tholdalert_exclude_metrics", "[]";
    }
}

impl ThresholdAlertSettings {
    /// Whether there is any bound to check (thresholds on, and some set).
    pub fn checks_anything(&self) -> bool {
        !self.disabled && !self.thresholds.is_empty()
    }
}

crate::settings! {
    /// The change job.
    "change" => pub struct ChangeSettings {
        /// modified z-score beyond which a level change is reported (anomstack: 3.5)
        threshold: f64 = "change_threshold", "5";
        /// newest values tested against the earlier ones (anomstack: 1)
        detect_last_n: u64 = "change_detect_last_n", "3";
        /// how many values just before the newest they are tested against (at least 10); 0: every earlier one in the window (anomstack: 0; also 0 where the folder sets change_threshold itself)
        baseline_n: u64 = "change_baseline_n", "60";
        /// observations the values are smoothed over (anomstack: 1)
        smooth_n: u64 = "change_smooth_n", "3";
        /// observations after a change in which the metric does not report again (anomstack: 3)
        snooze_n: u64 = "change_snooze_n", "60";
        /// if set, the only metrics tested
        include_metrics: Vec<String> = "change_include_metrics", "[]";
        /// metrics not tested
        exclude_metrics: Vec<String> = "change_exclude_metrics", "[]";
        /// oldest row read, in days
        metric_timestamp_max_days_ago: u64 = "change_metric_timestamp_max_days_ago", "45";
    }
}

crate::settings! {
    /// The llmalert job: a chat model reads each metric's recent values and says which look anomalous.
    "llmalert" => pub struct LlmAlertSettings {
        /// newest observations that may alert; older ones go in the prompt as context only
        recent_n: u64 = "llmalert_recent_n", "5";
        /// observations the values are smoothed over (rolling mean) before the model sees them; 0: not smoothed
        smooth_n: u64 = "llmalert_smooth_n", "0";
        /// decimals the values in the prompt are rounded to (-1: not rounded)
        metric_rounding: i64 = "llmalert_metric_rounding", "-1";
        /// oldest row read, in days (a variable of `llmalert_sql`)
        metric_timestamp_max_days_ago: u64 = "llmalert_metric_timestamp_max_days_ago", "30";
        /// newest observations per metric put in the prompt
        prompt_max_n: u64 = "llmalert_prompt_max_n", "1000";
        /// metrics never sent to the model
        exclude_metrics: Vec<String> = "llmalert_exclude_metrics", "[]";
        /// the chat model; empty: ANOMSTACK_OPENAI_MODEL or ANOMSTACK_ANTHROPIC_MODEL, else the platform's default
        model: String = "llmalert_model", "''";
        /// send the metric's plot as an image too (for models that take images)
        include_plot: bool = "llmalert_include_plot", "false";
        /// instructions for the detection step (plain text, not a template); empty: sandstack's own
        detection_prompt: Option<String> = "llmalert_anomaly_agent_detection_prompt", "~";
        /// instructions for the verification step (plain text); empty: sandstack's own
        verification_prompt: Option<String> = "llmalert_anomaly_agent_verification_prompt", "~";
        /// Anomstack's older name for the detection prompt, used when that one is not set
        system_prompt: Option<String> = "llmalert_anomaly_agent_system_prompt", "~";
        /// observations after an LLM alert in which the metric does not alert again
        snooze_n: u64 = "llmalert_snooze_n", "3";
        /// requests to the model per run, retries included; past it the other metrics wait for the next run
        max_calls: u64 = "llmalert_max_calls", "100";
        /// prompt and answer tokens per run, as the model counts them; past it the other metrics wait for the next run
        max_tokens: u64 = "llmalert_max_tokens", "1000000";
    }
}

crate::settings! {
    /// What every job other than ingest shares.
    "jobs" => pub struct JobLimits {
        /// wall clock for one run of train, score, alert, change, plot, delete or summary; past it the run is stopped and stores nothing
        timeout_s: f64 [Seconds] = "job_timeout_s", "300";
    }
}

crate::settings! {
    /// The delete job (retention).
    "delete" => pub struct DeleteSettings {
        /// age in days after which `delete_sql` removes rows
        after_n_days: u64 = "delete_after_n_days", "365";
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::fields::{parse_utc_us, FieldReader};

    fn read<T>(yaml: &str, f: impl FnOnce(&mut FieldReader) -> T) -> (T, Vec<String>) {
        let map: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(yaml).expect("yaml");
        let mut r = FieldReader::new(Path::new("b.yaml"), &map, Default::default());
        let out = f(&mut r);
        (out, r.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn absent_keys_take_their_declared_defaults() {
        let d = SandboxLimits::default();
        assert_eq!(
            (d.fuel, d.timeout_s, d.memory_mb),
            (20_000_000_000, 30.0, 1024)
        );
        assert_eq!(
            d.timestamp_min_us,
            parse_utc_us("1900-01-01").expect("date")
        );
        let t = TrainSettings::default();
        assert_eq!((t.max_n, t.min_n), (2500, 14));
        assert_eq!(
            t.model_configs
                .iter()
                .map(|m| (m.model_name, m.tag()))
                .collect::<Vec<_>>(),
            vec![
                (ModelKind::Pca, "pca_default".to_string()),
                (ModelKind::Knn, "knn_default".to_string())
            ]
        );
        assert_eq!(
            ScoreSettings::default().combination_method,
            CombinationMethod::Mean
        );
        assert_eq!(
            PreprocessSettings::default().params,
            PreprocessParams::default()
        );
    }

    #[test]
    fn set_keys_are_read_with_their_types() {
        let (a, errors) = read(
            "alert_threshold: 0.5\nalert_methods: \"email, SLACK\"\nalert_exclude_metrics: [a, 2]\n",
            AlertSettings::read,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(a.threshold, 0.5);
        assert_eq!(a.methods, vec![AlertMethod::Email, AlertMethod::Slack]);
        assert_eq!(a.exclude_metrics, vec!["a".to_string(), "2".to_string()]);
        assert_eq!(a.snooze_n, 20, "unset keys keep their defaults");
    }

    #[test]
    fn a_wrong_value_is_an_error_naming_the_key_and_the_default_stands() {
        let (l, errors) = read(
            "ingest_timeout_s: 100000\ningest_fuel: lots\ningest_timestamp_min: yesterday\n",
            SandboxLimits::read,
        );
        assert_eq!(l.timeout_s, 30.0);
        assert_eq!(l.fuel, 20_000_000_000);
        assert_eq!(
            errors,
            vec![
                "b.yaml: key `ingest_fuel`: expected a whole number of 0 or more, found string \"lots\"",
                "b.yaml: key `ingest_timeout_s`: must be at most 86400 seconds (a day), found 100000",
                "b.yaml: key `ingest_timestamp_min`: must be a UTC date like 2026-01-01 or 2026-01-01T00:00:00, found \"yesterday\"",
            ]
        );
    }

    #[test]
    fn structured_keys_name_their_expected_shape() {
        let (t, errors) = read(
            "tholdalert_thresholds: [1, 2]\n",
            ThresholdAlertSettings::read,
        );
        assert!(t.thresholds.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "b.yaml: key `tholdalert_thresholds`: expected a mapping of metric name to {upper, lower}, found a list"
            ),
            "{errors:?}"
        );
    }
}

//! `BatchSpec`: one metric batch's configuration, typed, with Anomstack's
//! defaults for every key a batch does not set.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::choices::ScheduleStatus;
use super::cron_expr::CronExpr;
use super::error::ConfigError;
use super::fields::FieldReader;
use super::sections::{
    AlertSettings, BatchKeys, ChangeSettings, DeleteSettings, HttpPolicy, IngestSettings,
    JobLimits, LlmAlertSettings, PreprocessParams, PreprocessSettings, SandboxLimits,
    ScoreSettings, ThresholdAlertSettings, TrainSettings,
};

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
    /// None: `disable_ingest: true` and neither key set; the history comes
    /// from `sandstack import`.
    Imported,
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

#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub metric_batch: String,
    /// The batch's YAML file.
    pub file: PathBuf,
    /// Where `ingest_sql` runs.
    pub db: super::choices::Db,
    /// Checked at load ([`TableKey::claim`]): the store takes only this.
    pub table_key: super::TableKey,
    pub model_path: String,
    pub disable_batch: bool,
    /// Left out of the dashboard's pages (Anomstack's `disable_dashboard`).
    pub disable_dashboard: bool,
    pub metric_tags: BTreeMap<String, serde_json::Value>,
    pub ingest: IngestSource,
    pub ingest_settings: IngestSettings,
    /// A preprocess function other than the shipped default, run in the
    /// sandbox; None means the native equivalent of the shipped
    /// `defaults/python/preprocess.py`.
    pub preprocess_fn: Option<PythonSource>,
    pub preprocess_params: PreprocessParams,
    /// Rendered SQL templates by key (`train_sql`, ...).
    pub sql: BTreeMap<String, String>,
    pub schedules: BTreeMap<Job, JobSchedule>,
    pub limits: SandboxLimits,
    pub http: HttpPolicy,
    /// The policy's secrets this batch's runs get as placeholders
    /// (set by [`super::Policy::apply`]).
    pub secrets: Vec<super::secrets::SecretGrant>,
    pub train: TrainSettings,
    pub score: ScoreSettings,
    pub alert: AlertSettings,
    pub tholdalert: ThresholdAlertSettings,
    pub change: ChangeSettings,
    pub llmalert: LlmAlertSettings,
    pub jobs: JobLimits,
    pub delete: DeleteSettings,
    /// Every rendered key, for SQL templates and later jobs.
    pub values: BTreeMap<String, serde_json::Value>,
    /// What the spec was read from, to read it again with other values
    /// ([`super::with_values`]).
    pub(super) source: std::sync::Arc<BatchSource>,
}

/// A batch before rendering: its folder, its merged keys (defaults, file,
/// environment), where each came from, and the operator's policy, which
/// every spec read from it is held to.
#[derive(Debug, Default)]
pub(super) struct BatchSource {
    pub dir: PathBuf,
    /// Where includes may come from.
    pub scope: super::template::IncludeScope,
    pub merged: serde_yaml_ng::Mapping,
    /// The keys in `merged` that `detection_defaults` filled (from either
    /// set), so `merged_with` can fill them again for another choice.
    pub profiled: Vec<String>,
    pub origins: BTreeMap<String, PathBuf>,
    pub policy: std::sync::Arc<super::Policy>,
}

impl BatchSource {
    /// A renderer for this batch's templates: its folder, and where its
    /// includes may come from.
    pub fn renderer(&self) -> super::renderer::TemplateRenderer {
        super::renderer::TemplateRenderer::standalone(&self.dir, self.scope.clone())
    }

    /// The merged keys with `values` set over them, and the keys
    /// `detection_defaults` then fills (`values` may change it either way).
    pub fn merged_with(
        &self,
        values: &[(&str, serde_yaml_ng::Value)],
    ) -> (serde_yaml_ng::Mapping, Vec<String>) {
        let mut merged = self.merged.clone();
        for key in &self.profiled {
            merged.remove(key.as_str());
        }
        for (k, v) in values {
            merged.insert(serde_yaml_ng::Value::String(k.to_string()), v.clone());
        }
        let profiled = super::detection_defaults::apply(&mut merged);
        (merged, profiled)
    }

    /// Where `key`'s value came from: `file` unless the defaults file or a
    /// variable set it.
    pub fn origin_of(&self, key: &str, file: &std::path::Path) -> PathBuf {
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| file.to_path_buf())
    }
}

impl BatchSpec {
    /// `job`'s rendered SQL template (`train_sql` for train, ...); None for
    /// ingest and for a job whose template the batch does not have.
    pub fn sql(&self, job: Job) -> Option<&str> {
        job.sql_key()
            .and_then(|k| self.sql.get(k))
            .map(String::as_str)
    }

    /// The file (or variable) `key`'s value came from.
    pub fn origin_of(&self, key: &str) -> PathBuf {
        self.source.origin_of(key, &self.file)
    }

    /// The jobs not turned off with `disable_<job>`, whatever their
    /// schedule status (RUNNING or STOPPED).
    pub fn scheduled_jobs(&self) -> impl Iterator<Item = (Job, &JobSchedule)> {
        self.schedules
            .iter()
            .filter(|(_, s)| !s.disabled)
            .map(|(j, s)| (*j, s))
    }
}

/// The part of `table_key` that names the table in sandstack's store. A
/// warehouse batch's key may name the warehouse's own table in three parts
/// (BigQuery's `project.dataset.table`, Snowflake's `database.schema.table`);
/// its rows are stored here as `dataset.table` (`schema.table`): sandstack
/// never writes to the warehouse.
fn stored_key(batch: &BatchKeys) -> &str {
    let key = batch.table_key.as_str();
    match (batch.db, key.split_once('.')) {
        (super::choices::Db::DuckDb, _) => key,
        (_, Some((_, rest))) if rest.split('.').count() == 2 => rest,
        _ => key,
    }
}

/// Read a rendered mapping into a spec, section by section. `raw_ingest_fn`
/// and `raw_preprocess_fn` are the values before rendering, used to find
/// the file a traceback should name.
pub(super) fn read_spec(
    file: &std::path::Path,
    name: &str,
    map: &serde_yaml_ng::Mapping,
    raw: RawTemplates<'_>,
    origins: BTreeMap<String, PathBuf>,
) -> Result<BatchSpec, Vec<ConfigError>> {
    let mut r = FieldReader::new(file, map, origins);
    let batch = BatchKeys::read(&mut r);
    let table_key = super::TableKey::claim(stored_key(&batch)).unwrap_or_else(|e| {
        r.bad_value("table_key", e.message);
        super::TableKey::fallback()
    });
    let ingest_settings = IngestSettings::read(&mut r);
    if ingest_settings.retries > MAX_INGEST_RETRIES {
        r.bad_value(
            "ingest_retries",
            format!(
                "must be at most {MAX_INGEST_RETRIES}, found {}",
                ingest_settings.retries
            ),
        );
    }
    let ingest = ingest_source(&mut r, &ingest_settings, raw.ingest_fn);
    let preprocess = PreprocessSettings::read(&mut r);
    check_resampling(&mut r, &preprocess.params);
    let limits = SandboxLimits::read(&mut r);
    check_limits(&mut r, &limits);
    let schedules = read_schedules(&mut r);
    let sql = read_templates(&mut r, &schedules);
    let http = HttpPolicy::read(&mut r);
    check_http(&mut r, &http);
    let train = TrainSettings::read(&mut r);
    check_model_params(&mut r, &train.model_configs);
    let llmalert = LlmAlertSettings::read(&mut r);
    let llmalert_on = schedules.get(&Job::Llmalert).is_some_and(|s| !s.disabled);
    if llmalert_on {
        if let Err(why) = super::sections::check_llm_model(&llmalert.model) {
            r.bad_value("llmalert_model", why);
        }
    }
    let alert = AlertSettings::read(&mut r);
    let mut schedules = schedules;
    // The folder's daily summary runs unless told not to, as Anomstack's
    // does, where it has somewhere to go: left unset, the status is
    // RUNNING for a batch with alert_methods.
    if !map.contains_key("summary_default_schedule_status") && !alert.methods.is_empty() {
        if let Some(s) = schedules.get_mut(&Job::Summary) {
            s.status = ScheduleStatus::Running;
        }
    }
    let spec = BatchSpec {
        metric_batch: name.to_string(),
        file: file.to_path_buf(),
        db: batch.db,
        table_key,
        model_path: batch.model_path,
        disable_batch: batch.disable_batch,
        disable_dashboard: batch.disable_dashboard,
        metric_tags: batch.metric_tags,
        ingest: ingest.unwrap_or(IngestSource::Sql(String::new())),
        ingest_settings,
        preprocess_fn: custom_preprocess(preprocess.preprocess_fn, raw.preprocess_fn, file),
        preprocess_params: preprocess.params,
        sql,
        schedules,
        limits,
        http,
        secrets: Vec::new(),
        train,
        score: ScoreSettings::read(&mut r),
        alert,
        tholdalert: ThresholdAlertSettings::read(&mut r),
        change: ChangeSettings::read(&mut r),
        llmalert,
        jobs: JobLimits::read(&mut r),
        delete: DeleteSettings::read(&mut r),
        values: r.all_as_json(),
        source: Default::default(),
    };
    if r.errors.is_empty() {
        Ok(spec)
    } else {
        Err(r.errors)
    }
}

/// The templates' text before rendering.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RawTemplates<'a> {
    pub ingest_fn: Option<&'a str>,
    pub preprocess_fn: Option<&'a str>,
}

/// `ingest_fn` (Python) or `ingest_sql`, exactly one of them.
fn ingest_source(
    r: &mut FieldReader,
    settings: &IngestSettings,
    raw_ingest_fn: Option<&str>,
) -> Option<IngestSource> {
    match (&settings.ingest_fn, &settings.ingest_sql) {
        (Some(code), None) => {
            let filename = raw_ingest_fn
                .and_then(super::template::sole_include)
                .unwrap_or_else(|| format!("<{}:ingest_fn>", r.file().display()));
            Some(IngestSource::Python(PythonSource {
                code: code.clone(),
                filename,
                function: settings.fn_name.clone(),
            }))
        }
        (None, Some(sql)) => Some(IngestSource::Sql(sql.clone())),
        (Some(_), Some(_)) => {
            r.bad_value(
                "ingest_fn",
                "set either ingest_fn (Python) or ingest_sql (SQL), not both",
            );
            None
        }
        (None, None) if r.bool("disable_ingest", false) => Some(IngestSource::Imported),
        (None, None) => {
            r.bad_value(
                "ingest_fn",
                "a batch needs ingest_fn (Python) or ingest_sql (SQL) to get its metrics \
                 (or disable_ingest: true when its history only comes from `sandstack import`)",
            );
            None
        }
    }
}

/// A `local://` model path is where sandstack writes files: a batch's may
/// be a folder below the working directory, not absolute, not climbing out
/// with `..`, and not inside the metrics folder (whose files, links among
/// them, are the batch authors'). The operator may name any folder, through
/// `ANOMSTACK_MODEL_PATH` or a `__MODEL_PATH` override.
pub(super) fn check_model_path(spec: &BatchSpec, source: &BatchSource) -> Result<(), ConfigError> {
    let Some(dir) = spec.model_path.strip_prefix("local://") else {
        return Ok(());
    };
    let origin = source.origin_of("model_path", &spec.file);
    if origin.to_string_lossy().starts_with(super::ENV_ORIGIN) {
        return Ok(());
    }
    let refuse = |why: &str| {
        ConfigError::BadValue {
        file: origin.clone(),
        key: "model_path".into(),
        message: format!(
            "`{}` {why}: a batch's models go in a folder below sandstack's working directory, outside the \
             metrics folder (local://./models); the operator may set another with ANOMSTACK_MODEL_PATH",
            spec.model_path
        ),
    }
    };
    let path = std::path::Path::new(dir);
    if path.is_absolute() {
        return Err(refuse("is an absolute path"));
    }
    let mut normal = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(p) => normal.push(p),
            std::path::Component::ParentDir => return Err(refuse("climbs out with `..`")),
            _ => {}
        }
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    let (models, metrics) = (resolved(&cwd.join(&normal)), resolved(&source.dir));
    if models.starts_with(&metrics) || metrics.starts_with(&models) {
        return Err(refuse("lies inside the metrics folder, or holds it"));
    }
    Ok(())
}

/// `path` with its longest existing ancestor's links resolved (the rest
/// does not exist yet, so holds none).
fn resolved(path: &std::path::Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Host patterns and rewrite prefixes are read as what they are (a host,
/// a URL), so none compares as text with more than it says.
fn check_http(r: &mut FieldReader, http: &HttpPolicy) {
    for h in &http.allow_hosts {
        if let Err(message) = super::hosts::check_pattern(h) {
            r.bad_value("http_allow_hosts", message);
        }
    }
    for (from, to) in &http.rewrite {
        for (which, url) in [("from", from), ("to", to)] {
            if let Err(why) = super::url_prefix::UrlPrefix::parse(url) {
                r.bad_value(
                    "http_rewrite",
                    format!(
                        "`{}` (a rewrite's {which}) is not a URL prefix: {why}",
                        url.escape_default()
                    ),
                );
            }
        }
    }
}

/// Most retries of one tick: backoff doubles, so ten already wait 17 min.
pub const MAX_INGEST_RETRIES: u64 = 10;

/// What one key cannot say alone: the time range's order and the guest's
/// address space.
/// `preprocess_params.freq` and `freq_agg` are checked at load, not first
/// at train time: a frequency out of range would otherwise make its bins
/// only when a job runs (and too short a one, millions of them).
fn check_resampling(r: &mut FieldReader, p: &super::sections::PreprocessParams) {
    use super::sections::{freq_micros, FREQ_AGGS, FREQ_EXPECTED};
    let Some(freq) = p.resampling() else {
        return;
    };
    if freq_micros(freq).is_none() {
        r.bad_value(
            "preprocess_params",
            format!("freq `{freq}` is not a frequency sandstack takes: {FREQ_EXPECTED}"),
        );
    }
    if !FREQ_AGGS.contains(&p.freq_agg.as_str()) {
        r.bad_value(
            "preprocess_params",
            format!(
                "freq_agg `{}` is not supported: use {}",
                p.freq_agg,
                FREQ_AGGS.join(", ")
            ),
        );
    }
}

/// Every `model_params` key is one the model takes: PyOD has more (KNN's
/// `method`, IForest's `max_features`, ...) that sandstack's models do not
/// compute, and a batch that sets one must not be trained as if it had.
fn check_model_params(r: &mut FieldReader, models: &[super::ModelConfig]) {
    use super::choices::Choice;
    for (i, m) in models.iter().enumerate() {
        let takes = m.model_name.params();
        for key in m
            .model_params
            .keys()
            .filter(|k| !takes.contains(&k.as_str()))
        {
            let hint = super::choices::closest(key, takes.iter().copied())
                .map(|c| format!(" (did you mean `{c}`?)"))
                .unwrap_or_default();
            r.bad_value(
                "model_configs",
                format!(
                    "model {} (`{}`, {}): model_params.{key} is not a parameter sandstack's {} takes{hint}; it takes {}. Remove it, or pick a model that has it",
                    i + 1,
                    m.tag(),
                    m.model_name.name(),
                    m.model_name.name(),
                    takes.join(", ")
                ),
            );
        }
    }
}

fn check_limits(r: &mut FieldReader, limits: &SandboxLimits) {
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
}

/// `<job>_cron_schedule`, `<job>_default_schedule_status` and
/// `disable_<job>` for every job.
fn read_schedules(r: &mut FieldReader) -> BTreeMap<Job, JobSchedule> {
    let mut schedules = BTreeMap::new();
    for job in Job::ALL {
        let disabled = r.bool(&format!("disable_{}", job.name()), job == Job::Llmalert);
        let key = format!("{}_cron_schedule", job.name());
        let text = r.string(&key, job.default_cron());
        let cron = match CronExpr::parse(&text) {
            Ok(c) => Some(c),
            // llmalert is off unless turned on (Anomstack's folders carry
            // its keys either way): only then can its cron fail a batch.
            Err(_) if job == Job::Llmalert && disabled => None,
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
        let status = r.choice(&status_key, ScheduleStatus::Stopped);
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
    schedules
}

/// Whether a batch's merged keys leave llmalert off (`disable_llmalert`
/// is true unless set to false). Its `llmalert_sql` is then neither
/// rendered nor read: a folder written before the job existed, whose
/// defaults lack the template's variables, still loads.
pub(super) fn llmalert_off(merged: &serde_yaml_ng::Mapping) -> bool {
    use super::fields::ReadAs;
    merged
        .get("disable_llmalert")
        .is_none_or(|v| bool::from_value(v).unwrap_or(true))
}

/// The rendered SQL template of every job sandstack runs from SQL.
fn read_templates(
    r: &mut FieldReader,
    schedules: &BTreeMap<Job, JobSchedule>,
) -> BTreeMap<String, String> {
    let mut sql = BTreeMap::new();
    let llmalert_on = schedules.get(&Job::Llmalert).is_some_and(|s| !s.disabled);
    let keys = Job::ALL
        .iter()
        .filter(|j| **j != Job::Llmalert || llmalert_on)
        .filter_map(|j| j.sql_key());
    for key in keys.filter(|k| super::keys::is_rendered(k)) {
        if let Some(text) = r.opt_string(key) {
            sql.insert(key.to_string(), text);
        }
    }
    sql
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

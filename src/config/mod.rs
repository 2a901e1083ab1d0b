//! The Anomstack-compatible metrics folder: `defaults/defaults.yaml` plus one
//! batch per other `*.yaml`, merged (shallowly), overridden from the
//! environment, rendered with Jinja and read into typed [`BatchSpec`]s.
//!
//! Loading never stops at the first problem: every error and warning in the
//! folder is collected, and batches sandstack cannot run yet (another `db`,
//! a cloud `model_path`) are listed as skipped while the rest load.

mod bins;
pub mod choices;
mod cron_expr;
pub mod declare;
mod detection_defaults;
mod env_overrides;
mod error;
pub(crate) mod fields;
pub mod folder_files;
pub mod hosts;
pub mod keys;
mod names;
pub mod policy;
mod render;
pub mod renderer;
pub mod secrets;
pub mod sections;
mod shipped;
mod spec;
mod table_key;
mod template;
pub mod url_prefix;
mod yaml_budget;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

pub use choices::{AlertMethod, Choice, CombinationMethod, Db, ModelKind, ScheduleStatus};
pub use cron_expr::CronExpr;
pub use env_overrides::env_batch_name;
pub use error::ConfigError;
pub use names::{check_batch_name, MAX_BATCH_NAME_LEN};
use names::{check_table_key_syntax, validate_table_key};
pub use policy::Policy;
pub use render::{render_at_use, with_values};
pub use sections::{
    AlertSettings, ChangeSettings, DeleteSettings, HttpPolicy, IngestSettings, JobLimits,
    ModelConfig, PreprocessParams, SandboxLimits, ScoreSettings, ThresholdAlertSettings,
    Thresholds, TrainSettings,
};
pub use shipped::overridden as overridden_templates;
pub use spec::{BatchSpec, IngestSource, Job, JobSchedule, PythonSource};
pub use table_key::{TableKey, TableKeyError};

/// Relative path of the defaults file inside a metrics folder.
pub const DEFAULTS_FILE: &str = "defaults/defaults.yaml";

/// Anomstack's switch that leaves out the folder's `examples/` batches.
const IGNORE_EXAMPLES: &str = "ANOMSTACK_IGNORE_EXAMPLES";

/// How an error names a value that came from the environment, in place of
/// a file.
const ENV_ORIGIN: &str = "environment variable ";

/// A batch sandstack recognised but cannot run yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub metric_batch: String,
    pub file: PathBuf,
    pub reason: String,
}

/// Everything found in a metrics folder.
#[derive(Debug, Default)]
pub struct MetricsFolder {
    pub dir: PathBuf,
    /// Loaded batches, sorted by name; disabled ones included (see
    /// `disable_batch`).
    pub batches: Vec<BatchSpec>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
    /// For information: Anomstack keys each file sets that sandstack does
    /// not use.
    pub notes: Vec<String>,
    pub errors: Vec<ConfigError>,
}

impl MetricsFolder {
    pub fn batch(&self, name: &str) -> Option<&BatchSpec> {
        self.batches.iter().find(|b| b.metric_batch == name)
    }

    pub fn enabled_batches(&self) -> impl Iterator<Item = &BatchSpec> {
        self.batches.iter().filter(|b| !b.disable_batch)
    }

    /// The batches the dashboard's pages show: enabled, without
    /// `disable_dashboard`.
    pub fn dashboard_batches(&self) -> impl Iterator<Item = &BatchSpec> {
        self.enabled_batches().filter(|b| !b.disable_dashboard)
    }
}

/// The `ANOMSTACK*` and `SANDSTACK*` variables of this process.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("ANOMSTACK") || k.starts_with("SANDSTACK"))
        .collect()
}

/// Load a metrics folder without an operator policy. `env` holds the
/// override variables (see [`process_env`]), passed in so tests need not
/// touch the process.
pub fn load(dir: &Path, env: &BTreeMap<String, String>) -> MetricsFolder {
    load_with_policy(dir, env, &Policy::none())
}

/// Load a metrics folder and hold each batch to `policy`: a batch that asks
/// for more is refused (its errors listed), the rest load.
pub fn load_with_policy(
    dir: &Path,
    env: &BTreeMap<String, String>,
    policy: &Policy,
) -> MetricsFolder {
    let mut out = MetricsFolder {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    if !dir.is_dir() {
        out.errors.push(ConfigError::MissingFolder {
            dir: dir.to_path_buf(),
        });
        return out;
    }
    let session = renderer::RenderSession::new(dir);
    let Some(defaults) = read_defaults(&session, dir, &mut out) else {
        return out;
    };
    let mut files = batch_files(dir, &mut out.errors);
    if env.get(IGNORE_EXAMPLES).map(String::as_str) == Some("yes") {
        out.notes.push(drop_examples(dir, &mut files));
    }
    let claims = admitted_claims(&session, dir, files, policy, &mut out.errors);
    let batch_dirs: Vec<PathBuf> = claims
        .iter()
        .filter_map(|c| own_folder(dir, &c.file))
        .collect();
    let env_names = env_overrides::names_in_use(claims.iter().map(|c| c.name.as_str()));
    let policy_shared = std::sync::Arc::new(policy.clone());
    let defaults_cost = yaml_budget::mapping_cost(&defaults.map);
    let mut config_cost = 0usize;
    for claim in &claims {
        // Each batch's merged keys are its own: the defaults count again.
        config_cost += defaults_cost + yaml_budget::mapping_cost(&claim.map);
        if config_cost > yaml_budget::MAX_FOLDER_CONFIG_BYTES {
            out.errors.push(over_config_budget(
                claim,
                &defaults.path,
                defaults_cost,
                claims.len(),
            ));
            continue;
        }
        warn_unknown_keys(&claim.file, &claim.map, &mut out.warnings);
        note_unused_keys(&claim.file, &claim.map, &mut out.notes);
        let batch = BatchFile {
            file: &claim.file,
            name: &claim.name,
            map: &claim.map,
        };
        let scope = include_scope(dir, &claim.file, &batch_dirs, policy);
        let tenant = policy.folder_of(dir, &claim.file).map_or_else(
            || "the metrics folder".to_string(),
            |f| format!("{}/", f.display()),
        );
        let renderer = renderer::TemplateRenderer::new(&session, scope, &claim.name, &tenant);
        let overrides = env_overrides::for_batch(&claim.name, env, &env_names, &mut out.warnings);
        let loaded = load_batch(
            &renderer,
            &defaults,
            &batch,
            &overrides,
            &policy_shared,
            &mut out.warnings,
        );
        record(&mut out, loaded, &batch);
    }
    out.batches
        .sort_by(|a, b| a.metric_batch.cmp(&b.metric_batch));
    out
}

/// Every file's claim, read, then held to the operator's binding, then
/// refused where a name is claimed twice (every file that claims it). The
/// binding comes first: a file the policy refuses cannot make a bound
/// batch's name look shared. Each batch's includes must know the folders
/// of the others, so all are read before any batch loads.
fn admitted_claims(
    session: &renderer::RenderSession,
    dir: &Path,
    files: Vec<PathBuf>,
    policy: &Policy,
    errors: &mut Vec<ConfigError>,
) -> Vec<Claim> {
    let claims: Vec<Claim> = files
        .into_iter()
        .filter_map(|file| match read_claim(session, dir, &file) {
            Ok(claim) => Some(claim),
            Err(e) => {
                errors.push(e);
                None
            }
        })
        .collect();
    let claims: Vec<Claim> = claims
        .into_iter()
        .filter(|c| match policy.check_claim(dir, &c.file, &c.name) {
            Ok(()) => true,
            Err(e) => {
                errors.push(e);
                false
            }
        })
        .collect();
    refuse_shared_names(claims, errors)
}

/// Why `claim` is not loaded: the folder's merged configurations went past
/// their budget with it.
fn over_config_budget(
    claim: &Claim,
    defaults: &Path,
    defaults_cost: usize,
    batches: usize,
) -> ConfigError {
    ConfigError::Yaml {
        file: claim.file.clone(),
        message: format!(
            "not loaded: the folder's batch configurations expand to more than {} MiB in all \
             ({} adds {} KiB to each of its {} batches); make the defaults or the batches smaller",
            yaml_budget::MAX_FOLDER_CONFIG_BYTES >> 20,
            defaults.display(),
            defaults_cost >> 10,
            batches
        ),
    }
}

/// A batch file, read, and the name it claims.
struct Claim {
    file: PathBuf,
    map: Mapping,
    name: String,
}

fn read_claim(
    session: &renderer::RenderSession,
    dir: &Path,
    file: &Path,
) -> Result<Claim, ConfigError> {
    let map = read_mapping(session, dir, file)?;
    let name = batch_name(file, &map)?;
    Ok(Claim {
        file: file.to_path_buf(),
        map,
        name,
    })
}

/// The claims whose name no other file claims; for each name claimed more
/// than once, one error naming every file, none of which loads.
fn refuse_shared_names(claims: Vec<Claim>, errors: &mut Vec<ConfigError>) -> Vec<Claim> {
    let mut files_of: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for c in &claims {
        files_of
            .entry(c.name.clone())
            .or_default()
            .push(c.file.clone());
    }
    for (name, files) in &files_of {
        if files.len() > 1 {
            errors.push(ConfigError::DuplicateBatch {
                name: name.clone(),
                files: files.clone(),
            });
        }
    }
    claims
        .into_iter()
        .filter(|c| files_of.get(&c.name).is_some_and(|f| f.len() == 1))
        .collect()
}

/// A batch file's own folder, relative to the metrics folder; None for a
/// file at the top, which has none.
fn own_folder(dir: &Path, file: &Path) -> Option<PathBuf> {
    file.parent()
        .and_then(|p| p.strip_prefix(dir).ok())
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
}

/// Where `file`'s includes may come from: its tenant folder when the
/// policy binds one, else its own folder; not from a folder below that
/// which holds another batch's file (or is another tenant's); and
/// `defaults/` (see [`template::IncludeScope`]).
fn include_scope(
    dir: &Path,
    file: &Path,
    batch_dirs: &[PathBuf],
    policy: &Policy,
) -> template::IncludeScope {
    let tenant = policy.folder_of(dir, file);
    let own = tenant.clone().or_else(|| own_folder(dir, file));
    let Some(own) = own else {
        return template::IncludeScope::default();
    };
    let mine = own_folder(dir, file).unwrap_or_default();
    let others: Vec<PathBuf> = match tenant {
        Some(_) => policy.folders_below(&own),
        None => batch_dirs
            .iter()
            .filter(|d| d.starts_with(&own) && **d != own && !mine.starts_with(d))
            .cloned()
            .collect(),
    };
    template::IncludeScope {
        allowed: vec![own],
        excluded: others,
    }
}

/// Leave out the batch files in folders below `examples/` (not in
/// `examples/` itself), as Anomstack's `ANOMSTACK_IGNORE_EXAMPLES=yes` does;
/// returns the note saying so.
fn drop_examples(dir: &Path, files: &mut Vec<PathBuf>) -> String {
    let examples = dir.join("examples");
    let before = files.len();
    files.retain(|f| {
        !f.parent()
            .is_some_and(|p| p.starts_with(&examples) && p != examples)
    });
    format!(
        "{IGNORE_EXAMPLES}=yes: {} batch files under {} ignored",
        before - files.len(),
        examples.display()
    )
}

/// One batch file's outcome joins the folder: a batch (already held to
/// the policy), a skipped batch, or its errors.
fn record(
    out: &mut MetricsFolder,
    loaded: Result<Loaded, Vec<ConfigError>>,
    batch: &BatchFile<'_>,
) {
    match loaded {
        Ok(Loaded::Batch(spec)) => {
            out.warnings.extend(unknown_model_store(&spec));
            out.batches.push(*spec);
        }
        Ok(Loaded::Skipped(s)) => {
            out.warnings.push(format!(
                "{}: batch `{}` skipped: {}",
                s.file.display(),
                s.metric_batch,
                s.reason
            ));
            out.skipped.push(s);
        }
        Err(errors) => add_batch_errors(&mut out.errors, batch.file, batch.name, errors),
    }
}

/// A batch's errors join the folder's; one that lies outside the batch's
/// own file (in the defaults, an included file) is listed once, naming every
/// batch it stops, however many batches share it.
fn add_batch_errors(all: &mut Vec<ConfigError>, file: &Path, name: &str, errors: Vec<ConfigError>) {
    for error in errors {
        let from_env = error
            .files()
            .iter()
            .any(|f| f.to_string_lossy().starts_with(ENV_ORIGIN));
        if error.files().contains(&file) || from_env {
            // A variable that sets every batch's key fails the same way in each.
            if !all.contains(&error) {
                all.push(error);
            }
            continue;
        }
        let shared = all.iter_mut().find_map(|e| match e {
            ConfigError::InBatches {
                error: inner,
                batches,
            } if **inner == error => Some(batches),
            _ => None,
        });
        match shared {
            Some(batches) => batches.push(name.to_string()),
            None => all.push(ConfigError::InBatches {
                error: Box::new(error),
                batches: vec![name.to_string()],
            }),
        }
    }
}

/// `defaults/defaults.yaml` and where it is; an empty mapping with a
/// warning when missing, None (with the error recorded) when unreadable.
fn read_defaults(
    session: &renderer::RenderSession,
    dir: &Path,
    out: &mut MetricsFolder,
) -> Option<Defaults> {
    let path = dir.join(DEFAULTS_FILE);
    if !path.is_file() {
        out.warnings.push(format!(
            "{}: not found; using built-in defaults (and no default SQL templates)",
            path.display()
        ));
        return Some(Defaults {
            path,
            map: Mapping::new(),
        });
    }
    match read_mapping(session, dir, &path) {
        Ok(map) => {
            warn_unknown_keys(&path, &map, &mut out.warnings);
            note_unused_keys(&path, &map, &mut out.notes);
            Some(Defaults { path, map })
        }
        Err(e) => {
            out.errors.push(e);
            None
        }
    }
}

/// A batch file's `metric_batch`: present and safe as a name.
fn batch_name(file: &Path, map: &Mapping) -> Result<String, ConfigError> {
    let name = match map.get("metric_batch") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ConfigError::MissingBatchName {
                file: file.to_path_buf(),
            })
        }
    };
    check_batch_name(&name).map_err(|message| ConfigError::BadValue {
        file: file.to_path_buf(),
        key: "metric_batch".into(),
        message,
    })?;
    Ok(name)
}

/// The folder's defaults file.
struct Defaults {
    path: PathBuf,
    map: Mapping,
}

/// One batch file, read and named.
struct BatchFile<'a> {
    file: &'a Path,
    name: &'a str,
    map: &'a Mapping,
}

enum Loaded {
    Batch(Box<BatchSpec>),
    Skipped(Skipped),
}

fn load_batch(
    renderer: &renderer::TemplateRenderer,
    defaults: &Defaults,
    batch: &BatchFile<'_>,
    overrides: &env_overrides::Overrides,
    policy: &std::sync::Arc<Policy>,
    warnings: &mut Vec<String>,
) -> Result<Loaded, Vec<ConfigError>> {
    let BatchFile { file, name, map } = *batch;
    // Shallow merge, as Anomstack does: a batch's nested map replaces the
    // default's whole.
    let mut merged = defaults.map.clone();
    for (k, v) in map {
        merged.insert(k.clone(), v.clone());
    }
    let env_vars = overrides.apply(&mut merged);
    let profiled = detection_defaults::apply(&mut merged);
    merged.insert("metric_batch".into(), Value::String(name.to_string()));

    let origin =
        |key: &str| -> PathBuf {
            let upper = key.to_ascii_uppercase();
            if let Some(var) = env_vars.iter().rev().find(|v| {
                v.ends_with(&format!("__{upper}")) || env_overrides::sets_globally(v, key)
            }) {
                return PathBuf::from(format!("{ENV_ORIGIN}{var}"));
            }
            if map.contains_key(key) || !defaults.map.contains_key(key) {
                file.to_path_buf()
            } else {
                defaults.path.clone()
            }
        };

    // Skip what sandstack cannot run before rendering anything, so a
    // BigQuery batch's templates need not render against DuckDB.
    if let Some(reason) = skip_reason(&merged) {
        return Ok(Loaded::Skipped(Skipped {
            metric_batch: name.to_string(),
            file: file.to_path_buf(),
            reason,
        }));
    }
    let origins: BTreeMap<String, PathBuf> = merged
        .keys()
        .filter_map(Value::as_str)
        .map(|k| (k.to_string(), origin(k)))
        .filter(|(_, o)| o.as_path() != file)
        .collect();
    let source = spec::BatchSource {
        dir: renderer.dir().to_path_buf(),
        scope: renderer.scope().clone(),
        merged,
        profiled,
        origins,
        policy: policy.clone(),
    };
    let spec = render::render_and_read(renderer, file, name, source, warnings)?;
    Ok(Loaded::Batch(Box::new(spec)))
}

/// Why sandstack cannot run a batch yet (a `model_path` without a scheme),
/// judged on the merged values before rendering. A `model_path` of an
/// unknown store does not stop a batch: its ingest runs (see
/// [`unknown_model_store`]).
fn skip_reason(merged: &Mapping) -> Option<String> {
    let model_path = merged
        .get("model_path")
        .and_then(Value::as_str)
        .or_else(|| keys::default_value("model_path").as_str())
        .unwrap_or_default()
        .to_string();
    (!model_path.contains("://"))
        .then(|| format!("model_path `{model_path}` has no scheme: write local://{model_path}"))
}

/// A warning for a batch whose `model_path` names no store sandstack
/// knows: everything runs but train and score.
fn unknown_model_store(spec: &BatchSpec) -> Option<String> {
    const KNOWN: &[&str] = &[
        "local", "s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss",
    ];
    let (scheme, _) = spec.model_path.split_once("://")?;
    (!KNOWN.contains(&scheme)).then(|| {
        format!(
            "{}: batch `{}`: model_path `{scheme}://` is not a store sandstack knows \
             (local://, s3://, gs://, az://): its ingest, change detection and threshold alerts run, \
             its train and score jobs stop with this reason",
            spec.file.display(),
            spec.metric_batch
        )
    })
}

/// A YAML file of the metrics folder `dir`: a regular file inside it (a
/// symlink to a host file is refused before it is opened, a device or a
/// pipe on opening), read to at most [`yaml_budget::MAX_FILE_BYTES`].
fn read_mapping(
    session: &renderer::RenderSession,
    dir: &Path,
    path: &Path,
) -> Result<Mapping, ConfigError> {
    let io = |message: String| ConfigError::Io {
        file: path.to_path_buf(),
        message,
    };
    let text = folder_files::read_inside(dir, path, yaml_budget::MAX_FILE_BYTES).map_err(
        |why| match why {
            folder_files::ReadError::TooBig { size, max } => io(format!(
                "it is {} KiB; a YAML file may be at most {} KiB (put large code or SQL in included files)",
                size >> 10,
                max >> 10
            )),
            other => io(other.to_string()),
        },
    )?;
    // Parsed in the helper: budgeted, and within a deadline (a few hundred
    // kilobytes of nested brackets keep a YAML parser busy for minutes).
    match session.parse_yaml(&text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err(ConfigError::NotAMapping {
            file: path.to_path_buf(),
        }),
        Err(message) => Err(ConfigError::Yaml {
            file: path.to_path_buf(),
            message,
        }),
    }
}

/// The folder beside a batch's YAML that holds its tests (recordings,
/// expected rows, fixture histories: `sandstack test`), not batches.
pub const TESTS_DIR: &str = "tests";

/// Every `*.yaml`/`*.yml` below `dir` except the defaults file and what is
/// in hidden folders and in the [`TESTS_DIR`] folder beside a batch's YAML,
/// sorted, so load order (and so which duplicate is "first") is stable.
fn batch_files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let defaults = dir.join(DEFAULTS_FILE);
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            let tests = e.file_type().is_dir() && is_tests_folder(e.path());
            e.depth() == 0 || !(name.starts_with('.') || tests)
        });
    for entry in walker {
        match entry {
            Ok(e) => {
                let p = e.path();
                if e.file_type().is_file() && is_yaml(p) && p != defaults {
                    files.push(p.to_path_buf());
                }
            }
            Err(e) => errors.push(ConfigError::Io {
                file: e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.to_path_buf()),
                message: e.to_string(),
            }),
        }
    }
    files
}

/// Whether `path` is a folder of tests: named [`TESTS_DIR`], beside a
/// batch's YAML. (A folder of that name elsewhere may hold batches.)
pub fn is_tests_folder(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == TESTS_DIR) && path.parent().is_some_and(holds_yaml)
}

/// Whether `dir` holds a YAML file (a batch's folder).
fn holds_yaml(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .any(|e| is_yaml(&e.path()) && e.file_type().is_ok_and(|t| t.is_file()))
}

/// Whether `path` names a YAML file (`.yaml` or `.yml`).
fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|x| x.to_str()),
        Some("yaml") | Some("yml")
    )
}

fn note_unused_keys(file: &Path, map: &Mapping, notes: &mut Vec<String>) {
    let unused = keys::unused_in(map);
    if !unused.is_empty() {
        notes.push(format!(
            "{}: Anomstack keys sandstack does not use (left as written, templates not rendered): {}",
            file.display(),
            unused.join(", ")
        ));
    }
}

fn warn_unknown_keys(file: &Path, map: &Mapping, warnings: &mut Vec<String>) {
    for key in map.keys().filter_map(Value::as_str) {
        if keys::is_known(key) {
            continue;
        }
        let hint = match keys::suggest(key) {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None => String::new(),
        };
        warnings.push(format!(
            "{}: unknown key `{key}` is ignored{hint}",
            file.display()
        ));
    }
}

/// One batch loaded from `yaml` in a throwaway folder with the shipped
/// defaults, for unit tests of the layers above.
#[cfg(test)]
pub(crate) fn test_spec(yaml: &str) -> BatchSpec {
    test_folder(yaml).1
}

/// [`test_spec`] with its folder, kept for as long as the caller holds it
/// (for specs that render again: `with_values`).
#[cfg(test)]
pub(crate) fn test_folder(yaml: &str) -> (tempfile::TempDir, BatchSpec) {
    let dir = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics/defaults");
    let defaults = dir.path().join("defaults");
    for sub in ["", "sql", "python"] {
        std::fs::create_dir_all(defaults.join(sub)).expect("mkdir");
        for f in std::fs::read_dir(root.join(sub)).expect("ls") {
            let f = f.expect("entry").path();
            if f.is_file() {
                std::fs::copy(&f, defaults.join(sub).join(f.file_name().expect("name")))
                    .expect("copy");
            }
        }
    }
    std::fs::write(dir.path().join("b.yaml"), yaml).expect("write");
    let folder = load(dir.path(), &BTreeMap::new());
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let spec = folder.batches.into_iter().next().expect("one batch");
    (dir, spec)
}

#[cfg(test)]
mod batch_files_tests {
    use super::*;

    #[test]
    fn tests_and_hidden_folders_hold_no_batches() {
        let dir = tempfile::tempdir().expect("tmp");
        let batch = dir.path().join("hn");
        for sub in ["tests", ".git", "more", "../group/tests/deep"] {
            std::fs::create_dir_all(batch.join(sub)).expect("mkdir");
        }
        let files = [
            "hn.yaml",
            "tests/front.yaml",
            ".git/x.yaml",
            "more/m.yml",
            // A folder named tests beside no batch is an ordinary folder.
            "../group/tests/deep/d.yaml",
        ];
        for f in files {
            std::fs::write(batch.join(f), "metric_batch: x\n").expect("write");
        }
        // A file named `tests.yaml` is a batch; only the folder is not.
        std::fs::write(dir.path().join("tests.yaml"), "").expect("write");
        let mut errors = Vec::new();
        let found: Vec<_> = batch_files(dir.path(), &mut errors)
            .into_iter()
            .map(|p| p.strip_prefix(dir.path()).expect("inside").to_path_buf())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            found,
            [
                "group/tests/deep/d.yaml",
                "hn/hn.yaml",
                "hn/more/m.yml",
                "tests.yaml"
            ]
            .map(PathBuf::from)
        );
    }
}

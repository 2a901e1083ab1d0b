//! One test, in a scratch store of its own: a recording replayed through
//! the batch's ingest with no network, or a fixture history imported and
//! judged by the batch's train, score, alert and change jobs at the time
//! of its last observation; then the rows compared with the expected file.
//! Whatever a test writes goes to its scratch folder and in-memory
//! database: the recording is replayed from a copy there, models are saved
//! there whatever the batch's `model_path` says, nothing is sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::discover::{Input, TestCase};
use super::expected::{self, Diff, ExpectedRow, Row, Tolerance};
use crate::cassette::{function_sha256, Cassette, CassetteError, RecordMode};
use crate::config::folder_files::{self, ReadError};
use crate::config::{BatchSpec, Db, IngestSource, Job};
use crate::domain::MetricType;
use crate::jobs::import::cells::TimeReader;
use crate::jobs::import::read::ReadCaps;
use crate::jobs::import::{self, ImportOptions};
use crate::jobs::ingest::recording::CassetteOptions;
use crate::jobs::ingest::SandboxSource;
use crate::pipeline::{dispatch, JobContext, JobOutcome, RunMode};
use crate::store::{ConfinedSettings, Store};

/// The largest fixture history read (a wide one of 16 MiB holds a few
/// million values).
pub const MAX_HISTORY_BYTES: u64 = 16 << 20;
/// The most rows a fixture history may hold.
pub const MAX_HISTORY_ROWS: u64 = 1_000_000;

/// The jobs a fixture history is judged by, in the order they run.
pub const FIXTURE_JOBS: [Job; 4] = [Job::Train, Job::Score, Job::Alert, Job::Change];

/// What every test runs with.
pub struct Setting<'a> {
    /// The metrics folder (its tests' files must resolve inside it).
    pub root: &'a Path,
    pub tolerance: Tolerance,
    /// The operator's environment: a replay's scrubbed variables and bound
    /// secrets come from it, as for `sandstack ingest --replay`.
    pub env: &'a BTreeMap<String, String>,
    pub sandboxes: &'a (dyn SandboxSource + Sync),
    /// The policy's settings for the folder's SQL.
    pub confined: ConfinedSettings,
}

/// How a test ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    /// The rows differ from the expected ones.
    Failed(Diff),
    /// The test ran, and there is no expected file to compare with yet.
    NoExpected,
    /// The test ran, and its expected file does not read (`--update`
    /// writes it again).
    BadExpected(String),
    /// The test could not run, or its files could not be read.
    Error(String),
    /// Not run: an earlier failure stopped the run (`--fail-fast`).
    NotRun,
}

/// One test's result.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub id: String,
    pub batch: String,
    pub name: String,
    pub outcome: Outcome,
    /// What the reader should know even when it passed (a recording of
    /// other code).
    pub notes: Vec<String>,
    /// The rows the run produced (for `--update`), when it ran.
    pub actual: Option<Vec<Row>>,
    /// The test's expected file (None for a refused file).
    pub expected: Option<std::path::PathBuf>,
    pub elapsed: Duration,
}

impl TestResult {
    pub fn ok(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// Run `case` of the batch `spec`.
pub fn run_case(spec: &BatchSpec, case: &TestCase, setting: &Setting<'_>) -> TestResult {
    let started = Instant::now();
    let mut notes = Vec::new();
    let (outcome, actual) = match produce(spec, case, setting, &mut notes) {
        Err(message) => (Outcome::Error(message), None),
        Ok(actual) => match read_expected(setting.root, &case.expected) {
            Err(ExpectedError::Refused(message)) => (Outcome::Error(message), Some(actual)),
            Err(ExpectedError::Unreadable(message)) => {
                (Outcome::BadExpected(message), Some(actual))
            }
            Ok(None) => (Outcome::NoExpected, Some(actual)),
            Ok(Some(expected)) => {
                let diff = expected::compare(&expected, &actual, setting.tolerance);
                let outcome = if diff.is_empty() {
                    Outcome::Passed
                } else {
                    Outcome::Failed(diff)
                };
                (outcome, Some(actual))
            }
        },
    };
    TestResult {
        id: case.id(),
        batch: case.batch.clone(),
        name: case.name.clone(),
        outcome,
        notes,
        actual,
        expected: Some(case.expected.clone()),
        elapsed: started.elapsed(),
    }
}

/// Why an expected file was not read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpectedError {
    /// Not a regular file of the folder: never replaced.
    #[error("{0}")]
    Refused(String),
    /// A file of the folder that is too large or does not read as expected
    /// rows: `--update` writes it again.
    #[error("{0}")]
    Unreadable(String),
}

/// The expected rows, or None when the file does not exist yet.
pub fn read_expected(root: &Path, path: &Path) -> Result<Option<Vec<ExpectedRow>>, ExpectedError> {
    let shown = path.display().to_string();
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    super::discover::regular(path).map_err(|e| ExpectedError::Refused(format!("{shown}: {e}")))?;
    let text = folder_files::read_inside(root, path, expected::MAX_BYTES).map_err(|e| match e {
        ReadError::NotRegular | ReadError::Outside => {
            ExpectedError::Refused(format!("{shown}: {e}"))
        }
        // Too large, or not text: a file of the folder to write again.
        other => ExpectedError::Unreadable(format!(
            "{shown}: {}",
            read_error(other, "an expected file")
        )),
    })?;
    expected::from_csv(&text, &shown)
        .map(Some)
        .map_err(ExpectedError::Unreadable)
}

fn read_error(e: ReadError, what: &str) -> String {
    match e {
        ReadError::TooBig { size, max } => format!(
            "it is {} KiB, over the {} KiB {what} may have",
            size >> 10,
            max >> 10
        ),
        other => other.to_string(),
    }
}

/// The rows the test's run produces.
fn produce(
    spec: &BatchSpec,
    case: &TestCase,
    setting: &Setting<'_>,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>, String> {
    let scratch = tempfile::Builder::new()
        .prefix("sandstack-test-")
        .tempdir()
        .map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    let mut spec = spec.clone();
    // Models go to the scratch folder whatever the batch says.
    spec.model_path = "local://models".into();
    let mut store = Store::in_memory()
        .map_err(|e| format!("cannot open a scratch store: {e}"))?
        .with_confined_settings(setting.confined);
    let ctx = JobContext {
        model_base: scratch.path(),
        plot_dir: scratch.path(),
        channels: None,
        env: setting.env,
        sandboxes: setting.sandboxes,
        peers: &[],
        mode: RunMode::default(),
    };
    match &case.input {
        Input::Recording(path) => {
            let text = folder_files::read_inside(setting.root, path, crate::cassette::max_bytes())
                .map_err(|e| {
                    let why = match &e {
                        ReadError::TooBig { .. } => format!(
                            "{} (the operator sets {})",
                            read_error(e, "a recording"),
                            crate::cassette::MAX_MB_ENV
                        ),
                        _ => read_error(e, "a recording"),
                    };
                    format!("{}: {why}", path.display())
                })?;
            let cassette = parse_recording(setting.root, path, &text, &spec)?;
            let file = scratch.path().join("recording.yaml");
            replay(&spec, &cassette, &file, &mut store, &ctx, notes)
                .map_err(|e| e.replace(&file.display().to_string(), &path.display().to_string()))
        }
        Input::History(path) => {
            let text =
                folder_files::read_inside(setting.root, path, MAX_HISTORY_BYTES).map_err(|e| {
                    format!("{}: {}", path.display(), read_error(e, "a fixture history"))
                })?;
            let file = scratch.path().join("history.csv");
            std::fs::write(&file, text)
                .map_err(|e| format!("cannot write the scratch copy: {e}"))?;
            // Errors name the author's file, not the scratch copy.
            let named =
                |e: String| e.replace(&file.display().to_string(), &path.display().to_string());
            judge(&spec, &file, &mut store, &ctx).map_err(named)
        }
    }
}

/// A recording's `text` (from `path`), parsed in the render helper (within
/// its deadline and the folder's YAML budget: the text is the batch
/// author's), checked, and of an ingest run of `spec`'s batch.
fn parse_recording(
    root: &Path,
    path: &Path,
    text: &str,
    spec: &BatchSpec,
) -> Result<Cassette, String> {
    let shown = path.display().to_string();
    let session = crate::config::renderer::RenderSession::new(root);
    let value = session
        .parse_yaml(text)
        .map_err(|e| format!("{shown}: {e}"))?;
    let cassette = Cassette::from_yaml_value(value, &shown).map_err(|e| match e {
        CassetteError::Version { found, .. } => format!(
            "{shown} is cassette version {found}; this sandstack reads version {}: record it again",
            crate::cassette::FORMAT_VERSION
        ),
        other => other.to_string(),
    })?;
    if let Some(job) = &cassette.job {
        return Err(format!(
            "{shown} records a run of the {} job; sandstack test replays ingest recordings (`sandstack record`)",
            crate::escape::truncate(job, 60)
        ));
    }
    if cassette.batch != spec.metric_batch {
        return Err(format!(
            "{shown} records batch `{}`, not `{}`, the batch of its folder: a recording lives beside its own batch",
            crate::escape::truncate(&cassette.batch, 120),
            spec.metric_batch
        ));
    }
    Ok(cassette)
}

/// The rows of the recording's ingest, replayed from a plain copy of it
/// in the scratch folder.
fn replay(
    spec: &BatchSpec,
    cassette: &Cassette,
    path: &Path,
    store: &mut Store,
    ctx: &JobContext<'_>,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>, String> {
    let code = recorded_code(spec)?;
    let now = function_sha256(code);
    if cassette.function_sha256 != now {
        notes.push(format!(
            "recorded from other ingest code (sha256 {}, now {}): the batch's code changed since",
            short(&cassette.function_sha256),
            short(&now)
        ));
    }
    // The checked value, written plainly (no aliases): what the ingest
    // reads again is linear to parse.
    cassette.save(path).map_err(|e| e.to_string())?;
    let mode = RunMode {
        cassette: Some(CassetteOptions {
            path: path.to_path_buf(),
            mode: RecordMode::None,
            match_on: Vec::new(),
            scrub: Vec::new(),
        }),
        dry_run: true,
        simulated_now_us: None,
    };
    match dispatch::run(spec, store, Job::Ingest, &JobContext { mode, ..*ctx }) {
        Ok(JobOutcome::Ingested(report, ..)) => {
            expected::rows_of(std::slice::from_ref(&report.rows))
        }
        Ok(_) => Err("the ingest job reported something other than rows".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a recording of `spec` records the hash of: its Python, or the SQL
/// it runs on a warehouse. A batch whose rows come from the store itself
/// (`ingest_sql` on DuckDB, imports) has nothing to record.
pub fn recorded_code(spec: &BatchSpec) -> Result<&str, String> {
    match &spec.ingest {
        IngestSource::Python(source) => Ok(&source.code),
        IngestSource::Sql(sql) if spec.db != Db::DuckDb => Ok(sql),
        IngestSource::Sql(_) => Err(format!(
            "batch `{}` runs ingest_sql on the store's own rows: there is nothing to record or replay; test it with a fixture history",
            spec.metric_batch
        )),
        IngestSource::Imported => Err(format!(
            "batch `{}` has no ingest: its history comes from `sandstack import`; test it with a fixture history",
            spec.metric_batch
        )),
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The judgements the batch's jobs store on the history in `file`, run at
/// the time of its last observation.
fn judge(
    spec: &BatchSpec,
    file: &Path,
    store: &mut Store,
    ctx: &JobContext<'_>,
) -> Result<Vec<Row>, String> {
    let opts = ImportOptions {
        format: None,
        timestamp_column: None,
        name_column: crate::store::schema::METRIC_NAME.into(),
        value_column: None,
        metric: None,
        columns: Vec::new(),
        time: TimeReader::UTC,
        caps: ReadCaps {
            max_file_bytes: MAX_HISTORY_BYTES,
            max_rows: MAX_HISTORY_ROWS,
        },
        dry_run: false,
    };
    let imported = import::run(spec, store, &[file.to_path_buf()], &opts, &Quiet)
        .map_err(|e| e.to_string())?;
    let Some(at) = imported.last_us else {
        return Err("the history holds no values".into());
    };
    let at = ctx.at(at);
    let enabled: Vec<Job> = spec.scheduled_jobs().map(|(job, _)| job).collect();
    for job in FIXTURE_JOBS.into_iter().filter(|j| enabled.contains(j)) {
        dispatch::run(spec, store, job, &at).map_err(|e| format!("the {} job: {e}", job.name()))?;
    }
    let stored = store
        .read_rows(&spec.table_key, Some(&spec.metric_batch))
        .map_err(|e| e.to_string())?;
    let mut rows = expected::rows_of(&stored)?;
    rows.retain(|r| r.kind != MetricType::Metric.as_str());
    Ok(rows)
}

/// An import that reports nothing: a test's output is its result line.
struct Quiet;

impl import::Progress for Quiet {
    fn read(&self, _: u64) {}
    fn phase(&self, _: &str) {}
}

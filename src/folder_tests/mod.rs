//! A metrics folder's own tests (`sandstack test`, `sandstack record`): the
//! recordings and fixture histories beside each batch ([`discover`]), each
//! run in a scratch store of its own with no network ([`run`]), their rows
//! compared with the expected files ([`expected`]), and the results as
//! JUnit XML for CI systems ([`junit`]).

pub mod discover;
pub mod expected;
pub mod junit;
pub mod run;

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

pub use discover::{Found, Input, Refused, TestCase};
pub use run::{Outcome, Setting, TestResult};

use crate::config::MetricsFolder;

/// How a run of many tests goes.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Tests run at once.
    pub jobs: usize,
    /// Stop starting tests after the first that does not pass.
    pub fail_fast: bool,
}

/// Run `cases` of `folder` on `plan.jobs` threads; `each` hears every
/// result as it comes. Results are returned in the order of `cases`.
pub fn run_all(
    folder: &MetricsFolder,
    cases: &[TestCase],
    setting: &Setting<'_>,
    plan: Plan,
    each: &(dyn Fn(&TestResult) + Sync),
) -> Result<Vec<TestResult>, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.jobs.max(1))
        .thread_name(|i| format!("sandstack-test-{i}"))
        .build()
        .map_err(|e| format!("cannot start the test threads: {e}"))?;
    let stop = AtomicBool::new(false);
    Ok(pool.install(|| {
        cases
            .par_iter()
            .map(|case| {
                let result = if stop.load(Ordering::Relaxed) {
                    not_run(case)
                } else {
                    match folder.batch(&case.batch) {
                        Some(spec) => tracing::subscriber::with_default(errors_only(), || {
                            run::run_case(spec, case, setting)
                        }),
                        None => errored(case, format!("no batch `{}` in the folder", case.batch)),
                    }
                };
                if plan.fail_fast && !result.ok() && result.outcome != Outcome::NotRun {
                    stop.store(true, Ordering::Relaxed);
                }
                each(&result);
                result
            })
            .collect()
    }))
}

/// A test's logger: errors only. Its result line says how it went, and
/// the jobs' own lines (every alert a fixture raises, every replay) would
/// bury it.
fn errors_only() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .fmt_fields(crate::escape::log_fields())
        .with_max_level(tracing::Level::ERROR)
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish()
}

fn not_run(case: &TestCase) -> TestResult {
    TestResult {
        outcome: Outcome::NotRun,
        ..errored(case, String::new())
    }
}

fn errored(case: &TestCase, message: String) -> TestResult {
    TestResult {
        id: case.id(),
        batch: case.batch.clone(),
        name: case.name.clone(),
        outcome: Outcome::Error(message),
        notes: Vec::new(),
        actual: None,
        expected: Some(case.expected.clone()),
        elapsed: std::time::Duration::ZERO,
    }
}

/// A refused test file, as a result: an error of its own.
pub fn refused_result(r: &Refused) -> TestResult {
    TestResult {
        id: r.id.clone(),
        batch: String::new(),
        name: r.id.clone(),
        outcome: Outcome::Error(r.message.clone()),
        notes: Vec::new(),
        actual: None,
        expected: None,
        elapsed: std::time::Duration::ZERO,
    }
}

/// Write `rows` as the expected file `path` of the folder `root`: a new
/// file beside it, then renamed over it, so a failure leaves the old one
/// whole. An expected file that is a symlink, or a tests folder that
/// resolves outside the metrics folder, is refused: nothing is written
/// outside the folder's own files.
pub fn write_expected(
    root: &std::path::Path,
    path: &std::path::Path,
    rows: &[expected::Row],
) -> Result<(), String> {
    let shown = path.display().to_string();
    if std::fs::symlink_metadata(path).is_ok() {
        discover::regular(path).map_err(|e| format!("{shown}: {e}; not replaced"))?;
    }
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    inside(root, dir).map_err(|e| format!("{shown}: {e}"))?;
    if rows.len() > expected::MAX_ROWS {
        return Err(format!(
            "{shown}: the test produces {} rows, more than the {} an expected file may hold: test a smaller recording or history",
            rows.len(),
            expected::MAX_ROWS
        ));
    }
    let text = expected::to_csv(rows).map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > expected::MAX_BYTES {
        return Err(format!(
            "{shown}: the test's rows take {} KiB, more than the {} KiB an expected file may have: test a smaller recording or history",
            text.len() >> 10,
            expected::MAX_BYTES >> 10
        ));
    }
    replace_file(path, text.as_bytes()).map_err(|e| format!("{shown}: {e}"))
}

/// Write `bytes` as `path`: a new file beside it (readable by all, as a
/// file to commit is), renamed over it, so a failure leaves the old one
/// whole and a link at `path` is replaced, not written through.
pub fn replace_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".sandstack-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write beside it: {e}"))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| e.to_string())?;
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

/// `dir` is a real folder (no symlink in the way out of it) inside `root`.
pub fn inside(root: &std::path::Path, dir: &std::path::Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        return Err(format!("{} is not a folder (a symlink?)", dir.display()));
    }
    match crate::config::folder_files::resolve_inside(root, dir) {
        Ok(_) => Ok(()),
        Err(crate::config::folder_files::ReadError::Outside) => Err(format!(
            "{} resolves outside the metrics folder {}",
            dir.display(),
            root.display()
        )),
        Err(e) => Err(format!("cannot resolve {}: {e}", dir.display())),
    }
}

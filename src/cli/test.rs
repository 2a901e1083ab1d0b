//! `sandstack test`: every recording and fixture history of the folder's
//! batches, run in parallel in scratch stores with no network, compared
//! with their expected rows; one line per test, a summary, and exit 1 on
//! any failure. `--update` accepts what they produce now.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use super::{find_batch, host_env, load_folder, load_policy, Cli};
use crate::folder_tests::expected::Tolerance;
use crate::folder_tests::{self, discover, Outcome, Plan, Setting, TestResult};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Tests live beside each batch's YAML, in a folder named tests:
  <batch folder>/tests/<name>.yaml           a recorded ingest run (`sandstack record BATCH --name NAME`)
  <batch folder>/tests/<name>.history.csv    a fixture history (as `sandstack import` reads it); the batch's train,
                                              score, alert and change jobs judge it at its last observation
  <batch folder>/tests/<name>.expected.csv   the rows each must produce (written by --update and by record)

Rows are matched on metric, type and time; values must be equal, scores within --score-tolerance.

Examples:
  sandstack test                       every test of the folder
  sandstack test my_batch --filter spike
  sandstack test --junit report.xml    for a CI system
  sandstack test --update              accept the new output (review `git diff` first)")]
pub struct TestArgs {
    /// Batches whose tests run (default: every batch's).
    pub batches: Vec<String>,
    /// Run only the tests whose `batch/name` contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Accept what the tests produce now: rewrite the expected file of each test that failed, had none or had one
    /// that does not read.
    /// Recordings are never changed. Review the diff before committing it.
    #[arg(long)]
    pub update: bool,
    /// Also write the results to FILE as JUnit XML, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Start no test after the first that fails or cannot run.
    #[arg(long)]
    pub fail_fast: bool,
    /// Tests run at once [default: the machine's cores].
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// How far a score may be from the expected one (absolute); every other value must be equal.
    #[arg(long, value_name = "X", default_value_t = Tolerance::default().score)]
    pub score_tolerance: f64,
}

pub fn test(cli: &Cli, args: &TestArgs) -> anyhow::Result<ExitCode> {
    if !(args.score_tolerance >= 0.0 && args.score_tolerance.is_finite()) {
        anyhow::bail!("--score-tolerance must be a number at least 0");
    }
    let started = Instant::now();
    let folder = load_folder(cli)?;
    for e in &folder.errors {
        errln!("error: {e}");
    }
    let mut only = BTreeSet::new();
    for name in &args.batches {
        only.insert(find_batch(&folder, name)?.metric_batch.clone());
    }
    let found = discover::find(&folder, &only);
    let wanted = |id: &str| args.filter.as_deref().is_none_or(|f| id.contains(f));
    let cases: Vec<_> = found
        .cases
        .into_iter()
        .filter(|c| wanted(&c.id()))
        .collect();
    let refused: Vec<TestResult> = found
        .refused
        .iter()
        .filter(|r| wanted(&r.id))
        .map(folder_tests::refused_result)
        .collect();
    if cases.is_empty() && refused.is_empty() {
        errln!(
            "no tests found in {}{}: record one with `sandstack record BATCH --name NAME`, or add a fixture history \
             (README, \"Record and replay\")",
            folder.dir.display(),
            if args.filter.is_some() || !only.is_empty() { " for what was asked" } else { "" }
        );
        return Ok(ExitCode::FAILURE);
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    eprintln!(
        "running {} {} ({} at once)",
        cases.len(),
        if cases.len() == 1 { "test" } else { "tests" },
        jobs.min(cases.len()).max(1)
    );
    let env = host_env();
    let tolerance = Tolerance {
        score: args.score_tolerance,
    };
    let setting = setting(cli, &folder.dir, &env, tolerance)?;
    for r in &refused {
        print_result(r);
    }
    let out = Mutex::new(());
    let each = |r: &TestResult| {
        let _one_at_a_time = out.lock();
        print_result(r);
    };
    let plan = Plan {
        jobs,
        fail_fast: args.fail_fast,
    };
    let mut results = folder_tests::run_all(&folder, &cases, &setting, plan, &each)
        .map_err(anyhow::Error::msg)?;
    results.extend(refused);
    let updated = if args.update {
        update(&folder.dir, &results)
    } else {
        Updated::default()
    };
    if let Some(path) = &args.junit {
        write_junit(path, &results)?;
        errln!("wrote JUnit XML to {}", path.display());
    }
    let failed = summary(&results, &updated, started, folder.errors.len());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What every test runs with: the folder, the process's environment, the
/// default sandbox and the policy's settings for the folder's SQL (the
/// same for `sandstack record`'s replay).
pub(super) fn setting<'a>(
    cli: &Cli,
    root: &'a Path,
    env: &'a std::collections::BTreeMap<String, String>,
    tolerance: Tolerance,
) -> anyhow::Result<Setting<'a>> {
    let policy = load_policy(cli)?;
    Ok(Setting {
        root,
        tolerance,
        env,
        sandboxes: &crate::jobs::ingest::DefaultSandbox,
        confined: super::confined_settings(&policy),
    })
}

/// The most characters of an error shown (a batch's error may quote
/// megabytes of its own text).
const MAX_SHOWN: usize = 4_000;

/// One test's line, and what it failed with, indented below it.
pub fn print_result(r: &TestResult) {
    let secs = format!("{:.2} s", r.elapsed.as_secs_f64());
    let rows = r.actual.as_ref().map(Vec::len);
    match &r.outcome {
        Outcome::Passed => outln!("ok      {} ({} rows, {secs})", r.id, rows.unwrap_or(0)),
        Outcome::Failed(diff) => {
            outln!("FAILED  {} ({secs}): {}", r.id, diff.summary());
            for line in &diff.lines {
                outln!("          {line}");
            }
            let shown = diff.lines.len();
            let all = diff.changed + diff.missing + diff.extra;
            if all > shown {
                println!("          ... and {} more", all - shown);
            }
        }
        Outcome::NoExpected => outln!(
            "NEW     {} ({} rows, {secs}): no expected rows yet; review them and run `sandstack test --update`",
            r.id,
            rows.unwrap_or(0)
        ),
        Outcome::BadExpected(message) => println!(
            "FAILED  {}: {}\n          (`sandstack test --update` writes it again)",
            crate::escape::terminal_line(&r.id),
            crate::escape::terminal_indented(&crate::escape::truncate(message, MAX_SHOWN), "          ")
        ),
        // A refused file's message starts with its name, its id.
        Outcome::Error(message) if message.starts_with(&r.id) => println!(
            "ERROR   {}",
            crate::escape::terminal_indented(&crate::escape::truncate(message, MAX_SHOWN), "          ")
        ),
        Outcome::Error(message) => println!(
            "ERROR   {}: {}",
            crate::escape::terminal_line(&r.id),
            crate::escape::terminal_indented(&crate::escape::truncate(message, MAX_SHOWN), "          ")
        ),
        Outcome::NotRun => outln!("skipped {} (--fail-fast)", r.id),
    }
    for note in &r.notes {
        outln!("          note: {note}");
    }
}

#[derive(Default)]
struct Updated {
    files: usize,
    failed: usize,
}

/// Rewrite the expected file of every test that ran and did not pass.
fn update(root: &Path, results: &[TestResult]) -> Updated {
    let mut updated = Updated::default();
    for r in results {
        let (Some(rows), Outcome::Failed(_) | Outcome::NoExpected | Outcome::BadExpected(_)) =
            (&r.actual, &r.outcome)
        else {
            continue;
        };
        let Some(path) = expected_path(root, r) else {
            continue;
        };
        match folder_tests::write_expected(root, &path, rows) {
            Ok(()) => {
                updated.files += 1;
                outln!("updated {} ({} rows)", path.display(), rows.len());
            }
            Err(e) => {
                updated.failed += 1;
                errln!("error: cannot update {}: {e}", r.id);
            }
        }
    }
    updated
}

/// Where `r`'s expected file is (the test's, not a path its output chose).
fn expected_path(root: &Path, r: &TestResult) -> Option<PathBuf> {
    r.expected.as_ref().filter(|p| p.starts_with(root)).cloned()
}

fn write_junit(path: &Path, results: &[TestResult]) -> anyhow::Result<()> {
    let xml = folder_tests::junit::report(results)?;
    folder_tests::replace_file(path, xml.as_bytes())
        .map_err(|e| anyhow::anyhow!("--junit {}: {e}", path.display()))
}

/// The summary line; whether the run failed.
fn summary(
    results: &[TestResult],
    updated: &Updated,
    started: Instant,
    folder_errors: usize,
) -> bool {
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
    let passed = count(|o| *o == Outcome::Passed);
    let failed = count(|o| {
        matches!(
            o,
            Outcome::Failed(_) | Outcome::NoExpected | Outcome::BadExpected(_)
        )
    });
    let errors = count(|o| matches!(o, Outcome::Error(_)));
    let not_run = count(|o| *o == Outcome::NotRun);
    let mut parts = vec![format!("{passed} passed")];
    // A failure whose expected file was rewritten is counted as updated.
    let unresolved = failed.saturating_sub(updated.files);
    if unresolved > 0 {
        parts.push(format!("{unresolved} failed"));
    }
    if errors > 0 {
        parts.push(format!("{errors} could not run"));
    }
    if not_run > 0 {
        parts.push(format!("{not_run} not run"));
    }
    if updated.files > 0 {
        parts.push(format!("{} expected files updated", updated.files));
    }
    if folder_errors > 0 {
        parts.push(format!("{folder_errors} errors loading the folder"));
    }
    println!(
        "{} tests: {} ({:.1} s)",
        results.len(),
        parts.join(", "),
        started.elapsed().as_secs_f64()
    );
    unresolved > 0 || errors > 0 || not_run > 0 || updated.failed > 0 || folder_errors > 0
}

//! `sandstack record BATCH --name NAME`: one live ingest run recorded into
//! the folder's test layout (`<batch folder>/tests/NAME.yaml`, secrets
//! scrubbed as `--record` scrubs them), replayed at once as `sandstack
//! test` will, the replay's rows written as the expected file, and its
//! values compared with the live run's: a batch whose rows depend on
//! something a recording does not hold is found now, not in CI. Nothing
//! is stored in the database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::{find_batch, host_env, job_context, load_folder, Cli};
use crate::cassette::{Cassette, RecordMode};
use crate::config::Job;
use crate::folder_tests::expected::{self, Tolerance};
use crate::folder_tests::{self, discover, Input, Outcome, TestCase};
use crate::jobs::ingest::recording::CassetteOptions;
use crate::pipeline::{dispatch, JobOutcome, RunMode};
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  sandstack record hn_top_stories_scores --name front_page
writes metrics/examples/hackernews/tests/front_page.yaml and front_page.expected.csv; commit both,
and `sandstack test` replays the run with no network from then on.")]
pub struct RecordArgs {
    /// The batch (metric_batch) to run and record: a Python batch, or SQL on a warehouse.
    pub batch: String,
    /// The test's name: letters, digits, _, - and . (the files are tests/NAME.yaml and tests/NAME.expected.csv).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Replace the test's recording and expected rows if they exist.
    #[arg(long)]
    pub force: bool,
    /// More header or environment variable names whose values are scrubbed from the recording
    /// (Authorization, Cookie and names with KEY, TOKEN, SECRET or PASSWORD always are).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub scrub: Vec<String>,
}

pub fn record(cli: &Cli, args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, &args.batch)?;
    if !discover::valid_name(&args.name) {
        bail!(
            "--name `{}` cannot name a test: use letters, digits, _, - and . (at most {} characters, not starting with a dot)",
            args.name,
            discover::MAX_NAME_CHARS
        );
    }
    folder_tests::run::recorded_code(spec).map_err(anyhow::Error::msg)?;
    let env = host_env();
    if spec.db != crate::config::Db::DuckDb && !crate::warehouse::reads_over_http(spec.db, &env) {
        bail!(
            "batch `{}` reads db: {}, which is not read over HTTP, so a run of it cannot be recorded: test its \
             judgements with a fixture history instead",
            spec.metric_batch,
            crate::config::Choice::name(spec.db)
        );
    }
    let dir = discover::tests_dir(spec);
    let beside: Vec<&str> = folder
        .batches
        .iter()
        .filter(|b| discover::tests_dir(b) == dir)
        .map(|b| b.metric_batch.as_str())
        .collect();
    if beside.len() > 1 {
        bail!(
            "batch `{}` shares its folder with {}: a test belongs to the one batch of its folder, so sandstack test \
             would refuse it; give each batch a folder of its own",
            spec.metric_batch,
            beside.join(", ")
        );
    }
    if std::fs::symlink_metadata(&dir).is_err() {
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    folder_tests::inside(&folder.dir, &dir).map_err(anyhow::Error::msg)?;
    let recording = dir.join(format!("{}{}", args.name, discover::RECORDING));
    let expected_file = dir.join(format!("{}{}", args.name, discover::EXPECTED));
    for other in [discover::RECORDING_YML, discover::HISTORY] {
        let taken = dir.join(format!("{}{other}", args.name));
        if std::fs::symlink_metadata(&taken).is_ok() {
            bail!(
                "{} is test `{}` already: choose another --name",
                taken.display(),
                args.name
            );
        }
    }
    for path in [&recording, &expected_file] {
        if std::fs::symlink_metadata(path).is_ok() {
            discover::regular(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if !args.force {
                bail!(
                    "{} exists: pass --force to record the test again, or choose another --name",
                    path.display()
                );
            }
        }
    }

    // Recorded into a scratch folder first: a failed run leaves the tests
    // folder as it was.
    let scratch = tempfile::tempdir().context("making a scratch folder")?;
    let cassette_file = scratch.path().join("recording.yaml");
    let mode = RunMode {
        cassette: Some(CassetteOptions {
            path: cassette_file.clone(),
            mode: RecordMode::All,
            match_on: Vec::new(),
            scrub: args.scrub.clone(),
        }),
        dry_run: true,
        simulated_now_us: None,
    };
    let mut store = Store::in_memory()?;
    errln!("record {}: running the ingest for real", spec.metric_batch);
    let report = match dispatch::run(
        spec,
        &mut store,
        Job::Ingest,
        &job_context(&env, None, mode),
    ) {
        Ok(JobOutcome::Ingested(report, ..)) => report,
        Ok(_) => bail!("the ingest job reported something other than rows"),
        Err(e) => {
            if let Some(d) = e.sandbox() {
                super::ingest::print_sandbox(d);
            }
            return Err(
                anyhow::Error::new(e).context(format!("nothing was written to {}", dir.display()))
            );
        }
    };
    let rows = expected::rows_of(std::slice::from_ref(&report.rows)).map_err(anyhow::Error::msg)?;
    let cassette = Cassette::load(&cassette_file)?;
    folder_tests::replace_file(&recording, &std::fs::read(&cassette_file)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", recording.display()))?;
    outln!(
        "recorded {}/{}: {} HTTP {}, {} rows",
        spec.metric_batch,
        args.name,
        cassette.interactions.len(),
        if cassette.interactions.len() == 1 {
            "exchange"
        } else {
            "exchanges"
        },
        rows.len()
    );
    outln!("  {}", recording.display());
    let case = TestCase {
        batch: spec.metric_batch.clone(),
        name: args.name.clone(),
        file: recording.clone(),
        input: Input::Recording(recording.clone()),
        expected: expected_file.clone(),
    };
    let replayed = replay(cli, &folder.dir, &env, spec, &case)?;
    folder_tests::write_expected(&folder.dir, &expected_file, &replayed)
        .map_err(anyhow::Error::msg)?;
    outln!("  {}", expected_file.display());
    match differences(&rows, &replayed) {
        None => {
            outln!(
                "the replay gives the live run's values (stamped with the recorded clock): commit both files; \
                 `sandstack test` checks them from now on"
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(what) => {
            errln!(
                "error: the replay does not give the live run's values ({what}): the batch's rows depend on something \
                 a recording does not hold, so a change to them may go unseen (the files are kept, to look into it)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The rows of the new test's replay, as `sandstack test` will get them.
fn replay(
    cli: &Cli,
    root: &Path,
    env: &std::collections::BTreeMap<String, String>,
    spec: &crate::config::BatchSpec,
    case: &TestCase,
) -> anyhow::Result<Vec<expected::Row>> {
    let setting = super::test::setting(cli, root, env, Tolerance::default())?;
    let result = folder_tests::run::run_case(spec, case, &setting);
    match (result.outcome, result.actual) {
        (Outcome::Error(message), _) => bail!(
            "replaying the new recording failed, so `sandstack test` will fail on it (the recording is kept, to look \
             into it): {message}"
        ),
        (_, Some(rows)) => Ok(rows),
        (_, None) => bail!("replaying the new recording gave no rows"),
    }
}

/// How the replay's rows differ from the live run's, times aside (a
/// replay's clock starts at the recorded start and steps a microsecond a
/// read, so its times are its own); None when they do not.
fn differences(live: &[expected::Row], replayed: &[expected::Row]) -> Option<String> {
    let values = |rows: &[expected::Row]| {
        let mut v: Vec<(String, String, Option<u64>)> = rows
            .iter()
            .map(|r| (r.name.clone(), r.kind.clone(), r.value.map(f64::to_bits)))
            .collect();
        v.sort();
        v
    };
    let (a, b) = (values(live), values(replayed));
    if a == b {
        return None;
    }
    if a.len() != b.len() {
        return Some(format!("{} rows live, {} replayed", a.len(), b.len()));
    }
    let first = a
        .iter()
        .zip(&b)
        .find(|(x, y)| x != y)
        .map(|(x, _)| x.0.clone());
    Some(format!(
        "metric {} differs first",
        crate::escape::truncate(&first.unwrap_or_default(), 120)
    ))
}

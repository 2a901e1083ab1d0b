//! `sandstack run`: load the metrics folder, start the scheduler (and the
//! dashboard, `cli/dashboard.rs`), watch the folder for edits, and shut down
//! gracefully on SIGINT/SIGTERM. `--demo` is `cli/demo.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch as tokio_watch};

use super::dashboard::{start_dashboard, WebArgs};
use super::demo::{demo_backfill, load};
use super::tasks::{blocking, wait_for_signal};
use super::{host_env, Cli};
use crate::config::{MetricsFolder, Policy};
use crate::jobs::ingest::DefaultSandbox;
use crate::scheduler::clock::SystemClock;
use crate::scheduler::plan::{runnable_jobs, Plan};
use crate::scheduler::runner::{JobRunner, StoreRunLog, StoreRunner};
use crate::scheduler::{self, Event, Scheduler};
use crate::store::{Retention, RunStatus, Store};

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Jobs running at once (default: the number of cores).
    #[arg(long)]
    pub max_concurrent: Option<usize>,
    /// Seconds running jobs get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Run history older than this many days is deleted.
    #[arg(long, default_value_t = 14)]
    pub runs_retention_days: u64,
    /// At most this many runs are kept in the history.
    #[arg(long, default_value_t = 100_000)]
    pub runs_max_rows: u64,
    /// Demo profile: turn on every schedule of every batch (ingest, score, alert, change every minute; train every 5),
    /// and backfill batches with no rows yet, so the first scores and alerts appear within a minute.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: periods to backfill, 10 minutes apart.
    #[arg(long, default_value_t = 144)]
    pub demo_periods: usize,
    /// This worker's name in a fleet sharing a PostgreSQL store (default: host:pid). Unique per worker.
    #[arg(long, env = "SANDSTACK_WORKER")]
    pub worker: Option<String>,
    /// With a PostgreSQL store: seconds a claimed run stays this worker's without a heartbeat (sent every third
    /// of it). A killed worker's running work is recorded as interrupted, and its schedules carry on on the other
    /// workers, within this time.
    #[arg(long, default_value_t = 15)]
    pub lease_secs: u64,
    #[command(flatten)]
    pub web: WebArgs,
    /// Do not serve the dashboard.
    #[arg(long)]
    pub no_dashboard: bool,
}

pub fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = rt.block_on(run_async(cli, args));
    // Runs still going after the grace period were recorded as interrupted;
    // do not wait for them (dropping the runtime would, for as long as they
    // take).
    rt.shutdown_timeout(Duration::from_millis(200));
    outcome
}

async fn run_async(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let dir = cli.metrics.clone();
    let demo = args.demo;
    let policy = Arc::new(super::load_policy(cli)?);
    let folder = load_reporting(&dir, demo, &policy)?;
    let store = blocking(|| -> anyhow::Result<Store> {
        let store = super::open_store(cli)?;
        store.ensure_runs_table()?;
        Ok(store)
    })?;
    let env = host_env();
    if demo {
        demo_backfill(&folder, &store, &env, args.demo_periods).await?;
    }

    let now = chrono::Utc::now();
    let plan = blocking(|| {
        Plan::new(&folder, now, &|batch, job| {
            store
                .last_scheduled(batch, job.name())
                .ok()
                .flatten()
                .and_then(chrono::DateTime::from_timestamp_micros)
        })
    });
    print_plan(&plan, &folder, cli);

    let loader: scheduler::watch::Loader = {
        let (dir, policy) = (dir.clone(), policy.clone());
        Arc::new(move || load(&dir, demo, &policy))
    };
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let _watch = scheduler::watch::watch(
        &dir,
        loader.clone(),
        reload_tx.clone(),
        Duration::from_millis(300),
    )
    .map_err(|e| tracing::warn!(dir = %dir.display(), error = %e, "hot reload is off: cannot watch the folder"))
    .ok();
    let (stop_tx, stop_rx) = tokio_watch::channel(false);
    // Pauses made through the API outlive the process.
    let paused: scheduler::Paused =
        Arc::new(std::sync::RwLock::new(blocking(|| store.paused_batches())?));
    let (controls, run_now) = scheduler::Controls::new(paused.clone());
    let control = crate::web::api::DaemonControl {
        run_now,
        paused,
        reload: reload_tx.clone(),
    };
    let dashboard = if args.no_dashboard {
        None
    } else {
        let d = start_dashboard(
            cli,
            &args.web,
            &store,
            loader,
            Some(control),
            stop_rx.clone(),
        );
        Some(d.await?)
    };
    tokio::spawn(stop_on_signals(stop_tx));

    let sched = blocking(|| scheduler_for(cli, args, &store, env, controls))?;
    let out = sched.run(plan, reload_rx, stop_rx).await;
    if let Some(d) = dashboard {
        // Open keep-alive connections must not hold the exit.
        let _ = tokio::time::timeout(Duration::from_secs(1), d.task).await;
    }
    eprintln!(
        "sandstack run: stopped ({} run(s) finished during shutdown, {} interrupted)",
        out.finished_in_grace,
        out.interrupted.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Load the folder, printing its warnings and errors; a missing folder is
/// the only thing that stops `run` (a broken batch only skips itself).
fn load_reporting(dir: &Path, demo: bool, policy: &Policy) -> anyhow::Result<MetricsFolder> {
    let folder = load(dir, demo, policy);
    for w in &folder.warnings {
        errln!("warning: {w}");
    }
    for e in &folder.errors {
        errln!("error: {e}");
    }
    if !dir.is_dir() {
        anyhow::bail!(
            "metrics folder {} does not exist: pass --metrics DIR or set SANDSTACK_METRICS",
            dir.display()
        );
    }
    Ok(folder)
}

/// The first signal asks for a graceful shutdown; a second exits at once.
async fn stop_on_signals(stop_tx: tokio_watch::Sender<bool>) {
    wait_for_signal().await;
    eprintln!("sandstack run: shutting down (signal again to exit now)");
    let _ = stop_tx.send(true);
    wait_for_signal().await;
    eprintln!("sandstack run: second signal, exiting now");
    std::process::exit(130);
}

/// The scheduler with its runner, history and options from the flags; its
/// events are printed as they come.
fn scheduler_for(
    cli: &Cli,
    args: &RunArgs,
    store: &Store,
    env: BTreeMap<String, String>,
    controls: scheduler::Controls,
) -> anyhow::Result<Scheduler> {
    let runner: Arc<dyn JobRunner> = Arc::new(StoreRunner::new(
        store.try_clone()?,
        Arc::new(DefaultSandbox),
        env,
        super::db_paths::cassette_dir(&cli.db),
        super::db_paths::plot_dir(&cli.db),
    ));
    let log = Arc::new(StoreRunLog::new(
        store.try_clone()?,
        Retention {
            max_age_days: args.runs_retention_days,
            max_rows: args.runs_max_rows,
        },
    ));
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = events_rx.recv().await {
            print_event(&e);
        }
    });
    let mut options = scheduler::Options {
        grace: Duration::from_secs(args.grace_secs),
        ..Default::default()
    };
    if let Some(n) = args.max_concurrent {
        options.max_concurrent = n.max(1);
    }
    Ok(Scheduler {
        clock: Arc::new(SystemClock),
        runner,
        log,
        options,
        events: Some(events_tx),
        controls,
        fleet: join_fleet(cli, args, store)?,
    })
}

/// With a shared store (PostgreSQL), join its fleet of workers.
fn join_fleet(
    cli: &Cli,
    args: &RunArgs,
    store: &Store,
) -> anyhow::Result<Option<Arc<scheduler::fleet::Fleet>>> {
    let name = args
        .worker
        .clone()
        .unwrap_or_else(scheduler::fleet::default_worker_name);
    let lease = Duration::from_secs(args.lease_secs.max(1));
    let Some(fleet) = scheduler::fleet::Fleet::join(store.try_clone()?, name, lease)? else {
        return Ok(None);
    };
    errln!(
        "worker {} joined the fleet sharing {} (lease {} s: its runs are taken over {} s after it stops renewing them)",
        fleet.worker,
        cli.db.label(),
        lease.as_secs(),
        lease.as_secs()
    );
    Ok(Some(Arc::new(fleet)))
}

fn print_plan(plan: &Plan, folder: &MetricsFolder, cli: &Cli) {
    let enabled = folder.enabled_batches().count();
    outln!(
        "sandstack run: {} batch(es) in {}, {} enabled, {} scheduled job(s); storing in {}",
        folder.batches.len(),
        folder.dir.display(),
        enabled,
        plan.entries.len(),
        cli.db.label()
    );
    for spec in plan.batches() {
        let jobs: Vec<String> = runnable_jobs(spec)
            .map(|(j, c)| format!("{} ({})", j.name(), c.text))
            .collect();
        if !jobs.is_empty() {
            outln!("  {}: {}", spec.metric_batch, jobs.join(", "));
        }
    }
    if plan.entries.is_empty() {
        println!(
            "  no schedule is RUNNING. Turn one on in the batch's YAML (ingest_default_schedule_status: RUNNING), \
             from the environment (ANOMSTACK__<BATCH>__INGEST_DEFAULT_SCHEDULE_STATUS=RUNNING), or try --demo."
        );
    }
    outln!(
        "  run history: the dashboard's Runs page, or `sandstack runs --db {}` once this process stops; edits to the folder are picked up live; Ctrl-C stops.",
        cli.db.label()
    );
}

fn print_event(e: &Event) {
    if let Event::Finished(r) = e {
        let late_ms = (r.started_us - r.scheduled_us) as f64 / 1e3;
        match r.status {
            RunStatus::Succeeded => outln!(
                "{} {:<8} {}: ok, {} rows, {:.0} ms (started {:.0} ms after its tick)",
                r.batch,
                r.job,
                r.run_id,
                r.rows,
                r.wall_ms,
                late_ms
            ),
            _ => outln!(
                "{} {:<8} {}: {}: {}",
                r.batch,
                r.job,
                r.run_id,
                r.status.as_str(),
                r.error
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
        }
    }
}

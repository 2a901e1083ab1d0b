//! `sandstack train|score|alert|change|delete` and `llmalert`: one job of
//! one batch, here or in the daemon that holds the database.

use std::process::ExitCode;

use super::{find_batch, host_env, job_context, load_folder, CassetteArgs, Cli};
use crate::alerts::Channels;
use crate::config::{BatchSpec, Job};
use crate::pipeline::describe::describe;
use crate::pipeline::{dispatch, JobOutcome, RunMode};
use crate::store::Store;

/// Run one job on one batch and print what it did; with `channels`, send
/// its alerts or changes. `mode` says how an llmalert run goes (its
/// cassette, a dry run).
pub fn run_job(
    spec: &BatchSpec,
    store: &mut Store,
    job: Job,
    channels: Option<&Channels>,
    mode: RunMode,
) -> anyhow::Result<JobOutcome> {
    let env = host_env();
    let out = dispatch::run(spec, store, job, &job_context(&env, channels, mode))?;
    print!("{}", crate::escape::terminal_block(&describe(spec, &out)));
    Ok(out)
}

/// When a job runs: `--at`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClockArgs {
    /// Run as if it were this instant: the SQL's now(), current_timestamp and current_date
    /// return it, so the shipped templates' windows (train_metric_timestamp_max_days_ago, ...)
    /// fall on imported history of any age. A UTC time (2024-05-01T13:00:00Z, 2024-05-01 13:00,
    /// 2024-05-01) or `latest`: the batch's newest stored observation.
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    pub at: Option<At>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    Instant(i64),
    Latest,
}

fn parse_at(text: &str) -> Result<At, String> {
    if text == "latest" {
        return Ok(At::Latest);
    }
    crate::jobs::import::cells::TimeReader::UTC
        .parse(text).map(At::Instant).map_err(|_| {
        format!("`{text}` is not a time: use a UTC time such as 2024-05-01T13:00:00Z, 2024-05-01 13:00 or 2024-05-01, or `latest`")
    })
}

/// The instant `at` names for `spec` (None: the real clock).
fn instant(spec: &BatchSpec, store: &Store, at: Option<At>) -> anyhow::Result<Option<i64>> {
    match at {
        None => Ok(None),
        Some(At::Instant(t)) => Ok(Some(t)),
        Some(At::Latest) => {
            let seen = store.timestamps_of_type(
                &spec.table_key,
                &spec.metric_batch,
                crate::domain::MetricType::Metric,
            )?;
            match seen.values().filter_map(|s| s.last()).max() {
                Some(t) => Ok(Some(*t)),
                None => anyhow::bail!(
                    "--at latest: batch {} has no stored observations (import or ingest some first)",
                    spec.metric_batch
                ),
            }
        }
    }
}

pub fn job(cli: &Cli, name: &str, job: Job, clock: &ClockArgs) -> anyhow::Result<ExitCode> {
    match job_with_mode(cli, name, job, RunMode::default(), clock.at)? {
        Ran::Here(_) | Ran::InDaemon(true) => Ok(ExitCode::SUCCESS),
        Ran::InDaemon(false) => Ok(ExitCode::FAILURE),
    }
}

/// Where a job ran and how.
pub enum Ran {
    Here(Box<JobOutcome>),
    /// In the daemon holding the database; whether it succeeded.
    InDaemon(bool),
}

/// `sandstack llmalert BATCH`, with its record, replay and dry-run options.
pub fn llmalert(
    cli: &Cli,
    name: &str,
    args: &CassetteArgs,
    dry_run: bool,
    show_prompts: bool,
) -> anyhow::Result<ExitCode> {
    let mode = RunMode {
        cassette: super::ingest::cassette_options(args),
        dry_run,
        simulated_now_us: None,
    };
    let out = match job_with_mode(cli, name, Job::Llmalert, mode, None)? {
        Ran::Here(out) => out,
        Ran::InDaemon(ok) => {
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    };
    if let (true, JobOutcome::LlmAlerted(r, _)) = (show_prompts, out.as_ref()) {
        for p in &r.previews {
            println!();
            outln!("--- {} (system) ---", p.metric);
            // The prompts hold the batch's text: indented, so none of its
            // lines passes for sandstack's own or for the next frame.
            println!("  {}", crate::escape::terminal_indented(p.system, "  "));
            outln!("--- {} (user) ---", p.metric);
            println!("  {}", crate::escape::terminal_indented(&p.text, "  "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn job_with_mode(
    cli: &Cli,
    name: &str,
    job: Job,
    mut mode: RunMode,
    at: Option<At>,
) -> anyhow::Result<Ran> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, name)?;
    let mut store = match super::open_target(cli)? {
        super::Target::Local(store) => store,
        super::Target::Daemon(d) => {
            if mode.cassette.is_some() || mode.dry_run || at.is_some() {
                return Err(super::daemon::refuse(
                    &d,
                    "--record, --replay, --cassette, --dry-run or --at",
                ));
            }
            return Ok(Ran::InDaemon(d.run_job(name, job.name())?));
        }
    };
    mode.simulated_now_us = instant(spec, &store, at)?;
    if let Some(t) = mode.simulated_now_us {
        errln!(
            "{} {}: running at {} UTC",
            job.name(),
            spec.metric_batch,
            crate::domain::fmt_us(t)
        );
    }
    let channels = Channels::from_env(&host_env());
    let out = run_job(spec, &mut store, job, Some(&channels), mode)?;
    Ok(Ran::Here(Box::new(out)))
}

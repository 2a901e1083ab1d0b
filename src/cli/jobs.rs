//! `sandstack train|score|alert|change|delete|summary` and `backfill`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{find_batch, host_env, load_folder, CassetteArgs, Cli};
use crate::alerts::Channels;
use crate::config::{BatchSpec, Job};
use crate::jobs::ingest::DefaultSandbox;
use crate::jobs::maintenance;
use crate::pipeline::backfill;
use crate::pipeline::describe::{describe, sent_lines};
use crate::pipeline::notify;
use crate::pipeline::{dispatch, JobContext, JobOutcome, RunMode};
use crate::store::Store;

/// The command line's context for a job: models and plots below the
/// working directory, the process's environment, the default sandbox.
pub(super) fn context<'a>(
    env: &'a std::collections::BTreeMap<String, String>,
    channels: Option<&'a Channels>,
    mode: RunMode,
) -> JobContext<'a> {
    JobContext {
        model_base: Path::new("."),
        plot_dir: Path::new("."),
        channels,
        env,
        sandboxes: &DefaultSandbox,
        mode,
    }
}

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
    let out = dispatch::run(spec, store, job, &context(&env, channels, mode))?;
    print!("{}", crate::escape::terminal_block(&describe(spec, &out)));
    Ok(out)
}

pub fn job(cli: &Cli, name: &str, job: Job) -> anyhow::Result<ExitCode> {
    match job_with_mode(cli, name, job, RunMode::default())? {
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
    let out = match job_with_mode(cli, name, Job::Llmalert, mode)? {
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
            println!("{}", crate::escape::terminal_block(p.system));
            outln!("--- {} (user) ---", p.metric);
            println!("{}", crate::escape::terminal_block(&p.text));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn job_with_mode(cli: &Cli, name: &str, job: Job, mode: RunMode) -> anyhow::Result<Ran> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, name)?;
    let mut store = match super::open_target(cli)? {
        super::Target::Local(store) => store,
        super::Target::Daemon(d) => {
            if mode.cassette.is_some() || mode.dry_run {
                return Err(super::daemon::refuse(
                    &d,
                    "--record, --replay, --cassette or --dry-run",
                ));
            }
            return Ok(Ran::InDaemon(d.run_job(name, job.name())?));
        }
    };
    let channels = Channels::from_env(&host_env());
    let out = run_job(spec, &mut store, job, Some(&channels), mode)?;
    Ok(Ran::Here(Box::new(out)))
}

pub fn summary(cli: &Cli, name: Option<&str>, send: bool) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    let store = match super::open_target(cli)? {
        super::Target::Local(store) => store,
        super::Target::Daemon(d) if send => {
            return Err(super::daemon::refuse(&d, "summary --send"))
        }
        super::Target::Daemon(d) => {
            let q = name
                .map(|n| {
                    format!(
                        "?batch={}",
                        url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
                    )
                })
                .unwrap_or_default();
            let s: crate::web::api::SummaryText = d.get(&format!("/api/summary{q}"))?;
            println!("{}", crate::escape::terminal_block(&s.table));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let batches: Vec<&BatchSpec> = match name {
        Some(n) => vec![find_batch(&folder, n)?],
        None => folder.enabled_batches().collect(),
    };
    let methods = batches
        .first()
        .map(|b| b.alert.methods.clone())
        .unwrap_or_default();
    let out = maintenance::summary(batches.into_iter(), &store)?;
    println!("{}", crate::escape::table(&out)?);
    if send {
        let channels = Channels::from_env(&host_env());
        let sent = notify::summary(name.unwrap_or("all batches"), &methods, &out, &channels);
        let mut text = String::new();
        sent_lines(&mut text, &sent);
        print!("{}", crate::escape::terminal_block(&text));
    }
    Ok(ExitCode::SUCCESS)
}

/// `sandstack plot BATCH [--out DIR]`.
pub fn plot(cli: &Cli, name: &str, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, name)?;
    let store = match super::open_target(cli)? {
        super::Target::Local(store) => store,
        super::Target::Daemon(d) if out.is_some() => {
            return Err(super::daemon::refuse(&d, "plot --out"))
        }
        super::Target::Daemon(d) => {
            let ok = d.run_job(name, Job::Plot.name())?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    };
    let dir = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| super::db_paths::plot_dir(&cli.db));
    let files = crate::jobs::plot::write_plots(spec, &store, &dir)?;
    if files.is_empty() {
        outln!("batch {name}: no metrics to plot yet");
    }
    for f in &files {
        outln!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `10m`, `30s`, `2h`, `1d`.
pub fn parse_every(text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().with_context(|| {
        format!("--every `{text}`: expected a number and s, m, h or d (e.g. 10m)")
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--every `{text}`: the unit must be s, m, h or d (e.g. 10m)"),
    };
    if secs == 0 {
        bail!("--every must be more than 0");
    }
    Ok(Duration::from_secs(secs))
}

pub fn backfill(cli: &Cli, name: &str, periods: usize, every: &str) -> anyhow::Result<ExitCode> {
    let step = parse_every(every)?;
    let folder = load_folder(cli)?;
    let spec = find_batch(&folder, name)?;
    let mut store = match super::open_target(cli)? {
        super::Target::Local(store) => store,
        super::Target::Daemon(d) => return Err(super::daemon::refuse(&d, "backfill")),
    };
    let env = host_env();
    let ctx = context(&env, None, RunMode::default());
    let report = backfill::ingest_periods(
        spec,
        &mut store,
        &ctx,
        backfill::Periods {
            count: periods,
            step,
            end_us: chrono::Utc::now().timestamp_micros(),
            give_up_after: None,
        },
        &|done, total, took| {
            errln!(
                "backfill {name}: {done}/{total} periods ({:.1}s)",
                took.as_secs_f64()
            )
        },
    );
    if let Some(e) = &report.first_error {
        eprintln!(
            "first failure: {}",
            crate::escape::terminal_indented(e, "  ")
        );
    }
    outln!(
        "batch {name}: backfilled {periods} periods every {every}: {} rows stored, {} periods failed",
        report.stored, report.failed
    );
    // Each judging job's lines as it ends; the first failure ends the
    // command.
    let mut failure = None;
    backfill::judge(
        spec,
        &mut store,
        &ctx,
        periods,
        &mut |scoring, _, done| match done {
            Ok(out) => {
                print!(
                    "{}",
                    crate::escape::terminal_block(&describe(scoring, &out))
                );
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        },
    )
    .map_err(|errors| {
        anyhow::anyhow!(
            "batch {name}: cannot widen the scoring window: {}",
            join_errors(&errors)
        )
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn join_errors(errors: &[crate::config::ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_parses_units() {
        assert_eq!(super::parse_every("10m").expect("ok").as_secs(), 600);
        assert_eq!(super::parse_every("1d").expect("ok").as_secs(), 86_400);
        assert!(super::parse_every("10x").is_err());
        assert!(super::parse_every("m").is_err());
    }
}

//! `sandstack ingest`: run batches' ingest now and report rows and timing.

use std::process::ExitCode;

use anyhow::bail;

use super::{find_batch, host_env, load_folder, CassetteArgs, Cli};
use crate::cassette::RecordMode;
use crate::config::{BatchSpec, Job, MetricsFolder};
use crate::jobs::ingest::recording::CassetteOptions;
use crate::jobs::ingest::{describe_rows, IngestReport, SandboxDetails};
use crate::pipeline::{dispatch, JobOutcome, RunMode};
use crate::store::Store;

fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn print_sandbox(details: &SandboxDetails) {
    let s = &details.stats;
    println!(
        "  sandbox: wall {}, instantiate {}, fuel {}, peak guest memory {:.1} MiB, {} HTTP requests",
        ms(s.wall),
        ms(s.instantiate),
        s.fuel_used,
        s.peak_memory_bytes as f64 / (1 << 20) as f64,
        s.http_requests
    );
    for l in &details.logs {
        outln!("  log [{}] {}", l.level, l.message);
    }
    if !details.output.trim().is_empty() {
        println!("  output:");
        println!(
            "    {}",
            crate::escape::terminal_indented(details.output.trim_end_matches('\n'), "    ")
        );
    }
}

/// What `--record`, `--replay` and `--cassette` ask for.
pub(crate) fn cassette_options(args: &CassetteArgs) -> Option<CassetteOptions> {
    let (path, mode) = match (&args.record, &args.replay, &args.cassette) {
        (Some(p), _, _) => (p.clone(), RecordMode::All),
        (_, Some(p), _) => (p.clone(), RecordMode::None),
        (_, _, Some(p)) => (p.clone(), args.record_mode.unwrap_or(RecordMode::Once)),
        _ => return None,
    };
    Some(CassetteOptions {
        path,
        mode,
        match_on: args.match_on.clone(),
        scrub: args.scrub.clone(),
    })
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Batch names (metric_batch); see `sandstack list`.
    pub batches: Vec<String>,
    /// Ingest every enabled batch.
    #[arg(long, conflicts_with = "batches")]
    pub all: bool,
    /// Run and validate, print the rows that would be stored, store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows to print per batch.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
    #[command(flatten)]
    pub cassette: CassetteArgs,
}

pub fn ingest(cli: &Cli, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    if !folder.errors.is_empty() {
        for e in &folder.errors {
            errln!("error: {e}");
        }
        eprintln!("note: batches with errors are not run; `sandstack validate` lists them");
    }
    let selected = selected_batches(&folder, args)?;
    let cassette = cassette_options(&args.cassette);
    if cassette.is_some() && selected.len() != 1 {
        bail!("a cassette records one batch's run: name exactly one batch with --record, --replay or --cassette");
    }
    let mut store = if args.dry_run {
        Store::in_memory()?
    } else {
        match super::open_target(cli)? {
            super::Target::Local(store) => store,
            super::Target::Daemon(d) => {
                if cassette.is_some() {
                    return Err(super::daemon::refuse(
                        &d,
                        "--record, --replay or --cassette",
                    ));
                }
                let mut failed = 0;
                for spec in &selected {
                    if !d.run_job(&spec.metric_batch, "ingest")? {
                        failed += 1;
                    }
                }
                return Ok(if failed == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
        }
    };
    let env = host_env();
    let mode = RunMode {
        cassette,
        dry_run: args.dry_run,
        simulated_now_us: None,
    };
    let ctx = super::job_context(&env, None, mode);
    let mut failed = 0;
    for spec in &selected {
        match dispatch::run(spec, &mut store, Job::Ingest, &ctx) {
            Ok(JobOutcome::Ingested(r, ..)) => print_report(&r, cli, args),
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                eprintln!(
                    "error: {}",
                    crate::escape::terminal_indented(&e.to_string(), "  ")
                );
                if let Some(d) = e.sandbox() {
                    print_sandbox(d);
                }
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "{failed} of {} batches failed; nothing was stored for them",
            selected.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The batches named on the command line, or every enabled one with `--all`.
fn selected_batches<'a>(
    folder: &'a MetricsFolder,
    args: &IngestArgs,
) -> anyhow::Result<Vec<&'a BatchSpec>> {
    if args.all {
        return Ok(folder.enabled_batches().collect());
    }
    if args.batches.is_empty() {
        bail!("name the batches to ingest (see `sandstack list`), or pass --all");
    }
    args.batches.iter().map(|n| find_batch(folder, n)).collect()
}

/// One ingest's line of figures, its sandbox details and its rows.
fn print_report(r: &IngestReport, cli: &Cli, args: &IngestArgs) {
    let verb = if args.dry_run {
        format!("would store {} rows", r.rows.num_rows())
    } else {
        format!(
            "stored {} rows in {} ({})",
            r.stored,
            r.table_key,
            cli.db.label()
        )
    };
    let dropped = if r.dropped_nan > 0 {
        format!("; dropped {} NaN rows", r.dropped_nan)
    } else {
        String::new()
    };
    outln!(
        "batch {}: {verb}; source {}, store {}, total {}{dropped}",
        r.batch,
        ms(r.source_time),
        ms(r.store_time),
        ms(r.total_time),
    );
    if let Some(d) = &r.sandbox {
        print_sandbox(d);
    }
    println!(
        "{}",
        crate::escape::terminal_block(&describe_rows(&r.rows, args.show))
    );
}

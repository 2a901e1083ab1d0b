//! `sandstack ingest`: run batches' ingest now and report rows and timing.

use std::process::ExitCode;

use anyhow::bail;

use super::{find_batch, host_env, load_folder, CassetteArgs, Cli};
use crate::config::BatchSpec;
use crate::jobs::ingest::recording::CassetteOptions;
use crate::jobs::ingest::{self, describe_rows, DefaultSandbox, IngestOptions, SandboxDetails};
use crate::sandbox::cassette::RecordMode;
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
        println!("  log [{}] {}", l.level, l.message);
    }
    if !details.output.trim().is_empty() {
        println!("  output:");
        for line in details.output.lines() {
            println!("    {line}");
        }
    }
}

fn cassette_options(args: &CassetteArgs) -> Option<CassetteOptions> {
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

pub fn ingest(
    cli: &Cli,
    names: &[String],
    all: bool,
    dry_run: bool,
    show: usize,
    cassette_args: &CassetteArgs,
) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli);
    if !folder.errors.is_empty() {
        for e in &folder.errors {
            eprintln!("error: {e}");
        }
        eprintln!("note: batches with errors are not run; `sandstack validate` lists them");
    }
    let selected: Vec<&BatchSpec> = if all {
        folder.enabled_batches().collect()
    } else {
        if names.is_empty() {
            bail!("name the batches to ingest (see `sandstack list`), or pass --all");
        }
        names
            .iter()
            .map(|n| find_batch(&folder, n))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let cassette = cassette_options(cassette_args);
    if cassette.is_some() && selected.len() != 1 {
        bail!("a cassette records one batch's run: name exactly one batch with --record, --replay or --cassette");
    }
    let mut store = if dry_run {
        Store::in_memory()?
    } else {
        Store::open(&cli.db)?
    };
    let env = host_env();
    let mut failed = 0;
    for spec in &selected {
        match ingest::run(
            spec,
            &mut store,
            &DefaultSandbox,
            &env,
            IngestOptions {
                dry_run,
                cassette: cassette.clone(),
                simulated_now_us: None,
            },
        ) {
            Ok(r) => {
                let verb = if dry_run {
                    format!("would store {} rows", r.rows.num_rows())
                } else {
                    format!(
                        "stored {} rows in {} ({})",
                        r.stored,
                        r.table_key,
                        cli.db.display()
                    )
                };
                println!(
                    "batch {}: {verb}; source {}, store {}, total {}{}",
                    r.batch,
                    ms(r.source_time),
                    ms(r.store_time),
                    ms(r.total_time),
                    if r.dropped_nan > 0 {
                        format!("; dropped {} NaN rows", r.dropped_nan)
                    } else {
                        String::new()
                    }
                );
                if let Some(d) = &r.sandbox {
                    print_sandbox(d);
                }
                println!("{}", describe_rows(&r.rows, show));
            }
            Err(f) => {
                failed += 1;
                eprintln!("error: {}", f.error);
                if let Some(d) = &f.sandbox {
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

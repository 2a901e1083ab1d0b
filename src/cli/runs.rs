//! `sandstack runs`: read the run history (`sandstack_runs`).

use std::process::ExitCode;

use super::{Cli, Target};
use crate::store::{RunFilter, RunRecord};

#[derive(clap::Args, Debug, Clone)]
pub struct RunsArgs {
    /// Only this batch's runs.
    #[arg(long)]
    pub batch: Option<String>,
    /// Only this job's runs (ingest, train, score, alert, change, plot, delete, summary).
    #[arg(long)]
    pub job: Option<String>,
    /// Only failed and interrupted runs, with their errors in full.
    #[arg(long)]
    pub failed: bool,
    /// Newest runs to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// One run in full: its times, error, cassette and what it printed and logged.
    #[arg(long, value_name = "ID", conflicts_with_all = ["batch", "job", "failed"])]
    pub show: Option<i64>,
}

/// Where a run's error and cassette are printed under its line.
const INDENT: &str = "           ";

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| us.to_string())
}

/// The runs `filter` selects, from the database or the daemon holding it.
fn read_runs(cli: &Cli, filter: &RunFilter) -> anyhow::Result<Vec<RunRecord>> {
    match super::open_target(cli)? {
        Target::Local(store) => Ok(store.list_runs(filter)?),
        Target::Daemon(d) => {
            if let Some(id) = filter.run_id {
                // Only "not found" means no such run; any other failure is said.
                let one: Option<RunRecord> = d.get_optional(&format!("/api/runs/{id}"))?;
                return Ok(one.into_iter().collect());
            }
            let q = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(filter.batch.iter().map(|b| ("batch", b.as_str())))
                .extend_pairs(filter.job.iter().map(|j| ("job", j.as_str())))
                .append_pair("failed", if filter.failed_only { "true" } else { "false" })
                .append_pair("limit", &filter.limit.to_string())
                .finish();
            d.get(&format!("/api/runs?{q}"))
        }
    }
}

/// `sandstack runs --show ID`.
fn show(cli: &Cli, id: i64) -> anyhow::Result<ExitCode> {
    let found = read_runs(
        cli,
        &RunFilter {
            run_id: Some(id),
            limit: 1,
            ..Default::default()
        },
    )?;
    let Some(r) = found.first() else {
        anyhow::bail!(
            "no run {id} in {} (`sandstack runs` lists them; old runs are pruned)",
            cli.db.label()
        );
    };
    outln!(
        "run {}: batch {}, job {}, {}",
        r.run_id,
        r.batch,
        r.job,
        r.status.as_str()
    );
    println!("  scheduled {}", time(r.scheduled_us));
    println!("  started   {}", time(r.started_us));
    println!("  ended     {} ({:.1} ms)", time(r.ended_us), r.wall_ms);
    if r.attempt > 1 {
        println!("  attempt   {}", r.attempt);
    }
    if let Some(w) = &r.worker {
        outln!("  worker    {w}");
    }
    println!("  rows {}, fuel {}", r.rows, r.fuel);
    if let Some(c) = &r.cassette {
        outln!("  cassette: {c}");
    }
    // Framed sections that keep their lines, indented, so no line of them
    // (DuckDB repeats the batch's SQL, a traceback or a print the code's)
    // reads as one of sandstack's: a frame `--- ... ---` included.
    let section = |title: &str, text: &Option<String>, indent: &str| match text {
        Some(t) if !t.trim().is_empty() => {
            println!("--- {title} ---");
            println!(
                "{indent}{}",
                crate::escape::terminal_indented(t.trim_end(), indent)
            );
        }
        _ => println!("--- {title}: none ---"),
    };
    section("error", &r.error, "  ");
    // Indented like the error, so no line of the batch's output starts
    // where a line of sandstack's own does.
    section("log", &r.log, "  ");
    Ok(ExitCode::SUCCESS)
}

pub fn runs(cli: &Cli, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = args.show {
        return show(cli, id);
    }
    let runs = read_runs(
        cli,
        &RunFilter {
            run_id: None,
            batch: args.batch.clone(),
            job: args.job.clone(),
            failed_only: args.failed,
            limit: args.limit,
            offset: 0,
        },
    )?;
    if runs.is_empty() {
        println!("no runs recorded in {} for this filter", cli.db.label());
        return Ok(ExitCode::SUCCESS);
    }
    // Who ran each run, when several workers share the store.
    let fleet = runs.iter().any(|r| r.worker.is_some());
    println!(
        "{:>7}  {:<23}  {:<24} {:<8} {:<11} {:>7} {:>9} {:>12}{}",
        "run",
        "started (UTC)",
        "batch",
        "job",
        "status",
        "rows",
        "wall ms",
        "fuel",
        if fleet { "  worker" } else { "" }
    );
    for r in &runs {
        outln!(
            "{:>7}  {:<23}  {:<24} {:<8} {:<11} {:>7} {:>9.1} {:>12}{}",
            r.run_id,
            time(r.started_us),
            r.batch,
            r.job,
            r.status.as_str(),
            r.rows,
            r.wall_ms,
            r.fuel,
            r.worker
                .as_deref()
                .map(|w| format!("  {w}"))
                .unwrap_or_default()
        );
        // Under its run, indented: every line of the error with --failed,
        // else its first.
        if let Some(e) = &r.error {
            let shown = if args.failed {
                e.trim_end_matches('\n')
            } else {
                e.lines().next().unwrap_or_default()
            };
            if !shown.is_empty() {
                println!(
                    "{INDENT}{}",
                    crate::escape::terminal_indented(shown, INDENT)
                );
            }
        }
        if let Some(c) = &r.cassette {
            outln!("{INDENT}cassette: {c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

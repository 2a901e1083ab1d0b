//! `sandstack backfill BATCH --periods N --every 10m`: ingest past periods,
//! then judge them.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{find_batch, host_env, load_folder, Cli};
use crate::pipeline::backfill;
use crate::pipeline::describe::describe;
use crate::pipeline::RunMode;

/// `10m`, `30s`, `2h`, `1d`.
pub fn parse_every(text: &str) -> anyhow::Result<Duration> {
    parse_span("--every", text)
}

/// A span written `10m`, `30s`, `2h` or `1d`, for the option `flag`.
pub fn parse_span(flag: &str, text: &str) -> anyhow::Result<Duration> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().with_context(|| {
        format!("{flag} `{text}`: expected a number and s, m, h or d (e.g. 10m)")
    })?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("{flag} `{text}`: the unit must be s, m, h or d (e.g. 10m)"),
    };
    let Some(secs) = n.checked_mul(scale).filter(|s| *s <= 100 * 365 * 86_400) else {
        bail!("{flag} `{text}`: more than 100 years");
    };
    if secs == 0 {
        bail!("{flag} must be more than 0");
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
    let ctx = super::job_context(&env, None, RunMode::default());
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

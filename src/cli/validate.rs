//! `sandstack validate` and `sandstack list`.

use std::process::ExitCode;

use super::{load_folder, Cli};
use crate::config::{BatchSpec, Choice, Db, IngestSource, ScheduleStatus};

/// Where the batch's rows come from: `python`, `sql` (over the store),
/// `sql on bigquery` (a warehouse), `imported`.
fn source_label(spec: &BatchSpec) -> String {
    match (&spec.ingest, spec.db) {
        (IngestSource::Python(_), _) => "python".into(),
        (IngestSource::Sql(_), Db::DuckDb) => "sql".into(),
        (IngestSource::Sql(_), db) => format!("sql on {}", db.name()),
        (IngestSource::Imported, _) => "imported".into(),
    }
}

pub fn validate(cli: &Cli) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    for spec in &folder.batches {
        let jobs: Vec<String> = spec
            .scheduled_jobs()
            .map(|(job, s)| {
                let status = match s.status {
                    ScheduleStatus::Running => "RUNNING",
                    ScheduleStatus::Stopped => "STOPPED",
                };
                format!("{} \"{}\" {status}", job.name(), s.cron.text)
            })
            .collect();
        let state = if spec.disable_batch {
            " [disabled]"
        } else {
            ""
        };
        outln!(
            "{}{state} ({}, table {}, {}): {}",
            spec.metric_batch,
            source_label(spec),
            spec.table_key,
            spec.file.display(),
            jobs.join("; ")
        );
    }
    for s in &folder.skipped {
        outln!(
            "{} [skipped] ({}): {}",
            s.metric_batch,
            s.file.display(),
            s.reason
        );
    }
    for note in &folder.notes {
        outln!("info: {note}");
    }
    if folder.errors.is_empty() {
        println!(
            "ok: {} batches ({} skipped), {} warnings",
            folder.batches.len(),
            folder.skipped.len(),
            folder.warnings.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &folder.errors {
            errln!("error: {e}");
        }
        errln!("{} errors in {}", folder.errors.len(), folder.dir.display());
        Ok(ExitCode::FAILURE)
    }
}

pub fn list(cli: &Cli) -> anyhow::Result<ExitCode> {
    let folder = load_folder(cli)?;
    println!(
        "{:<32} {:<7} {:<24} {:<9} file",
        "metric_batch", "source", "table_key", "state"
    );
    for spec in &folder.batches {
        outln!(
            "{:<32} {:<7} {:<24} {:<9} {}",
            spec.metric_batch,
            source_label(spec),
            spec.table_key,
            if spec.disable_batch {
                "disabled"
            } else {
                "enabled"
            },
            spec.file.display()
        );
    }
    for s in &folder.skipped {
        outln!(
            "{:<32} {:<7} {:<24} {:<9} {}",
            s.metric_batch,
            "-",
            "-",
            "skipped",
            s.file.display()
        );
    }
    for e in &folder.errors {
        errln!("error: {e}");
    }
    Ok(if folder.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

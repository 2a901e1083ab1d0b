//! `sandstack plot BATCH [--out DIR]`: one PNG per metric.

use std::path::Path;
use std::process::ExitCode;

use super::{find_batch, load_folder, Cli};
use crate::config::Job;

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

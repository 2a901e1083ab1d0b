//! `sandstack summary [BATCH] [--send]`: every batch's `summary_sql`, printed
//! as a table, and sent through the first batch's alert methods.

use std::process::ExitCode;

use super::{find_batch, host_env, load_folder, Cli};
use crate::alerts::Channels;
use crate::config::BatchSpec;
use crate::jobs::maintenance;
use crate::pipeline::describe::sent_lines;
use crate::pipeline::notify;

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

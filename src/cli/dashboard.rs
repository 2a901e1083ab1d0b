//! `sandstack dashboard`, and the dashboard `sandstack run` serves beside
//! its scheduler: the listening address, the startup line naming what is
//! open, and the announcement that lets commands reach the daemon.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch as tokio_watch;

use super::demo::load;
use super::tasks::{blocking, wait_for_signal};
use super::Cli;
use crate::scheduler;
use crate::store::Store;

#[derive(clap::Args, Debug, Clone)]
pub struct WebArgs {
    /// Address the dashboard listens on (port 0: any free port; the address is printed).
    /// Writes (feedback) need SANDSTACK_DASHBOARD_TOKEN when it is set; reading needs nothing, so keep it on loopback
    /// or behind a proxy unless the data is public.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A host name the dashboard answers to (repeatable; `name` or `name:port`). It always answers to IP
    /// addresses and localhost; other names are refused, so a web page cannot reach it through DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
}

/// A serving dashboard: its task, and its announcement beside the
/// database (removed when this is dropped).
pub(crate) struct Dashboard {
    pub task: tokio::task::JoinHandle<()>,
    _announced: Option<super::daemon::Announced>,
}

/// What anyone who reaches the dashboard's port may do, for its startup
/// line: every endpoint, by whether the token guards it.
fn open_endpoints(token_set: bool, scheduler: bool) -> String {
    let reads = "pages, the JSON API's reads, /healthz, /readyz, /metrics, /health, /version";
    let writes = if scheduler {
        "feedback votes, run a job now, pause, resume, reload"
    } else {
        "feedback votes"
    };
    if token_set {
        format!(
            "open to anyone who reaches the port: {reads}; {writes} need SANDSTACK_DASHBOARD_TOKEN"
        )
    } else {
        format!(
            "open to anyone who reaches the port: {reads}, and {writes}; set SANDSTACK_DASHBOARD_TOKEN \
             to guard all but the reads"
        )
    }
}

/// Bind the dashboard's address and start serving it until `stop` turns
/// true; announce it beside the database, so commands run meanwhile go
/// through it. `control`: the scheduler its API may drive.
pub(crate) async fn start_dashboard(
    cli: &Cli,
    web: &WebArgs,
    store: &Store,
    loader: scheduler::watch::Loader,
    control: Option<crate::web::api::DaemonControl>,
    mut stop: tokio_watch::Receiver<bool>,
) -> anyhow::Result<Dashboard> {
    let listener = tokio::net::TcpListener::bind(&web.listen)
        .await
        .with_context(|| {
            format!(
                "the dashboard cannot listen on {}: pass --listen HOST:PORT (or --no-dashboard)",
                web.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let token = std::env::var("SANDSTACK_DASHBOARD_TOKEN").ok();
    let protected = token.as_deref().is_some_and(|t| !t.is_empty());
    println!(
        "dashboard: http://{addr}/ ({})",
        open_endpoints(protected, control.is_some())
    );
    let state = crate::web::WebState::new(
        blocking(|| store.try_clone())?,
        loader,
        token,
        super::db_paths::cassette_dir(&cli.db),
        web.allowed_hosts.clone(),
        control,
    );
    let task = tokio::spawn(async move {
        let shutdown = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = crate::web::serve(listener, state, shutdown).await {
            tracing::error!(error = %e, "dashboard stopped");
        }
    });
    // Commands on this machine reach it on loopback when it listens on all
    // addresses.
    let mut local = addr;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    // A shared store needs no daemon to reach: commands open it themselves.
    let announced = match &cli.db {
        crate::store::DbTarget::File(file) => Some(file),
        crate::store::DbTarget::Postgres(_) => None,
    }
    .and_then(|file| {
        super::daemon::announce(file, &format!("http://{local}"))
            .map_err(|e| tracing::warn!(error = %format_args!("{e:#}"), "commands run meanwhile cannot find this daemon"))
            .ok()
    });
    Ok(Dashboard {
        task,
        _announced: announced,
    })
}

/// `sandstack dashboard`: the dashboard alone, until SIGINT/SIGTERM.
pub fn dashboard(cli: &Cli, web: &WebArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let store = blocking(|| -> anyhow::Result<Store> {
            let store = super::open_store(cli)?;
            store.ensure_runs_table()?;
            Ok(store)
        })?;
        let dir = cli.metrics.clone();
        let policy = Arc::new(super::load_policy(cli)?);
        let loader: scheduler::watch::Loader = Arc::new(move || load(&dir, false, &policy));
        let (stop_tx, stop_rx) = tokio_watch::channel(false);
        let served = start_dashboard(cli, web, &store, loader, None, stop_rx).await?;
        wait_for_signal().await;
        let _ = stop_tx.send(true);
        let _ = served.task.await;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::open_endpoints;

    #[test]
    fn the_startup_line_names_every_endpoint_and_what_guards_it() {
        let open = open_endpoints(false, true);
        for e in [
            "pages",
            "/healthz",
            "/readyz",
            "/metrics",
            "/health",
            "/version",
            "feedback votes",
            "run a job now",
            "pause",
            "resume",
            "reload",
        ] {
            assert!(open.contains(e), "{e}: {open}");
        }
        assert!(open.contains("set SANDSTACK_DASHBOARD_TOKEN"), "{open}");
        let guarded = open_endpoints(true, true);
        assert!(
            guarded.ends_with("feedback votes, run a job now, pause, resume, reload need SANDSTACK_DASHBOARD_TOKEN"),
            "{guarded}"
        );
        assert!(
            !open_endpoints(false, false).contains("reload"),
            "no scheduler"
        );
    }
}

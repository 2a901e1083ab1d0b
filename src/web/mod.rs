//! The dashboard, served by the same binary (`sandstack run`, or
//! `sandstack dashboard` alone): server-rendered pages ([`pages`]) from
//! embedded minijinja templates, which escape everything drawn from data
//! (`escape::html`);
//! chart geometry in [`charts`]; queries in [`data`]. Read-only unless
//! `SANDSTACK_DASHBOARD_TOKEN` is set, in which case writes (feedback)
//! need it; with no token, anyone who can reach the port may vote. Every
//! request first passes [`guard`]: a `Host` it answers to (no DNS
//! rebinding) and, for writes, no cross-site origin.

pub mod api;
pub mod chart_data;
pub mod charts;
pub mod data;
pub mod error;
pub mod guard;
pub mod health;
pub mod limits;
pub mod pages;
mod render;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;

use crate::config::MetricsFolder;
use crate::scheduler::watch::Loader;
use crate::store::Store;
use error::WebError;

/// How long a loaded metrics folder is reused before loading it again.
const FOLDER_TTL: Duration = Duration::from_secs(2);

pub struct WebState {
    store: Mutex<Store>,
    loader: Loader,
    folder: Mutex<Option<(Instant, Arc<MetricsFolder>)>>,
    token: Option<String>,
    cassette_dir: PathBuf,
    /// Host names the dashboard answers to besides IP literals and
    /// `localhost` (`--allowed-host`).
    allowed_hosts: Vec<String>,
    /// The scheduler, under `sandstack run`.
    control: Option<api::DaemonControl>,
    /// How often the control API may be asked to run and reload.
    limits: limits::ControlLimits,
    /// Chart series read in the last seconds (a page and its script's
    /// requests share one run of `dashboard_sql`).
    series: data::SeriesCache,
}

pub type Shared = Arc<WebState>;

/// The dashboard's templates, compiled once per process (they are part of
/// the binary).
pub(crate) fn templates() -> &'static minijinja::Environment<'static> {
    static TEMPLATES: std::sync::OnceLock<minijinja::Environment<'static>> =
        std::sync::OnceLock::new();
    TEMPLATES.get_or_init(environment)
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // Every template is HTML whatever its name, and every text value it
    // writes goes through `escape::html` (markup escaped, control characters
    // shown); other values (numbers, values marked safe) as minijinja writes
    // them, HTML-escaped.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(text) if !value.is_safe() => out
            .write_str(&crate::escape::html(text))
            .map_err(minijinja::Error::from),
        _ => minijinja::escape_formatter(out, state, value),
    });
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("home.html", include_str!("templates/home.html")),
        ("batch.html", include_str!("templates/batch.html")),
        ("anomalies.html", include_str!("templates/anomalies.html")),
        ("feedback.html", include_str!("templates/feedback.html")),
        ("runs.html", include_str!("templates/runs.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        if let Err(e) = env.add_template(name, text) {
            // The templates are part of the binary; a broken one is a bug.
            panic!("dashboard template {name} does not parse: {e}");
        }
    }
    env
}

impl WebState {
    /// `token`: when set, writes need it (`SANDSTACK_DASHBOARD_TOKEN`);
    /// `allowed_hosts`: names it answers to besides IP literals and
    /// `localhost`; `control`: the scheduler the API may run, pause and
    /// reload (under `sandstack run`).
    pub fn new(
        store: Store,
        loader: Loader,
        token: Option<String>,
        cassette_dir: PathBuf,
        allowed_hosts: Vec<String>,
        control: Option<api::DaemonControl>,
    ) -> Shared {
        Arc::new(WebState {
            store: Mutex::new(store),
            loader,
            folder: Mutex::new(None),
            token: token.filter(|t| !t.is_empty()),
            cassette_dir,
            allowed_hosts,
            control,
            limits: limits::ControlLimits::default(),
            series: data::SeriesCache::default(),
        })
    }

    /// Load the folder afresh on the next request.
    fn forget_folder(&self) {
        *self.folder.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a write may go ahead: no token is set, or the request
    /// carries it (in `form_token`, else as `Authorization: Bearer`).
    fn allows(&self, headers: &axum::http::HeaderMap, form_token: &str) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let given = if form_token.is_empty() {
            bearer
        } else {
            form_token
        };
        same_secret(given, expected)
    }

    /// A connection of its own for one request.
    fn store(&self) -> Result<Store, crate::store::StoreError> {
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_clone()
    }

    /// The metrics folder, loaded at most every [`FOLDER_TTL`].
    fn folder(&self) -> Arc<MetricsFolder> {
        let mut cached = self.folder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, f)) = cached.as_ref() {
            if at.elapsed() < FOLDER_TTL {
                return f.clone();
            }
        }
        let f = Arc::new((self.loader)());
        *cached = Some((Instant::now(), f.clone()));
        f
    }
}

/// A batch a page may show, or why not.
pub(crate) fn shown_batch(s: &Shared, name: &str) -> Result<crate::config::BatchSpec, WebError> {
    match s.folder().batch(name) {
        None => Err(WebError::NotFound(format!(
            "no batch named {name} in the metrics folder"
        ))),
        Some(b) if b.disable_dashboard => Err(WebError::NotFound(format!(
            "batch {name} sets disable_dashboard: the dashboard does not show it"
        ))),
        Some(b) => Ok(b.clone()),
    }
}

/// Run `work` with its own connection on the blocking pool.
pub(crate) async fn with_store<T: Send + 'static>(
    s: &Shared,
    work: impl FnOnce(&mut Store) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    // The connection is made off the async workers too (a PostgreSQL
    // connection blocks on a runtime of its own).
    let shared = s.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = shared.store()?;
        work(&mut store)
    })
    .await?
}

/// Compare without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/batch/{batch}", get(pages::batch))
        .route("/anomalies", get(pages::anomalies))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}/cassette", get(pages::cassette))
        .route("/feedback", post(pages::feedback))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{id}", get(api::run))
        .route("/api/workers", get(api::workers))
        .route("/api/summary", get(api::summary))
        .route("/api/batches", get(api::batches))
        .route("/api/batches/{batch}/series", get(chart_data::batch_series))
        .route("/api/batches/{batch}/pause", post(api::pause))
        .route("/api/batches/{batch}/resume", post(api::resume))
        .route("/api/batches/{batch}/jobs/{job}/run", post(api::run_job))
        .route("/api/reload", post(api::reload))
        .route("/static/app.css", get(pages::css))
        .route("/static/app.js", get(pages::js))
        .route("/static/charts.js", get(pages::charts_js))
        .route("/static/theme.js", get(pages::theme_js))
        .route("/static/uplot.js", get(pages::uplot_js))
        .route("/static/uplot.css", get(pages::uplot_css))
        .route("/healthz", get(health::healthz))
        .route("/health", get(health::health))
        .route("/version", get(health::version))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}

/// Serve until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

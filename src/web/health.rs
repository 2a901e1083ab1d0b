//! The daemon's health for machines: `/healthz` (the process answers),
//! `/readyz` (the database takes writes and, when a batch runs Python, the
//! sandbox is prepared), `/metrics` (Prometheus), and the two paths
//! Anomstack's dashboard answers, which its deploys probe: `/health` and
//! `/version`.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{with_store, Shared};
use crate::config::IngestSource;
use crate::sandbox::{Readiness, Sandbox};

pub async fn healthz() -> &'static str {
    "ok"
}

/// Anomstack's `/health`: the process answers, in the body Anomstack's
/// dashboard gives (deploy checks written for it look for `"status": "ok"`).
pub async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({"status": "ok", "service": "sandstack"}))
}

/// Anomstack's `/version`: what is running.
pub async fn version() -> axum::Json<serde_json::Value> {
    let guest = crate::sandbox::guest::pin();
    axum::Json(json!({
        "service": "sandstack",
        "version": env!("CARGO_PKG_VERSION"),
        "wasmtime": crate::sandbox::wasmtime_version(),
        "guest": format!("{} {}", guest.package, guest.version),
        "snapshot": crate::sandbox::snapshot_key(),
        "bundle": crate::sandbox::bundle::Bundle::running().is_some(),
    }))
}

/// Whether the compiled guest loads; once it has, it stays so.
fn sandbox_ready() -> Result<(), String> {
    static READY: AtomicBool = AtomicBool::new(false);
    if READY.load(Ordering::Relaxed) {
        return Ok(());
    }
    let home = crate::sandbox::home_dir();
    match Sandbox::readiness(&home) {
        Readiness::Ready | Readiness::Bundled => {
            READY.store(true, Ordering::Relaxed);
            Ok(())
        }
        Readiness::NotCompiled => Err(format!(
            "the sandbox in {} is being set up (snapshot not compiled yet)",
            home.display()
        )),
        Readiness::NoGuest => Err(format!(
            "the sandbox is not prepared in {}: run `sandstack setup`",
            home.display()
        )),
    }
}

pub async fn readyz(State(s): State<Shared>) -> Response {
    let checks = tokio::task::spawn_blocking(move || {
        let database = s
            .store()
            .and_then(|st| st.check_writable())
            .map_err(|e| e.to_string());
        let python = s
            .folder()
            .enabled_batches()
            .any(|b| matches!(b.ingest, IngestSource::Python(_)));
        let sandbox = if python { sandbox_ready() } else { Ok(()) };
        (database, sandbox)
    })
    .await;
    let Ok((database, sandbox)) = checks else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the readiness check failed",
        )
            .into_response();
    };
    let ready = database.is_ok() && sandbox.is_ok();
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.clone(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"ready": ready, "database": show(&database), "sandbox": show(&sandbox)});
    (status, axum::Json(body)).into_response()
}

pub async fn metrics(State(s): State<Shared>) -> Response {
    let size = with_store(&s, |st| Ok(st.size_bytes()))
        .await
        .ok()
        .flatten();
    let t = crate::telemetry::global();
    if let Some(bytes) = size {
        t.database_bytes.set(bytes);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.encode(),
    )
        .into_response()
}

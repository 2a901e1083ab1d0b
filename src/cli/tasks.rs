//! Helpers for the commands that run an async runtime (`run`,
//! `dashboard`): blocking work from async code, and waiting for a signal.

/// Blocking database work from async code: a PostgreSQL connection blocks
/// on a runtime of its own, which tokio allows only outside its workers'
/// async context (`run` and `dashboard` use the multi-threaded runtime).
pub(super) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(work)
}

pub(super) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

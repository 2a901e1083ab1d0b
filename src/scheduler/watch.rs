//! Hot reload: watch the metrics folder (inotify through `notify`) and, a
//! short quiet period after the last change, load it again and hand it to
//! the scheduler, which merges it (see [`super::plan::Plan::reload`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::MetricsFolder;

/// Loads the folder (with the process's overrides); called on a worker
/// thread after each burst of changes.
pub type Loader = Arc<dyn Fn() -> MetricsFolder + Send + Sync>;

/// Keeps the watch alive; dropping it stops watching.
pub struct FolderWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Watch `dir` and send a freshly loaded folder on `out` after each change.
/// Editors save in bursts (write, rename, chmod): changes within `quiet` of
/// each other make one reload.
pub fn watch(
    dir: &Path,
    load: Loader,
    out: mpsc::Sender<MetricsFolder>,
    quiet: Duration,
) -> Result<FolderWatch, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if e.kind.is_access() => {}
            Ok(_) => {
                let _ = tx.send(());
            }
            Err(e) => tracing::warn!(error = %e, "watching the metrics folder"),
        })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for the burst to end.
            loop {
                match tokio::time::timeout(quiet, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let load = load.clone();
            let Ok(folder) = tokio::task::spawn_blocking(move || load()).await else {
                continue;
            };
            if out.send(folder).await.is_err() {
                return;
            }
        }
    });
    Ok(FolderWatch { _watcher: watcher })
}

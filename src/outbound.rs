//! One async runtime for sandstack's outbound HTTP from plain threads: alert
//! channels, the chat model llmalert calls, and the command line's client
//! of a running daemon. Made once per process, on first use, so each send
//! no longer builds (and drops) a runtime of its own, and pooled
//! connections outlive a single call.
//!
//! Not for the sandbox: a guest's HTTP and the snapshot's setup keep their
//! own runtimes, sized and timed for the guest, so a stalled alert channel
//! can never hold up a batch's run (or the reverse).

use std::future::Future;
use std::sync::OnceLock;

/// Worker threads: what the futures spawn (connection tasks) runs there;
/// the future itself runs on the calling thread.
const WORKERS: usize = 2;

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot start the async runtime for outbound HTTP: {0}")]
pub struct RuntimeUnavailable(String);

fn runtime() -> Result<&'static tokio::runtime::Runtime, RuntimeUnavailable> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, RuntimeUnavailable>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .thread_name("sandstack-outbound")
                .enable_all()
                .build()
                .map_err(|e| RuntimeUnavailable(e.to_string()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Run `f` to completion on the shared runtime, from a thread that is not
/// inside an async runtime (a worker thread of the scheduler, a command).
/// Many threads may wait on it at once.
pub fn block_on<F: Future>(f: F) -> Result<F::Output, RuntimeUnavailable> {
    runtime().map(|rt| rt.block_on(f))
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_share_one_runtime_at_once() {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    super::block_on(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        i * 2
                    })
                })
            })
            .collect();
        let out: Vec<usize> = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("runtime"))
            .collect();
        assert_eq!(out, (0..8).map(|i| i * 2).collect::<Vec<_>>());
    }
}

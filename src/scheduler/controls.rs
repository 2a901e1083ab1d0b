//! What the control API can do to a running scheduler: pause batches and
//! ask for a job to run now.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Job;
use crate::store::RunRecord;

/// Batches whose schedules are paused; shared with whoever pauses them
/// (and keeps that in the database).
pub type Paused = Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>;

/// A request to run a batch's job now; answered with its run's record.
#[derive(Debug)]
pub struct RunNow {
    pub batch: String,
    pub job: Job,
    pub reply: tokio::sync::oneshot::Sender<Result<RunRecord, String>>,
}

/// What the control API can do to a running scheduler.
#[derive(Debug, Default)]
pub struct Controls {
    pub paused: Paused,
    pub run_now: Option<mpsc::Receiver<RunNow>>,
}

impl Controls {
    /// Controls and the sender that asks for runs.
    pub fn new(paused: Paused) -> (Controls, mpsc::Sender<RunNow>) {
        let (tx, rx) = mpsc::channel(16);
        (
            Controls {
                paused,
                run_now: Some(rx),
            },
            tx,
        )
    }
}

/// The next run-now request; never, once the senders are gone.
pub(super) async fn next_request(requests: &mut Option<mpsc::Receiver<RunNow>>) -> Option<RunNow> {
    match requests {
        Some(rx) => match rx.recv().await {
            Some(r) => Some(r),
            None => {
                *requests = None;
                None
            }
        },
        None => None,
    }
}

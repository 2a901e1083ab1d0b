//! Long-lived threads with stacks large enough for the guest. Guest code
//! runs deep on the native stack; a fresh thread per run would fault in its
//! stack pages every time (hundreds of page faults per run), so runs reuse
//! idle threads instead.
//!
//! Hand-written rather than a thread-pool crate: the pool must size each
//! thread's stack, grow on demand and never queue a run behind another.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

use super::engine::{GUEST_THREAD_STACK, MAX_CONCURRENT_INSTANCES};

type Job = Box<dyn FnOnce() + Send>;

fn idle() -> &'static Mutex<Vec<Sender<Job>>> {
    static IDLE: OnceLock<Mutex<Vec<Sender<Job>>>> = OnceLock::new();
    IDLE.get_or_init(Default::default)
}

fn spawn_worker() -> Result<Sender<Job>, String> {
    let (tx, rx) = channel::<Job>();
    std::thread::Builder::new()
        .name("sandstack-guest".into())
        .stack_size(GUEST_THREAD_STACK)
        .spawn(move || {
            for job in rx {
                job();
            }
        })
        .map_err(|e| format!("cannot start a guest thread: {e}"))?;
    Ok(tx)
}

/// Run `f` on a guest thread and wait for its result. Runs in parallel use
/// separate threads; a panic in `f` is returned as an error.
pub fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (result_tx, result_rx) = channel();
    let mut job: Option<Job> = Some(Box::new(move || {
        let _ = result_tx.send(catch_unwind(AssertUnwindSafe(f)));
    }));
    let lock = || idle().lock().unwrap_or_else(|p| p.into_inner());
    let mut worker = lock().pop();
    loop {
        let w = match worker.take() {
            Some(w) => w,
            None => spawn_worker()?,
        };
        let Some(j) = job.take() else {
            break;
        };
        match w.send(j) {
            Ok(()) => {
                let outcome = result_rx.recv();
                let mut pool = lock();
                if pool.len() < MAX_CONCURRENT_INSTANCES as usize {
                    pool.push(w);
                }
                drop(pool);
                return match outcome {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(_)) => Err("the run's thread panicked".into()),
                    Err(_) => Err("the run's thread ended without a result".into()),
                };
            }
            // The thread is gone; try a new one with the same job.
            Err(returned) => job = Some(returned.0),
        }
    }
    Err("no guest thread could take the run".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reuses_threads_and_survives_panics() {
        let a = super::run(|| std::thread::current().id()).expect("runs");
        let b = super::run(|| std::thread::current().id()).expect("runs");
        assert_eq!(a, b, "an idle thread is reused");
        assert!(super::run(|| panic!("boom")).is_err());
        assert_eq!(super::run(|| 2 + 2), Ok(4));
    }
}

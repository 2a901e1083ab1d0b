//! The scheduler's clock: the system clock in production, a manual one that
//! tests move by hand, so schedules are tested at exact instants without
//! waiting for them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_>;
}

/// Wall-clock time; sleeps with tokio's timer.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            // Re-check after waking: the timer is monotonic, the target is
            // wall time, and a tick must never fire early.
            loop {
                let left = at - Utc::now();
                if left <= chrono::TimeDelta::zero() {
                    return;
                }
                let left = left.to_std().unwrap_or_default();
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    moved: watch::Sender<DateTime<Utc>>,
    /// The instant the latest sleeper waits for, so a test knows when
    /// everything due has been handled.
    sleeper: Mutex<Option<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
            moved: watch::channel(start).0,
            sleeper: Mutex::new(None),
        }
    }

    /// Move the clock to `to` (never backwards).
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if to > *now {
            *now = to;
            let mut sleeper = self.sleeper.lock().unwrap_or_else(|p| p.into_inner());
            if sleeper.is_some_and(|at| at <= to) {
                // That sleeper wakes now and will register its next sleep.
                *sleeper = None;
            }
            drop(sleeper);
            self.moved.send_replace(to);
        }
    }

    /// What the most recent `sleep_until` waits for.
    pub fn sleeping_until(&self) -> Option<DateTime<Utc>> {
        *self.sleeper.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        let to = self.now() + by;
        self.set(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        *self.sleeper.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
        let mut rx = self.moved.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < at {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

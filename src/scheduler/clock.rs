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
    /// The time, and how many times it was set.
    now: Mutex<(DateTime<Utc>, u64)>,
    moved: watch::Sender<DateTime<Utc>>,
    /// The instant the latest sleeper waits for, and the setting it saw,
    /// so a test knows when everything due has been handled.
    sleeper: Mutex<Option<(DateTime<Utc>, u64)>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new((start, 0)),
            moved: watch::channel(start).0,
            sleeper: Mutex::new(None),
        }
    }

    /// Move the clock to `to` (never backwards).
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if to > now.0 {
            *now = (to, now.1 + 1);
            let mut sleeper = self.sleeper.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, g)) = sleeper.as_mut() {
                // A sleeper not due yet stays asleep: still current.
                if *at > to {
                    *g = now.1;
                }
            }
            drop(sleeper);
            self.moved.send_replace(to);
        }
    }

    /// What a sleep started since the clock was last set waits for: once
    /// that is later than the clock, everything due has been dispatched.
    pub fn sleeping_until(&self) -> Option<DateTime<Utc>> {
        let generation = self.now.lock().unwrap_or_else(|p| p.into_inner()).1;
        self.sleeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .filter(|(_, g)| *g == generation)
            .map(|(at, _)| at)
    }

    pub fn advance(&self, by: chrono::TimeDelta) {
        let to = self.now() + by;
        self.set(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        let generation = self.now.lock().unwrap_or_else(|p| p.into_inner()).1;
        *self.sleeper.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, generation));
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

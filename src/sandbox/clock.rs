//! The guest's clocks, owned by the host: a run's wall clock starts where
//! the host says (now, or a cassette's recorded start), and a virtual clock
//! makes every read deterministic for replays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The guest's clocks: wall time starts where the host says (now, or a
/// recorded start) and advances with real time, or, when virtual, by 1 µs
/// per read (both clocks share the count), which replays exactly.
#[derive(Clone)]
pub struct GuestClock {
    pub start: Duration,
    pub base: Instant,
    pub reads: Option<Arc<AtomicU64>>,
}

impl GuestClock {
    fn elapsed(&self) -> Duration {
        match &self.reads {
            Some(n) => Duration::from_micros(n.fetch_add(1, Ordering::Relaxed)),
            None => self.base.elapsed(),
        }
    }
}

impl HostWallClock for GuestClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }
    fn now(&self) -> Duration {
        self.start + self.elapsed()
    }
}

impl HostMonotonicClock for GuestClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.elapsed().as_nanos() as u64
    }
}

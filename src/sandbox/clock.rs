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

/// The host's wall clock, µs since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl GuestClock {
    /// A clock starting at `start_us` (µs since the epoch); virtual when
    /// `virtual_time`.
    pub fn new(start_us: i64, virtual_time: bool) -> Self {
        GuestClock {
            start: Duration::from_micros(start_us.max(0) as u64),
            base: Instant::now(),
            reads: virtual_time.then(|| Arc::new(AtomicU64::new(0))),
        }
    }

    /// The wall clock, in ns since the epoch (as WASI's realtime clock).
    pub fn wall_ns(&self) -> u64 {
        u64::try_from(HostWallClock::now(self).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The monotonic clock, in ns.
    pub fn monotonic_ns(&self) -> u64 {
        HostMonotonicClock::now(self)
    }

    /// Under a virtual clock, move time on by `by` instead of waiting for
    /// it (a replayed sleep); false for a real clock.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.reads {
            Some(n) => {
                let us = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
                n.fetch_add(us, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_advances_by_reads_and_sleeps() {
        let c = GuestClock::new(1_000_000, true);
        assert_eq!(c.wall_ns(), 1_000_000_000);
        assert_eq!(c.monotonic_ns(), 1_000);
        assert!(c.advance(Duration::from_secs(2)));
        assert_eq!(c.monotonic_ns(), 2_000_002_000);
        assert!(!GuestClock::new(0, false).advance(Duration::from_secs(1)));
    }
}

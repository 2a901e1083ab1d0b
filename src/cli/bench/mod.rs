//! `sandstack bench`: benchmarks that print their figures, each beside a
//! reference measured in the same process run. One module per benchmark;
//! this one holds what they share (percentiles, the summary line, RSS,
//! running on worker threads).

mod detect;
mod native;
mod sandbox;
mod store;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use super::setup::build_profile;

pub use detect::{detect, Options as DetectOptions};
pub use sandbox::{sandbox, Options as SandboxOptions};
pub use store::{store, Options as StoreOptions};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Resident set of this process now, from /proc (Linux).
fn rss_mib() -> Option<f64> {
    proc_status_kib("VmRSS:").map(|kib| kib / 1024.0)
}

fn proc_status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this process so far, every thread, user and system, and
/// of the helper processes it has waited for (where a batch's SQL runs).
fn cpu_seconds() -> f64 {
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
        .into_iter()
        .map(|who| {
            // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            if unsafe { libc::getrusage(who, &mut usage) } != 0 {
                return 0.0;
            }
            secs(usage.ru_utime) + secs(usage.ru_stime)
        })
        .sum()
}

fn mean(times: &[Duration]) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    times.iter().sum::<Duration>() / times.len() as u32
}

fn summary(label: &str, mut times: Vec<Duration>, total: Duration) -> String {
    times.sort();
    format!(
        "{label:<26} runs {:>4}  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  {:>8.1} runs/s",
        times.len(),
        ms(percentile(&times, 50.0)),
        ms(percentile(&times, 90.0)),
        ms(percentile(&times, 99.0)),
        times.len() as f64 / total.as_secs_f64().max(1e-9)
    )
}

/// One place per run for its result, all made (and their memory touched)
/// before the runs start, so the bench's own bookkeeping adds nothing to
/// the process's RSS while they run: an RSS figure taken around
/// [`on_workers`] shows only what the runs themselves leave behind.
struct Results<T>(Vec<OnceLock<T>>);

impl<T: Send + Sync> Results<T> {
    fn with_room_for(runs: usize) -> Self {
        Results((0..runs).map(|_| OnceLock::new()).collect())
    }

    /// The results of the runs made, in the order they were taken.
    fn into_vec(self) -> Vec<T> {
        self.0
            .into_iter()
            .filter_map(OnceLock::into_inner)
            .collect()
    }
}

/// Runs `run` once for each place in `results`, on `workers` threads at
/// once, and stores each result there; stops at the first error.
fn on_workers<T: Send + Sync>(
    results: &Results<T>,
    workers: usize,
    run: &(dyn Fn() -> anyhow::Result<T> + Sync),
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let outcomes: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    while let Some(place) = results.0.get(next.fetch_add(1, Ordering::Relaxed)) {
                        // Each index is taken by one worker only, so the place is empty.
                        let _ = place.set(run()?);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a bench worker panicked")))
            })
            .collect()
    });
    outcomes.into_iter().collect()
}

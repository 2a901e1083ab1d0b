//! WASI's `poll_oneoff`, which `time.sleep`, `select.select` and every other
//! wait in the guest come down to, replaced with one that keeps the run's
//! deadline. wasmtime-wasi's own blocks the thread for as long as the guest
//! asks, where neither fuel nor epochs reach: a `time.sleep(10**6)` would
//! outlive `ingest_timeout_s` and hold a scheduler slot for days.
//!
//! Here a wait that would end after the deadline stops the run at once,
//! naming `ingest_timeout_s`; a shorter one sleeps. Under a virtual clock
//! (replays) a wait moves the clock on instead of sleeping, so replays are
//! quick and see the same times.
//!
//! Hand-written: the guest's only descriptors are its stdio and read-only
//! files, which are always ready, so all that is left is the subscription
//! ABI (wasi_snapshot_preview1) and the clock arithmetic.

use std::time::{Duration, Instant};

use wasmtime::Caller;

use super::error::ExecError;
use super::host::{fits, stop, HostState};
use super::http::fmt_secs;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const SUBCLOCKFLAG_ABSTIME: u16 = 1;
const CLOCKID_REALTIME: u32 = 0;
const CLOCKID_THREAD_CPUTIME: u32 = 3;

/// Subscriptions one call may make: far more than any program polls, few
/// enough that the host's copies stay small (the guest's memory could hold
/// tens of millions).
const MAX_SUBSCRIPTIONS: usize = 4096;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Subscription {
    Clock {
        userdata: u64,
        clock: u32,
        timeout: u64,
        absolute: bool,
    },
    Fd {
        userdata: u64,
        kind: u8,
    },
}

/// Parse `n` subscriptions; None for one the ABI does not define.
fn parse(bytes: &[u8]) -> Option<Vec<Subscription>> {
    let u64_at = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    bytes
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(|s| {
            let userdata = u64_at(s, 0)?;
            match s[8] {
                EVENTTYPE_CLOCK => {
                    let clock = u32::from_le_bytes(s[16..20].try_into().ok()?);
                    if clock > CLOCKID_THREAD_CPUTIME {
                        return None;
                    }
                    let flags = u16::from_le_bytes(s[40..42].try_into().ok()?);
                    Some(Subscription::Clock {
                        userdata,
                        clock,
                        timeout: u64_at(s, 24)?,
                        absolute: flags & SUBCLOCKFLAG_ABSTIME != 0,
                    })
                }
                kind @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => {
                    Some(Subscription::Fd { userdata, kind })
                }
                _ => None,
            }
        })
        .collect()
}

fn event(userdata: u64, kind: u8) -> [u8; EVENT_SIZE] {
    let mut e = [0u8; EVENT_SIZE];
    e[0..8].copy_from_slice(&userdata.to_le_bytes());
    // error (u16 at 8) stays 0; type at 10; fd_readwrite (nbytes, flags) 0.
    e[10] = kind;
    e
}

/// Which subscriptions fire, after how long a wait. Descriptors are always
/// ready, so any fd subscription fires at once; otherwise the earliest clocks.
fn plan(subs: &[Subscription], now: impl Fn(u32) -> u64) -> (Duration, Vec<[u8; EVENT_SIZE]>) {
    let fds: Vec<_> = subs
        .iter()
        .filter_map(|s| match s {
            Subscription::Fd { userdata, kind } => Some(event(*userdata, *kind)),
            Subscription::Clock { .. } => None,
        })
        .collect();
    if !fds.is_empty() {
        return (Duration::ZERO, fds);
    }
    let waits: Vec<(u64, u64)> = subs
        .iter()
        .filter_map(|s| match *s {
            Subscription::Clock {
                userdata,
                clock,
                timeout,
                absolute,
            } => Some((
                userdata,
                if absolute {
                    timeout.saturating_sub(now(clock))
                } else {
                    timeout
                },
            )),
            Subscription::Fd { .. } => None,
        })
        .collect();
    let wait = waits.iter().map(|(_, w)| *w).min().unwrap_or(0);
    let fired = waits
        .iter()
        .filter(|(_, w)| *w <= wait)
        .map(|(u, _)| event(*u, EVENTTYPE_CLOCK))
        .collect();
    (Duration::from_nanos(wait), fired)
}

/// Wait `wait` within the run's deadline, or say why not.
fn wait_within_deadline(state: &HostState, wait: Duration) -> Result<(), ExecError> {
    if wait.is_zero() {
        return Ok(());
    }
    let remaining = state
        .door
        .deadline
        .saturating_duration_since(Instant::now());
    if wait >= remaining {
        return Err(ExecError::Limit {
            limit: "ingest_timeout_s",
            value: fmt_secs(state.door.limits.timeout_s),
            detail: format!(
                "the code asked to wait {} (time.sleep, select, ...), which ends past the run's deadline",
                fmt_wait(wait)
            ),
        });
    }
    if !state.clock.advance(wait) {
        std::thread::sleep(wait);
    }
    Ok(())
}

fn fmt_wait(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{}s", fmt_secs((s * 10.0).round() / 10.0))
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// `wasi_snapshot_preview1::poll_oneoff(in, out, nsubscriptions, nevents)`.
pub fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    subs_ptr: i32,
    events_ptr: i32,
    nsubscriptions: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Ok(ERRNO_FAULT);
    };
    let n = nsubscriptions as u32 as usize;
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    let (subs, events_at, nevents_at) = {
        let data = memory.data(&caller);
        let at = subs_ptr as u32 as usize;
        let Some(bytes) = n
            .checked_mul(SUBSCRIPTION_SIZE)
            .and_then(|len| data.get(at..at.checked_add(len)?))
        else {
            return Ok(ERRNO_FAULT);
        };
        let Some(subs) = parse(bytes) else {
            return Ok(ERRNO_INVAL);
        };
        (
            subs,
            events_ptr as u32 as usize,
            nevents_ptr as u32 as usize,
        )
    };
    let clock = caller.data().clock.clone();
    let (wait, fired) = plan(&subs, |id| {
        if id == CLOCKID_REALTIME {
            clock.wall_ns()
        } else {
            clock.monotonic_ns()
        }
    });
    if let Err(e) = wait_within_deadline(caller.data(), wait) {
        return Err(stop(caller.data_mut(), e));
    }
    let data = memory.data_mut(&mut caller);
    let len = fired.len() * EVENT_SIZE;
    if !fits(data, events_at, len) || !fits(data, nevents_at, 4) {
        return Ok(ERRNO_FAULT);
    }
    for (i, e) in fired.iter().enumerate() {
        let at = events_at + i * EVENT_SIZE;
        data[at..at + EVENT_SIZE].copy_from_slice(e);
    }
    data[nevents_at..nevents_at + 4].copy_from_slice(&(fired.len() as u32).to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock_sub(userdata: u64, clock: u32, timeout: u64, flags: u16) -> Vec<u8> {
        let mut s = vec![0u8; SUBSCRIPTION_SIZE];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[8] = EVENTTYPE_CLOCK;
        s[16..20].copy_from_slice(&clock.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40..42].copy_from_slice(&flags.to_le_bytes());
        s
    }

    #[test]
    fn the_earliest_clock_fires_and_absolute_times_count_from_now() {
        let mut bytes = clock_sub(1, 1, 5_000, 0);
        bytes.extend(clock_sub(2, 1, 1_000_300, SUBCLOCKFLAG_ABSTIME));
        let subs = parse(&bytes).expect("valid");
        let (wait, fired) = plan(&subs, |_| 1_000_000);
        assert_eq!(wait, Duration::from_nanos(300));
        assert_eq!(fired.len(), 1);
        assert_eq!(u64::from_le_bytes(fired[0][0..8].try_into().unwrap()), 2);
        // An absolute time already past fires at once.
        let subs = parse(&clock_sub(3, 0, 10, SUBCLOCKFLAG_ABSTIME)).expect("valid");
        assert_eq!(plan(&subs, |_| 99).0, Duration::ZERO);
    }

    #[test]
    fn descriptors_are_ready_at_once() {
        let mut bytes = clock_sub(1, 1, u64::MAX, 0);
        let mut fd = vec![0u8; SUBSCRIPTION_SIZE];
        fd[0] = 7;
        fd[8] = EVENTTYPE_FD_READ;
        bytes.extend(fd);
        let (wait, fired) = plan(&parse(&bytes).expect("valid"), |_| 0);
        assert_eq!(wait, Duration::ZERO);
        assert_eq!((fired.len(), fired[0][0], fired[0][10]), (1, 7, 1));
    }

    #[test]
    fn unknown_subscriptions_and_clocks_are_invalid() {
        let mut bad = clock_sub(1, 1, 0, 0);
        bad[8] = 9;
        assert_eq!(parse(&bad), None);
        assert_eq!(parse(&clock_sub(1, 17, 0, 0)), None);
    }
}

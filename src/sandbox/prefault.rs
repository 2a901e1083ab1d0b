//! The pages of linear memory a batch's last run wrote, faulted in
//! writable at once when its next run starts.
//!
//! Every run starts from the snapshot's image with no page mapped (a freed
//! slot is reset by dropping all of its pages, see `engine`). Each page a
//! run writes then costs a fault, and a page it read before writing costs a
//! second one that replaces the read-only mapping: the kernel must then
//! flush that address from every CPU running this process, an interrupt to
//! the other core whenever two runs are in flight. Faulting the pages the
//! batch wrote last time in one `MADV_POPULATE_WRITE` (private copies of the
//! image's pages, in the kernel, before anything maps them) avoids both.
//! What is prefaulted only decides where the image's bytes are copied
//! first: a run's contents are the snapshot's either way.
//!
//! Which pages were written is read with `PAGEMAP_SCAN` ([`pagemap`]):
//! present, not the file's page cache, not the shared zero page. On a
//! kernel without it nothing is prefaulted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::code_cache::CodeKey;
use super::pagemap::{self, Stretches};

/// Stretches kept per batch; past this the rest is left to faults.
const MAX_STRETCHES: usize = 4096;

/// The most a run is prefaulted: the copies are the host's work, outside
/// the guest's fuel and time, so a learning run that wrote its whole
/// memory cannot make the next ones cost more than this each (the random
/// example writes about 4.5 MiB).
const MAX_PREFAULT_BYTES: usize = 64 << 20;

/// The pages of `len` bytes at `base` that were written (private copies
/// present in memory, not the image's file pages nor the zero page), as
/// stretches from `base`, the first [`MAX_PREFAULT_BYTES`] of them; None
/// where the kernel cannot say. Stretches are not joined across unwritten
/// pages: copying those cost more than the calls saved (5.1 against 4.8 ms
/// a run of the random example, with gaps of 4 pages joined).
pub fn written(base: *const u8, len: usize) -> Option<Stretches> {
    let mut found = pagemap::scan(
        base,
        len,
        pagemap::PAGE_IS_PRESENT,
        pagemap::PAGE_IS_FILE | pagemap::PAGE_IS_PFNZERO,
        MAX_STRETCHES,
    )?;
    let mut room = MAX_PREFAULT_BYTES;
    found.retain_mut(|(_, len)| {
        *len = (*len).min(room);
        room -= *len;
        *len > 0
    });
    Some(found)
}

/// Fault `stretches` of the memory at `base` in, writable, at once; those
/// past `accessible` bytes are left alone. Best effort: at the first
/// refusal (a kernel before 5.14 has no `MADV_POPULATE_WRITE`) the rest is
/// left to faults.
///
/// # Safety
/// `base` must be the start of a mapping of at least `accessible` bytes
/// that nothing else unmaps meanwhile (a live instance's linear memory).
pub unsafe fn populate(base: *mut u8, accessible: usize, stretches: &[(usize, usize)]) {
    for &(offset, len) in stretches {
        let len = len.min(accessible.saturating_sub(offset));
        if len == 0 {
            continue;
        }
        // SAFETY: the range lies within the `accessible` bytes at `base`
        // (checked above; the caller vouches for those); populating changes
        // no contents.
        let rc = unsafe {
            libc::madvise(
                base.add(offset) as *mut libc::c_void,
                len,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc != 0 {
            return;
        }
    }
}

/// Codes whose written pages are kept; past this the one learned longest
/// ago is forgotten.
const MAX_KEPT: usize = 1024;

/// Runs prefaulted from one learning run; then a run goes without, and
/// what it writes is learned again. Only a run without prefaulting shows
/// what a run writes: the pages prefaulted look written too.
const RUNS_PER_LEARNING: u32 = 256;

/// The pages a batch's runs write, learned from one run of its code (by
/// the code's key: batch, filename, source) and given to its next runs.
#[derive(Default)]
pub struct LastWritten {
    inner: Mutex<VecDeque<Learned>>,
}

struct Learned {
    key: CodeKey,
    stretches: Arc<Stretches>,
    /// Runs still to prefault before the next learning run.
    runs_left: u32,
}

impl LastWritten {
    /// What to prefault for a run of `key`'s code; None: this run learns
    /// (it runs without, and [`LastWritten::learned`] takes what it wrote).
    pub fn for_run(&self, key: &CodeKey) -> Option<Arc<Stretches>> {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let l = kept.iter_mut().find(|l| l.key == *key)?;
        if l.runs_left == 0 {
            l.runs_left = RUNS_PER_LEARNING;
            return None;
        }
        l.runs_left -= 1;
        Some(l.stretches.clone())
    }

    /// What a run of `key`'s code that was not prefaulted wrote.
    pub fn learned(&self, key: CodeKey, stretches: Stretches) {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|l| l.key != key);
        if kept.len() >= MAX_KEPT {
            kept.pop_front();
        }
        kept.push_back(Learned {
            key,
            stretches: Arc::new(stretches),
            runs_left: RUNS_PER_LEARNING,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    /// A private anonymous mapping, unmapped when dropped.
    struct Mapping {
        base: *mut u8,
        len: usize,
    }

    impl Mapping {
        fn new(len: usize) -> Mapping {
            // SAFETY: a fresh mapping of our own, unmapped on drop.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            Mapping {
                base: base as *mut u8,
                len,
            }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, unmapped once.
            unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
        }
    }

    /// A code's first run learns, the next RUNS_PER_LEARNING are
    /// prefaulted from it, then one learns again; each code on its own.
    #[test]
    fn a_run_in_every_so_many_learns_and_only_it() {
        let kept = LastWritten::default();
        let key = [1; 32];
        assert!(kept.for_run(&key).is_none(), "the first run learns");
        kept.learned(key, vec![(0, PAGE)]);
        for _ in 0..RUNS_PER_LEARNING {
            assert_eq!(kept.for_run(&key).as_deref(), Some(&vec![(0, PAGE)]));
        }
        assert!(kept.for_run(&key).is_none(), "then one learns again");
        assert!(kept.for_run(&[2; 32]).is_none(), "each code its own");
    }

    /// However much a run wrote, the next ones are prefaulted at most
    /// MAX_PREFAULT_BYTES.
    #[test]
    fn a_run_that_wrote_everything_is_prefaulted_only_so_much() {
        let len = MAX_PREFAULT_BYTES + (16 << 20);
        let mapping = Mapping::new(len);
        let base = mapping.base;
        // SAFETY: every page written is inside the mapping.
        unsafe {
            for p in (0..len).step_by(PAGE) {
                base.add(p).write(1);
            }
        }
        let found = written(base, len);
        if kernel_has_pagemap_scan() {
            assert_eq!(found, Some(vec![(0, MAX_PREFAULT_BYTES)]));
        } else {
            assert_eq!(found, None, "a kernel before 6.7 has no PAGEMAP_SCAN");
        }
    }

    /// Whether this kernel (6.7 or later) has `PAGEMAP_SCAN`: on one that
    /// does the scan must work, on one that does not it must say so (None)
    /// and runs go without prefaulting.
    fn kernel_has_pagemap_scan() -> bool {
        // SAFETY: uname fills the zeroed struct it is given.
        let mut name: libc::utsname = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::uname(&mut name) }, 0, "uname");
        // SAFETY: uname NUL-terminates release.
        let release = unsafe { std::ffi::CStr::from_ptr(name.release.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (6, 7)
    }

    /// An anonymous private mapping: pages written are found, adjacent
    /// ones as one stretch, pages only read are not; populating makes pages
    /// present without changing what they hold.
    #[test]
    fn finds_written_pages_and_populates_without_changing_them() {
        let len = 64 * PAGE;
        let mapping = Mapping::new(len);
        if kernel_has_pagemap_scan() {
            finds_and_populates(mapping.base, len);
        } else {
            assert_eq!(
                written(mapping.base, len),
                None,
                "a kernel before 6.7 has no PAGEMAP_SCAN"
            );
            // Populating still leaves the memory as it was.
            // SAFETY: the mapping is `len` bytes and stays mapped.
            unsafe { populate(mapping.base, len, &[(0, 2 * PAGE)]) };
            // SAFETY: as above.
            assert_eq!(unsafe { std::ptr::read_volatile(mapping.base) }, 0);
        }
    }

    /// The scan and populate of a `len`-byte mapping at `base`, untouched.
    fn finds_and_populates(base: *mut u8, len: usize) {
        let none = written(base, len).expect("scan");
        assert!(none.is_empty(), "{none:?}");
        // SAFETY: every offset written is inside the mapping.
        unsafe {
            // Read only: the shared zero page, not a written one.
            std::ptr::read_volatile(base.add(40 * PAGE));
            for p in [2, 3, 4, 30] {
                base.add(p * PAGE + 7).write(9);
            }
        }
        let found = written(base, len).expect("scan");
        assert_eq!(found, vec![(2 * PAGE, 3 * PAGE), (30 * PAGE, PAGE)]);
        // SAFETY: the mapping is `len` bytes and stays mapped.
        unsafe { populate(base, len, &[(50 * PAGE, 2 * PAGE)]) };
        let after = written(base, len).expect("scan");
        assert_eq!(after.last(), Some(&(50 * PAGE, 2 * PAGE)));
        // SAFETY: as above.
        unsafe {
            assert_eq!(std::ptr::read_volatile(base.add(50 * PAGE)), 0);
            assert_eq!(std::ptr::read_volatile(base.add(4 * PAGE + 7)), 9);
        }
    }
}

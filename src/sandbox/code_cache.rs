//! Compiled user code kept between runs. The driver compiles a batch's
//! source once and hands the host the marshalled code object; later runs of
//! the same source get it back with their inputs and skip the compile (a few
//! hundred µs for a short file, milliseconds for a long one).
//!
//! The bytes come from the guest, so they are only ever given back to runs
//! of the same batch, filename and source, and only the driver's hand-over
//! is taken: it always makes one (empty when the code is too big to keep)
//! before any user code runs, only the first counts, and a run that was
//! given cached code can hand nothing over (see `host::handle`). So the code
//! a batch's later runs get is what its source compiles to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Largest code object kept (marshalled); bigger ones are compiled each run.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// All entries together; past this, entries are dropped to make room.
const MAX_TOTAL_BYTES: usize = 64 << 20;

pub type CodeKey = [u8; 32];

/// What identifies one compiled source.
pub fn key(batch: &str, filename: &str, source: &str) -> CodeKey {
    let mut h = Sha256::new();
    for part in [batch, filename, source] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

#[derive(Default)]
pub struct CodeCache {
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<CodeKey, Arc<[u8]>>,
    bytes: usize,
}

impl CodeCache {
    pub fn get(&self, key: &CodeKey) -> Option<Arc<[u8]>> {
        self.lock().map.get(key).cloned()
    }

    /// Keep `code` for `key`, unless it is over [`MAX_ENTRY_BYTES`].
    pub fn put(&self, key: CodeKey, code: Vec<u8>) {
        if code.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut e = self.lock();
        if let Some(old) = e.map.remove(&key) {
            e.bytes -= old.len();
        }
        // Any entry will do: a dropped one is compiled again on its next run.
        while e.bytes + code.len() > MAX_TOTAL_BYTES {
            let Some(victim) = e.map.keys().next().copied() else {
                break;
            };
            if let Some(old) = e.map.remove(&victim) {
                e.bytes -= old.len();
            }
        }
        e.bytes += code.len();
        e.map.insert(key, code.into());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_batches_files_and_sources() {
        let k = key("a", "f.py", "x = 1");
        assert_eq!(k, key("a", "f.py", "x = 1"));
        assert_ne!(k, key("b", "f.py", "x = 1"));
        assert_ne!(k, key("a", "g.py", "x = 1"));
        assert_ne!(k, key("a", "f.py", "x = 2"));
        // Lengths are hashed too: moving text across the parts is another key.
        assert_ne!(key("ab", "c", ""), key("a", "bc", ""));
    }

    #[test]
    fn oversized_entries_are_refused_and_the_total_stays_bounded() {
        let cache = CodeCache::default();
        cache.put(key("a", "f", "big"), vec![0; MAX_ENTRY_BYTES + 1]);
        assert!(cache.get(&key("a", "f", "big")).is_none());
        for i in 0..40 {
            cache.put(key("a", "f", &i.to_string()), vec![1; MAX_ENTRY_BYTES]);
        }
        let e = cache.lock();
        assert!(e.bytes <= MAX_TOTAL_BYTES, "{} bytes kept", e.bytes);
        assert_eq!(e.bytes, e.map.values().map(|v| v.len()).sum::<usize>());
        assert_eq!(e.map.len(), MAX_TOTAL_BYTES / MAX_ENTRY_BYTES);
    }
}

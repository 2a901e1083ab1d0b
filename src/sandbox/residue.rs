//! What the residue checks need from a run, besides the run itself: where
//! some bytes appear in a fresh instance's whole linear memory (before any
//! guest code runs in it), and a finished run's memory paged out the way
//! memory pressure would, before its instance is freed. Nothing here runs
//! unless an [`super::ExecRequest`] asks (the tests do).

/// Where `needle` first appears in `memory`, if anywhere.
pub fn find(memory: &[u8], needle: &[u8]) -> Option<u64> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(memory, needle).map(|at| at as u64)
}

/// Ask the kernel to reclaim `len` bytes at `ptr` now (`MADV_PAGEOUT`):
/// pages the run wrote go to swap where there is swap, as they would under
/// memory pressure. An error (an old kernel) is returned, not hidden.
///
/// # Safety
/// `ptr` must point into a mapping of at least `len` bytes from there that
/// nothing else unmaps meanwhile (a live instance's linear memory).
pub unsafe fn page_out(ptr: *mut u8, len: usize) -> std::io::Result<()> {
    let page = 4096;
    let start = (ptr as usize) & !(page - 1);
    let len = len + (ptr as usize - start);
    // SAFETY: MADV_PAGEOUT changes no contents, only where they are kept;
    // the range is mapped (the caller vouches for it).
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Pages of `len` bytes at `base` that are in swap now; None where the
/// kernel cannot say.
pub fn swapped_pages(base: *const u8, len: usize) -> Option<u64> {
    let found = super::pagemap::scan(base, len, super::pagemap::PAGE_IS_SWAPPED, 0, usize::MAX)?;
    Some(found.iter().map(|(_, l)| (l / 4096) as u64).sum())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_bytes_anywhere_and_nothing_for_nothing() {
        let mut memory = vec![0u8; 1 << 20];
        assert_eq!(super::find(&memory, b"marker"), None);
        memory[(1 << 20) - 6..].copy_from_slice(b"marker");
        assert_eq!(super::find(&memory, b"marker"), Some((1 << 20) - 6));
        assert_eq!(super::find(&memory, b""), None);
    }
}

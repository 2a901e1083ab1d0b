//! The `PAGEMAP_SCAN` ioctl (Linux 6.7+): which pages of a range are in
//! which state (present, backed by a file, the shared zero page, swapped
//! out), as stretches, from the page tables and without touching the
//! pages. Hand-written: neither libc nor rustix defines it, and wasmtime's
//! own is private. On a kernel without it a scan says None.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Stretches of a range, as (offset from its start, length) in bytes,
/// page aligned and in order.
pub type Stretches = Vec<(usize, usize)>;

/// Page categories (linux/fs.h).
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;

mod ioctl {
    /// `struct pm_scan_arg` (linux/fs.h).
    #[repr(C)]
    #[derive(Default)]
    pub struct Arg {
        pub size: u64,
        pub flags: u64,
        pub start: u64,
        pub end: u64,
        pub walk_end: u64,
        pub vec: u64,
        pub vec_len: u64,
        pub max_pages: u64,
        pub category_inverted: u64,
        pub category_mask: u64,
        pub category_anyof_mask: u64,
        pub return_mask: u64,
    }

    /// `struct page_region`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct Region {
        pub start: u64,
        pub end: u64,
        pub categories: u64,
    }

    /// `_IOWR('f', 16, struct pm_scan_arg)`, in the ioctl encoding of
    /// x86_64, aarch64 and riscv64; elsewhere the call fails and a scan
    /// says None.
    pub const PAGEMAP_SCAN: u64 =
        (3 << 30) | ((std::mem::size_of::<Arg>() as u64) << 16) | ((b'f' as u64) << 8) | 16;
}

fn pagemap() -> Option<&'static File> {
    static FILE: OnceLock<Option<File>> = OnceLock::new();
    FILE.get_or_init(|| File::open("/proc/self/pagemap").ok())
        .as_ref()
}

/// The pages of `len` bytes at `base` whose categories include every one
/// of `required` and none of `excluded`, as stretches from `base`, at most
/// `max_stretches` of them (the first ones); None where the kernel cannot
/// say. Adjacent pages make one stretch.
pub fn scan(
    base: *const u8,
    len: usize,
    required: u64,
    excluded: u64,
    max_stretches: usize,
) -> Option<Stretches> {
    let file = pagemap()?;
    let (start, end) = (base as u64, base as u64 + len as u64);
    let mut regions = vec![ioctl::Region::default(); 512];
    let mut out: Stretches = Vec::new();
    let mut at = start;
    while at < end && out.len() < max_stretches {
        let mut arg = ioctl::Arg {
            size: std::mem::size_of::<ioctl::Arg>() as u64,
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_mask: required | excluded,
            category_inverted: excluded,
            return_mask: required | excluded,
            ..Default::default()
        };
        // SAFETY: the ioctl reads `arg` and writes at most `vec_len`
        // regions into `regions`, which outlives the call; it only reads
        // page tables, whatever the range holds.
        let found = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                ioctl::PAGEMAP_SCAN as _,
                &mut arg as *mut ioctl::Arg,
            )
        };
        let found = usize::try_from(found).ok()?;
        for r in regions.iter().take(found) {
            let (s, e) = ((r.start - start) as usize, (r.end - start) as usize);
            match out.last_mut() {
                Some((ls, ll)) if s <= *ls + *ll => *ll = e - *ls,
                _ => out.push((s, e - s)),
            }
        }
        if arg.walk_end <= at {
            break;
        }
        at = arg.walk_end;
    }
    out.truncate(max_stretches);
    Some(out)
}

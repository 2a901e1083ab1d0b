//! Writing a bundle: the executable, the compiled guest moved to a 64 KiB
//! boundary, the snapshot compressed, the manifest and the trailer, into a
//! temporary file beside the output that replaces it only once it is
//! complete and loads.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::elf;
use super::manifest::{self, GuestId, Manifest, Region, ALIGN};
use super::{Bundle, BundleError};
use crate::sandbox::{engine, guest, snapshot, Say};

/// zstd level for the snapshot: within a few percent of the best ratio at a
/// fraction of the time (it is only read where the compiled guest does not
/// fit).
const ZSTD_LEVEL: i32 = 9;

/// Where the parts of a new bundle come from.
pub struct BundleSources<'a> {
    /// A plain sandstack executable, or the bundle this process runs from
    /// (its executable part is taken, with its own header restored).
    pub executable: Executable<'a>,
    /// The compiled guest: a `.cwasm` file from the cache, or the running
    /// bundle's (which is already placed for the same executable).
    pub compiled: Part<'a>,
    /// The snapshot: a `.wasm` file from the cache, or the running bundle's
    /// (already compressed).
    pub snapshot: Part<'a>,
}

pub enum Executable<'a> {
    Plain(PathBuf),
    Bundle(&'a Bundle),
}

pub enum Part<'a> {
    File(PathBuf),
    Bundle(&'a Bundle),
}

impl<'a> BundleSources<'a> {
    /// The parts of a bundle for `sandbox`, once prepared: from the bundle
    /// this process runs from where they fit here, else from the cache in
    /// `home`.
    pub fn for_this_machine(
        home: &Path,
        running: Option<&'a Bundle>,
        sandbox: &crate::sandbox::Sandbox,
    ) -> Result<BundleSources<'a>, BundleError> {
        let key = crate::sandbox::snapshot_key();
        let cached = |path: PathBuf| {
            if path.is_file() {
                Ok(Part::File(path))
            } else {
                Err(BundleError::Unsupported(format!(
                    "{} is missing; run `sandstack setup` first",
                    path.display()
                )))
            }
        };
        let compiled = match running {
            Some(b) if sandbox.from_bundle() => Part::Bundle(b),
            _ => cached(crate::sandbox::module_cache::compiled_path(home, &key))?,
        };
        let snapshot = match running {
            Some(b) => Part::Bundle(b),
            None => cached(snapshot::snapshot_path(home, &key))?,
        };
        let executable = match running {
            Some(b) => Executable::Bundle(b),
            None => Executable::Plain(super::running_executable()),
        };
        Ok(BundleSources {
            executable,
            compiled,
            snapshot,
        })
    }
}

/// What `sandstack bundle` reports.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub size: u64,
    pub executable: u64,
    pub compiled: u64,
    pub snapshot_raw: u64,
    pub snapshot_compressed: u64,
    pub seconds: f64,
}

/// Writes a bundle to `out` and checks that it loads.
pub fn write(
    out: &Path,
    sources: BundleSources<'_>,
    say: Say<'_>,
) -> Result<BundleReport, BundleError> {
    let start = Instant::now();
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".sandstack-bundle-")
        .tempfile_in(&dir)
        .map_err(BundleError::io(format!(
            "creating a file in {}",
            dir.display()
        )))?;
    let shown = out.display().to_string();
    let file = tmp
        .as_file()
        .try_clone()
        .map_err(BundleError::io(format!("writing {shown}")))?;
    let manifest = write_parts(file, &sources, &shown, say)?;

    say("checking that the bundle loads");
    let written = Bundle::open(tmp.path())?.ok_or_else(|| {
        BundleError::Unsupported("the written file does not read back as a bundle".into())
    })?;
    let engine = engine::shared_engine().map_err(BundleError::DoesNotFit)?;
    written.compiled_guest(engine)?;
    let size = std::fs::metadata(tmp.path())
        .map_err(BundleError::io(format!("reading {shown}")))?
        .len();
    drop(written);
    make_executable(tmp.path()).map_err(BundleError::io(format!("writing {shown}")))?;
    tmp.persist(out)
        .map_err(|e| BundleError::io(format!("moving the bundle to {shown}"))(e.error))?;
    Ok(BundleReport {
        size,
        executable: manifest.executable_len,
        compiled: manifest.compiled.len,
        snapshot_raw: manifest.snapshot_raw_len,
        snapshot_compressed: manifest.snapshot.len,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes the executable, the compiled guest, the snapshot, the manifest,
/// the trailer and last the bundle's ELF header into `file`.
fn write_parts(
    file: File,
    sources: &BundleSources<'_>,
    shown: &str,
    say: Say<'_>,
) -> Result<Manifest, BundleError> {
    let io = |what: &str| BundleError::io(format!("writing {shown} ({what})"));
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let (exe_header, exe_len, exe_sections) = copy_executable(&sources.executable, &mut w, say)?;
    let base = exe_len.next_multiple_of(ALIGN);
    pad(&mut w, base - exe_len).map_err(io("padding"))?;
    let (compiled, guest_sections) = copy_compiled(&sources.compiled, base, &mut w, say)?;
    let (snapshot, snapshot_raw_len) =
        copy_snapshot(&sources.snapshot, base + compiled.len, &mut w, say)?;
    let pin = guest::pin();
    let manifest = Manifest {
        sandstack: env!("CARGO_PKG_VERSION").into(),
        wasmtime: engine::wasmtime_version().into(),
        engine: engine::fingerprint(),
        machine: elf::check_header(&exe_header, "sandstack's executable")
            .map_err(BundleError::Unsupported)?
            .into(),
        guest: GuestId {
            package: pin.package.clone(),
            version: pin.version.clone(),
            sha256: pin.sha256.clone(),
        },
        snapshot_key: crate::sandbox::snapshot_key(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        executable_len: exe_len,
        executable_sections: exe_sections,
        compiled,
        snapshot,
        snapshot_raw_len,
    };
    let text = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BundleError::Unsupported(format!("writing the manifest: {e}")))?;
    let manifest_offset = manifest.snapshot.offset + manifest.snapshot.len;
    w.write_all(&text).map_err(io("manifest"))?;
    w.write_all(&manifest::trailer(manifest_offset, text.len() as u64))
        .map_err(io("trailer"))?;
    let mut file = w.into_inner().map_err(|e| io("flush")(e.into_error()))?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&elf::bundle_header(&exe_header, guest_sections)))
        .and_then(|_| file.sync_all())
        .map_err(io("header"))?;
    Ok(manifest)
}

/// Copies the executable; returns its (original) ELF header, length and
/// section table.
fn copy_executable(
    exe: &Executable<'_>,
    w: &mut impl Write,
    say: Say<'_>,
) -> Result<(Vec<u8>, u64, elf::SectionTable), BundleError> {
    let (path, len, restore) = match exe {
        Executable::Plain(p) => {
            let len = std::fs::metadata(p)
                .map_err(BundleError::io(format!("reading {}", p.display())))?
                .len();
            (p.clone(), len, None)
        }
        Executable::Bundle(b) => (
            b.path().to_path_buf(),
            b.manifest.executable_len,
            Some(b.manifest.executable_sections),
        ),
    };
    say(&format!("copying sandstack's executable ({})", mb(len)));
    let mut reader = File::open(&path)
        .map_err(BundleError::io(format!("reading {}", path.display())))?
        .take(len);
    let mut header = vec![0u8; elf::HEADER_LEN];
    reader
        .read_exact(&mut header)
        .map_err(BundleError::io(format!("reading {}", path.display())))?;
    elf::check_header(&header, "sandstack's executable").map_err(BundleError::Unsupported)?;
    if let Some(table) = restore {
        elf::set_section_table(&mut header, table);
    }
    let sections = elf::section_table(&header);
    w.write_all(&header)
        .and_then(|_| std::io::copy(&mut reader, w).map(|_| ()))
        .map_err(BundleError::io("writing the executable"))?;
    Ok((header, len, sections))
}

/// Copies the compiled guest to `base`; returns its region and the section
/// table the bundle's header must point at.
fn copy_compiled(
    part: &Part<'_>,
    base: u64,
    w: &mut impl Write,
    say: Say<'_>,
) -> Result<(Region, elf::SectionTable), BundleError> {
    let mut bytes = match part {
        Part::File(p) => {
            std::fs::read(p).map_err(BundleError::io(format!("reading {}", p.display())))?
        }
        Part::Bundle(b) => {
            // Its sections were moved for an executable of the same length
            // (the same one), so it goes to the same place unchanged.
            let region = &b.manifest.compiled;
            if region.offset != base {
                return Err(BundleError::Unsupported(format!(
                    "the running bundle's compiled guest sits at {}, not {base}",
                    region.offset
                )));
            }
            let mut v = Vec::new();
            b.region_reader(region)
                .read_to_end(&mut v)
                .map_err(BundleError::io(format!("reading {}", b.path().display())))?;
            v
        }
    };
    say(&format!(
        "adding the compiled guest ({})",
        mb(bytes.len() as u64)
    ));
    let table = match part {
        Part::File(_) => elf::relocate_guest(&mut bytes, base),
        Part::Bundle(_) => elf::check_header(&bytes, "the compiled guest")
            .map(|_| elf::section_table(&bytes))
            .map(|t| elf::SectionTable {
                shoff: t.shoff + base,
                ..t
            }),
    }
    .map_err(BundleError::Unsupported)?;
    w.write_all(&bytes)
        .map_err(BundleError::io("writing the compiled guest"))?;
    let region = Region {
        offset: base,
        len: bytes.len() as u64,
        blake3: blake3::hash(&bytes).to_hex().to_string(),
    };
    Ok((region, table))
}

/// Compresses (or copies, from a bundle) the snapshot at `offset`; returns
/// its region and uncompressed length.
fn copy_snapshot(
    part: &Part<'_>,
    offset: u64,
    w: &mut impl Write,
    say: Say<'_>,
) -> Result<(Region, u64), BundleError> {
    let mut hashed = Hashed {
        inner: w,
        hash: blake3::Hasher::new(),
        len: 0,
    };
    let raw_len = match part {
        Part::File(p) => {
            let raw_len = std::fs::metadata(p)
                .map_err(BundleError::io(format!("reading {}", p.display())))?
                .len();
            say(&format!(
                "compressing the guest snapshot ({}) with zstd",
                mb(raw_len)
            ));
            let src = File::open(p).map_err(BundleError::io(format!("reading {}", p.display())))?;
            zstd::stream::copy_encode(src, &mut hashed, ZSTD_LEVEL)
                .map_err(BundleError::io("compressing the snapshot"))?;
            raw_len
        }
        Part::Bundle(b) => {
            say("copying the compressed guest snapshot");
            let mut r = b.region_reader(&b.manifest.snapshot);
            std::io::copy(&mut r, &mut hashed).map_err(BundleError::io("copying the snapshot"))?;
            b.manifest.snapshot_raw_len
        }
    };
    let region = Region {
        offset,
        len: hashed.len,
        blake3: hashed.hash.finalize().to_hex().to_string(),
    };
    Ok((region, raw_len))
}

/// A writer that hashes and counts what passes through it.
struct Hashed<W> {
    inner: W,
    hash: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad(w: &mut impl Write, n: u64) -> std::io::Result<()> {
    std::io::copy(&mut std::io::repeat(0).take(n), w).map(|_| ())
}

fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

//! Bundles: one executable that holds sandstack and its sandbox prepared for
//! one machine, so a deploy is one copied file with nothing to fetch, build,
//! compile or cache.
//!
//! A bundle is the sandstack executable followed by, at a 64 KiB boundary,
//! the compiled guest (wasmtime's serialized module of sandstack's snapshot,
//! stored as is so it can be mapped), the snapshot itself (zstd, compiled
//! again only where the compiled guest does not fit), a JSON manifest and a
//! 32-byte trailer ([`manifest`]). Its ELF header's section table points at
//! the compiled guest's sections ([`elf`]), so wasmtime maps the guest's code
//! and memory image straight from the bundle.
//!
//! Before a bundle's compiled guest is used it is checked as sandstack's
//! own: made by this sandstack for this guest and engine configuration, with
//! the BLAKE3 digest the manifest records; wasmtime then checks it against this
//! CPU.

mod elf;
mod manifest;
mod write;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasmtime::{Engine, Module};

pub use manifest::Manifest;
pub use write::{mb, write, BundleReport, BundleSources, Executable, Part};

use super::engine;

/// Why a bundle cannot be used as it is. Each says what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BundleError {
    #[error("{context}: {message}")]
    Io { context: String, message: String },
    #[error("{} is a damaged sandstack bundle: {why}. Copy it again from where it was built, or build a new one with `sandstack bundle`", .path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("this bundle's compiled guest was made {what} {theirs}, and this is {ours}")]
    Foreign {
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error("this bundle's compiled guest does not fit this machine: {0}")]
    DoesNotFit(String),
    #[error("cannot bundle: {0}")]
    Unsupported(String),
}

impl BundleError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BundleError {
        let context = context.into();
        move |e| BundleError::Io {
            context,
            message: e.to_string(),
        }
    }
}

/// An open bundle file and what its manifest says.
#[derive(Debug)]
pub struct Bundle {
    /// What is read (for the running bundle, `/proc/self/exe`) and the
    /// name messages give it.
    path: PathBuf,
    shown: PathBuf,
    file: File,
    pub manifest: Manifest,
    /// Whether the compiled guest was checked as sandstack's own (once per
    /// process: it reads every byte).
    checked: OnceLock<Result<(), BundleError>>,
}

/// The file this process runs from. On Linux, `/proc/self/exe` is the very
/// file that was executed, even if its path has since been replaced.
pub fn running_executable() -> PathBuf {
    let proc = PathBuf::from("/proc/self/exe");
    if proc.exists() {
        return proc;
    }
    std::env::current_exe().unwrap_or(proc)
}

/// The running executable's name, for messages.
fn running_executable_name() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| running_executable())
}

impl Bundle {
    /// The bundle at `path`, or `None` if it is a plain executable.
    pub fn open(path: &Path) -> Result<Option<Bundle>, BundleError> {
        Self::open_as(path, path)
    }

    /// Like [`Bundle::open`], naming the file `name` in messages.
    fn open_as(path: &Path, name: &Path) -> Result<Option<Bundle>, BundleError> {
        let shown = name.display().to_string();
        let mut file = File::open(path).map_err(BundleError::io(format!("opening {shown}")))?;
        let len = file
            .metadata()
            .map_err(BundleError::io(format!("reading {shown}")))?
            .len();
        if len < manifest::TRAILER_LEN {
            return Ok(None);
        }
        let mut last = vec![0u8; manifest::TRAILER_LEN as usize];
        file.seek(SeekFrom::End(-(manifest::TRAILER_LEN as i64)))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(BundleError::io(format!("reading {shown}")))?;
        let damaged = |why: String| BundleError::Damaged {
            path: name.to_path_buf(),
            why,
        };
        let Some((offset, mlen)) = manifest::read_trailer(&last, len).map_err(damaged)? else {
            return Ok(None);
        };
        let mut text = vec![0u8; mlen as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut text))
            .map_err(BundleError::io(format!("reading {shown}")))?;
        let manifest = Manifest::parse(&text, offset).map_err(damaged)?;
        Ok(Some(Bundle {
            path: path.to_path_buf(),
            shown: name.to_path_buf(),
            file,
            manifest,
            checked: OnceLock::new(),
        }))
    }

    /// The bundle this process runs from, if it is one. A damaged bundle is
    /// reported here once and then run as a plain executable.
    pub fn running() -> Option<&'static Bundle> {
        static RUNNING: OnceLock<Option<Bundle>> = OnceLock::new();
        RUNNING
            .get_or_init(|| match Bundle::open_as(&running_executable(), &running_executable_name()) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "running as a plain sandstack, which prepares its sandbox in SANDSTACK_HOME");
                    None
                }
            })
            .as_ref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this bundle was made by this sandstack for its guest and
    /// engine configuration (the CPU is wasmtime's to check).
    pub fn check_made_here(&self) -> Result<(), BundleError> {
        let m = &self.manifest;
        let ours = [
            (
                "by sandstack",
                m.sandstack.clone(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                "for the guest snapshot",
                m.snapshot_key.clone(),
                super::snapshot_key(),
            ),
            (
                "with the wasmtime configuration",
                m.engine.clone(),
                engine::fingerprint(),
            ),
        ];
        for (what, theirs, ours) in ours {
            if theirs != ours {
                return Err(BundleError::Foreign { what, theirs, ours });
            }
        }
        Ok(())
    }

    /// The compiled guest, mapped from the bundle, once checked.
    pub fn compiled_guest(&self, engine: &Engine) -> Result<Module, BundleError> {
        self.checked
            .get_or_init(|| {
                self.check_made_here()?;
                let found = self.digest(&self.manifest.compiled)?;
                if found != self.manifest.compiled.blake3 {
                    return Err(self.damaged(format!(
                        "its compiled guest has BLAKE3 digest {found}, but its manifest records {}",
                        self.manifest.compiled.blake3
                    )));
                }
                Ok(())
            })
            .clone()?;
        let file = self
            .file
            .try_clone()
            .map_err(BundleError::io(format!("reading {}", self.shown.display())))?;
        // SAFETY: the mapped bytes are the compiled guest this sandstack
        // wrote into its own executable file, checked just above against the
        // digest recorded with it; wasmtime checks that they match this
        // engine and CPU. Like any executable, a bundle is replaced by a new
        // file (the README's deploy does), never rewritten in place.
        unsafe { Module::deserialize_open_file(engine, file) }
            .map_err(|e| BundleError::DoesNotFit(format!("{e:#}")))
    }

    /// Unpacks the snapshot into `out` (for compiling it on this machine).
    pub fn unpack_snapshot(&self, out: &Path) -> Result<(), BundleError> {
        let region = &self.manifest.snapshot;
        let found = self.digest(region)?;
        if found != region.blake3 {
            return Err(self.damaged(format!(
                "its snapshot has BLAKE3 digest {found}, but its manifest records {}",
                region.blake3
            )));
        }
        let shown = out.display().to_string();
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)
                .map_err(BundleError::io(format!("creating {}", dir.display())))?;
        }
        let tmp = out.with_extension("partial");
        let mut dest = File::create(&tmp).map_err(BundleError::io(format!("writing {shown}")))?;
        let mut decoder = zstd::stream::read::Decoder::new(self.region_reader(region))
            .map_err(BundleError::io("starting zstd"))?;
        let written = std::io::copy(&mut decoder, &mut dest)
            .map_err(|e| self.damaged(format!("its snapshot does not decompress: {e}")))?;
        if written != self.manifest.snapshot_raw_len {
            return Err(self.damaged(format!(
                "its snapshot decompresses to {written} bytes, not {}",
                self.manifest.snapshot_raw_len
            )));
        }
        dest.sync_all()
            .and_then(|_| std::fs::rename(&tmp, out))
            .map_err(BundleError::io(format!("writing {shown}")))
    }

    fn damaged(&self, why: String) -> BundleError {
        BundleError::Damaged {
            path: self.shown.clone(),
            why,
        }
    }

    fn region_reader(&self, region: &manifest::Region) -> RegionReader<'_> {
        RegionReader {
            file: &self.file,
            at: region.offset,
            end: region.offset + region.len,
        }
    }

    /// The BLAKE3 digest of a region, read (not mapped, so it adds nothing to the
    /// process's resident memory).
    fn digest(&self, region: &manifest::Region) -> Result<String, BundleError> {
        let mut reader = self.region_reader(region);
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(BundleError::io(format!("reading {}", self.shown.display())))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            h.update_rayon(&buf[..n]);
        }
        if total != region.len {
            return Err(self.damaged(format!("it ends {} bytes early", region.len - total)));
        }
        Ok(h.finalize().to_hex().to_string())
    }
}

/// A region of the bundle, read with positional reads so that readers share
/// no file offset (a cloned descriptor would).
struct RegionReader<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for RegionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = usize::try_from(self.end.saturating_sub(self.at))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

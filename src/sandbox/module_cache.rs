//! The compiled snapshot, cached on disk as wasmtime's serialized native
//! code, keyed by the snapshot and the engine configuration. Only files this
//! code wrote are ever loaded: a `.cwasm` is native code and is never
//! accepted from elsewhere.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::engine;
use super::error::SetupError;

pub fn compiled_path(home: &Path, snapshot_key: &str) -> PathBuf {
    compiled_path_of(home, snapshot_key, engine::Metering::Metered)
}

pub fn compiled_path_of(home: &Path, snapshot_key: &str, metering: engine::Metering) -> PathBuf {
    let mut h = Sha256::new();
    h.update(engine::fingerprint_of(metering).as_bytes());
    let engine_key = &hex::encode(h.finalize())[..12];
    home.join("compiled")
        .join(format!("{snapshot_key}-{engine_key}.cwasm"))
}

/// Load the compiled module if it is there and this engine accepts it.
pub fn load(engine: &Engine, path: &Path) -> Option<Module> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is one this module compiled and wrote (atomically,
    // by rename) into sandstack's own cache directory; wasmtime checks that
    // it matches this engine's version and configuration.
    match unsafe { Module::deserialize_file(engine, path) } {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %format_args!("{e:#}"),
                "ignoring the compiled guest; compiling again"
            );
            None
        }
    }
}

/// Compile the snapshot and write the serialized module (the caller holds
/// the setup lock).
pub fn compile(engine: &Engine, snapshot: &Path, out: &Path) -> Result<(), SetupError> {
    let module =
        Module::from_file(engine, snapshot).map_err(|e| SetupError::Compile(format!("{e:#}")))?;
    let bytes = module
        .serialize()
        .map_err(|e| SetupError::Compile(format!("{e:#}")))?;
    drop(module);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(SetupError::io(format!("creating {}", dir.display())))?;
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &bytes).map_err(SetupError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, out).map_err(SetupError::io(format!("writing {}", out.display())))?;
    Ok(())
}

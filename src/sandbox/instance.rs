//! What every guest instance shares, whether it is being snapshotted or
//! run: its WASI layout (arguments, environment, output) and how one turn of
//! Python source is run in it. Only the snapshot build sees a directory (the
//! standard library's, read-only); the snapshot takes the archive into
//! memory, so runs get no filesystem at all.

use wasmtime::{Instance, Store};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::error::SetupError;
use super::guest::GuestFiles;
use super::output::CappedOutput;

/// Guest paths and arguments; runs must use the very same (the snapshot
/// froze libc's view of its arguments and environment).
pub const STDLIB_GUEST_DIR: &str = "/usr/local/lib";
pub const ARGV0: &str = "/usr/local/bin/python.wasm";
pub const GUEST_ENV: [(&str, &str); 2] = [("TMPDIR", "/tmp"), ("PYTHONTZPATH", "")];
/// A WASI context with the layout every guest instance gets: no files.
pub fn wasi_builder(output: &CappedOutput) -> WasiCtxBuilder {
    let mut b = WasiCtxBuilder::new();
    b.args(&[ARGV0]);
    for (k, v) in GUEST_ENV {
        b.env(k, v);
    }
    b.stdout(output.clone());
    b.stderr(output.clone());
    b.allow_blocking_current_thread(true);
    b
}

/// The snapshot build's WASI context: the layout above plus the guest's
/// standard library, read-only, where CPython looks for it.
pub fn snapshot_wasi_builder(
    guest: &GuestFiles,
    output: &CappedOutput,
) -> Result<WasiCtxBuilder, SetupError> {
    let mut b = wasi_builder(output);
    b.preopened_dir(&guest.stdlib_dir, STDLIB_GUEST_DIR, FsPerms::ReadOnly)
        .map_err(|e| SetupError::Io {
            context: format!("opening {}", guest.stdlib_dir.display()),
            message: format!("{e:#}"),
        })?;
    Ok(b)
}

/// Write `source` into the guest and run it as one turn; returns the exit
/// status (the low byte of `turn`'s result).
pub fn run_turn<T>(
    store: &mut Store<T>,
    instance: &Instance,
    source: &str,
) -> wasmtime::Result<i32> {
    let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "host_alloc")?;
    let turn = instance.get_typed_func::<(i32, i32), i32>(&mut *store, "turn")?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::Error::msg("the guest exports no memory"))?;
    let len = i32::try_from(source.len()).map_err(|_| wasmtime::Error::msg("source too large"))?;
    let p = alloc.call(&mut *store, len)?;
    if p == 0 {
        return Err(wasmtime::Error::msg(
            "the guest could not allocate the turn's source",
        ));
    }
    memory.write(&mut *store, p as u32 as usize, source.as_bytes())?;
    Ok(turn.call(&mut *store, (p, len))? & 0xff)
}

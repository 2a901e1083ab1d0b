//! Every import the guest gets, set up in one place: WASI preview 1 (with
//! sandstack's `poll_oneoff`, which keeps the run's deadline) and the door.
//! Nothing else reaches the host.

use wasmtime::Linker;

use super::host::{self, HostState};

pub fn add_imports(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |s: &mut HostState| &mut s.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        super::poll::poll_oneoff,
    )?;
    linker.allow_shadowing(false);
    linker.func_wrap("host", "call", host::door_call)?;
    Ok(())
}

//! Builds sandstack's own pre-initialized snapshot of the guest with
//! wasmtime-wizer: CPython started, numpy, pandas and sandstack's guest
//! modules imported and warmed. Minutes and a few GB of RAM, once per
//! machine; every run then starts from this state in under a millisecond.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Linker, Module, Store};

use super::clock::GuestClock;
use super::engine;
use super::error::SetupError;
use super::guest::{GuestFiles, GuestPin};
use super::guest_sources;
use super::host::{DoorState, HostState};
use super::output::CappedOutput;

const INIT_FUNC: &str = "wizer.initialize";

/// Identifies a snapshot by everything that goes into it.
pub fn snapshot_key(pin: &GuestPin) -> String {
    let mut h = Sha256::new();
    h.update(pin.sha256.as_bytes());
    h.update(guest_sources::sources_hash().as_bytes());
    h.update(format!("wasmtime-wizer {}", engine::wasmtime_version()).as_bytes());
    hex::encode(h.finalize())[..24].to_string()
}

pub fn snapshot_path(home: &Path, key: &str) -> PathBuf {
    home.join("snapshots").join(format!("{key}.wasm"))
}

/// Build the snapshot at `out` (the caller holds the setup lock).
pub fn build(guest: &GuestFiles, out: &Path) -> Result<(), SetupError> {
    let snap_err = |what: &str| {
        let what = what.to_string();
        move |e: wasmtime::Error| SetupError::Snapshot(format!("{what}: {e:#}"))
    };
    let wasm = std::fs::read(&guest.python_wasm).map_err(SetupError::io(format!(
        "reading {}",
        guest.python_wasm.display()
    )))?;
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.init_func(INIT_FUNC);
    let (cx, instrumented) = wizer
        .instrument(&wasm)
        .map_err(snap_err("instrumenting python.wasm"))?;

    let engine = engine::snapshot_engine().map_err(SetupError::Snapshot)?;
    let module = Module::new(&engine, &instrumented)
        .map_err(snap_err("compiling the instrumented module"))?;
    drop(instrumented);

    let output = CappedOutput::new(1 << 20);
    let wasi = super::instance::snapshot_wasi_builder(guest, &output)?.build_p1();
    let state = HostState::new(
        wasi,
        GuestClock::new(super::clock::now_us(), false),
        output.clone(),
        usize::MAX,
        DoorState::closed(),
    );
    let mut store = Store::new(&engine, state);
    store.set_fuel(u64::MAX).map_err(snap_err("setting fuel"))?;
    store.set_epoch_deadline(u64::MAX / 2);
    let mut linker: Linker<HostState> = Linker::new(&engine);
    super::linker::add_imports(&mut linker).map_err(snap_err("linking"))?;
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(snap_err("instantiating"))?;

    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
        init.call(&mut store, ())
            .map_err(snap_err("calling _initialize"))?;
    }
    let wizer_init = instance
        .get_typed_func::<(), ()>(&mut store, INIT_FUNC)
        .map_err(snap_err("finding wizer.initialize"))?;
    wizer_init
        .call(&mut store, ())
        .map_err(snap_err("calling wizer.initialize"))?;

    let status = super::instance::run_turn(&mut store, &instance, &guest_sources::snapshot_turn())
        .map_err(snap_err("importing numpy, pandas and the guest modules"))?;
    if status != 0 {
        return Err(SetupError::Snapshot(format!(
            "the warm-up turn exited with status {status}; guest output:\n{}",
            output.text()
        )));
    }

    let snapshot = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| SetupError::Snapshot(e.to_string()))?
        .block_on(wizer.snapshot(
            &cx,
            &mut wasmtime_wizer::WasmtimeWizer {
                store: &mut store,
                instance,
            },
        ))
        .map_err(snap_err("taking the snapshot"))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(SetupError::io(format!("creating {}", dir.display())))?;
    }
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &snapshot)
        .map_err(SetupError::io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, out).map_err(SetupError::io(format!("writing {}", out.display())))?;
    Ok(())
}

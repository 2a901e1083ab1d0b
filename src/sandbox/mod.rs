//! The sandbox: user Python (an `ingest_fn`) run in CPython compiled to
//! WebAssembly, hosted by wasmtime, with hard caps on CPU (fuel), wall
//! clock (epochs), memory, output, result size and HTTP.
//!
//! Setup happens once per machine and is cached under `$SANDSTACK_HOME`
//! (default `~/.cache/sandstack`): the pinned guest is fetched with pip
//! ([`guest`]), sandstack's snapshot is built from it with wasmtime-wizer
//! ([`snapshot`]), and the snapshot is compiled and serialized
//! ([`module_cache`]); or it comes with the executable, when that is a
//! [`bundle`]. Each execution ("exec", as opposed to a scheduled
//! job run) then instantiates a fresh copy-on-write instance from an
//! `InstancePre` ([`exec`]); the guest reaches the host only
//! through WASI (arguments, clocks, random and output: no files, the
//! standard library being in the snapshot's memory, and no sockets) and the
//! door ([`door`], [`host`]), where HTTP is made under the batch's policy
//! ([`http`]).

mod addresses;
pub mod bundle;
mod clock;
mod code_cache;
pub mod door;
mod engine;
pub mod error;
mod exec;
#[cfg(test)]
mod fuzz;
pub mod guest;
mod guest_sources;
mod guest_threads;
mod host;
pub mod http;
mod instance;
mod linker;
mod module_cache;
mod output;
mod pagemap;
mod poll;
mod prefault;
mod residue;
mod result_frame;
pub mod secrets;
mod snapshot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::{InstancePre, Linker};

pub use error::{ExecError, SetupError};
pub use exec::{ExecReport, ExecRequest, ExecStats, Phases, ResidueCheck};
pub use host::LogLine;

use host::HostState;

/// sandstack's cache directory: `$SANDSTACK_HOME`, else `~/.cache/sandstack`.
pub fn home_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("SANDSTACK_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("sandstack")
}

/// A ready sandbox: the compiled guest, linked, waiting to be instantiated.
pub struct Sandbox {
    pre: InstancePre<HostState>,
    /// The compiled guest is mapped from the bundle this process runs from.
    from_bundle: bool,
    /// Batches' compiled user code, handed back to their later runs.
    code: code_cache::CodeCache,
    /// The pages each batch's runs write (learned from one run in 256),
    /// faulted in before its next ones.
    written: prefault::LastWritten,
    /// Which of fuel and the epoch deadline are enforced (both, always, but
    /// in the bench's other sandboxes).
    metering: engine::Metering,
}

/// Reports progress of the one-time setup steps.
pub type Say<'a> = &'a (dyn Fn(&str) + Sync);

/// The compiled snapshot of the pinned guest in `home`, if it is there and
/// loads.
fn compiled_guest(engine: &wasmtime::Engine, home: &Path) -> Option<wasmtime::Module> {
    module_cache::load(engine, &module_cache::compiled_path(home, &snapshot_key()))
}

/// The key of the snapshot this build makes and runs: the pinned guest,
/// sandstack's guest sources and the wasmtime version.
pub fn snapshot_key() -> String {
    snapshot::snapshot_key(&guest::pin())
}

pub use engine::{shared_engine, wasmtime_version, Metering};

/// How far this machine's sandbox is prepared, without preparing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// This executable is a bundle and its compiled guest loads here.
    Bundled,
    /// The guest wheel has not been fetched.
    NoGuest,
    /// The guest is there; the snapshot is not built or not compiled.
    NotCompiled,
    /// The compiled guest loads: a Python ingest starts at once.
    Ready,
}

impl Sandbox {
    /// Where this machine's sandbox stands in `home`.
    pub fn readiness(home: &Path) -> Readiness {
        let engine = engine::shared_engine().ok();
        if let (Some(b), Some(engine)) = (bundle::Bundle::running(), engine) {
            if b.compiled_guest(engine).is_ok() {
                return Readiness::Bundled;
            }
        }
        match engine {
            Some(engine) if compiled_guest(engine, home).is_some() => Readiness::Ready,
            _ if guest::existing(home).is_some() => Readiness::NotCompiled,
            _ => Readiness::NoGuest,
        }
    }

    /// Open the sandbox, doing whatever one-time setup is still missing.
    pub fn open(home: &Path, say: Say<'_>) -> Result<Sandbox, SetupError> {
        Self::prepare(home, None, say)
    }

    /// Open the sandbox; a guest wheel that setup needs is taken from
    /// `guest_wheel` (a file, or a directory holding it) when given.
    pub fn prepare(
        home: &Path,
        guest_wheel: Option<&Path>,
        say: Say<'_>,
    ) -> Result<Sandbox, SetupError> {
        let engine = engine::shared_engine().map_err(SetupError::Compile)?;
        // A bundle's compiled guest, mapped from this executable.
        let bundle = bundle::Bundle::running();
        let unfit = match bundle.map(|b| b.compiled_guest(engine)) {
            Some(Ok(module)) => return Self::link(module, true),
            Some(Err(e)) => Some(e.to_string()),
            None => None,
        };
        // Fast path, no lock: everything is already there.
        if let Some(module) = compiled_guest(engine, home) {
            if let Some(why) = &unfit {
                tracing::warn!(reason = %why, dir = %home.display(), "using the compiled guest in SANDSTACK_HOME");
            }
            return Self::link(module, false);
        }
        match (bundle, unfit) {
            (Some(b), Some(why)) => {
                say(&format!(
                    "{why}; compiling the bundle's snapshot for this machine instead, into {} (once)",
                    home.display()
                ));
                Self::set_up(home, Some(b), None, engine, say).map_err(|e| {
                    SetupError::BundleFallback {
                        why,
                        error: Box::new(e),
                    }
                })
            }
            _ => Self::set_up(home, None, guest_wheel, engine, say),
        }
    }

    /// The slow path: build and compile what `home` lacks, under its lock.
    fn set_up(
        home: &Path,
        bundle: Option<&bundle::Bundle>,
        guest_wheel: Option<&Path>,
        engine: &wasmtime::Engine,
        say: Say<'_>,
    ) -> Result<Sandbox, SetupError> {
        let _lock = setup_lock(home, say)?;
        let key = snapshot_key();
        let compiled = module_cache::compiled_path(home, &key);
        if let Some(module) = module_cache::load(engine, &compiled) {
            return Self::link(module, false);
        }
        let snap = snapshot::snapshot_path(home, &key);
        unpack_missing_snapshot(&snap, bundle, say)?;
        if !snap.is_file() {
            let guest = guest::ensure(home, guest_wheel, say)?;
            timed(
                say,
                "building the guest snapshot: CPython with numpy, pandas and sandstack's modules imported (a few minutes and ~2.5 GB of RAM, once per machine)",
                || snapshot::build(&guest, &snap),
            )?;
        }
        timed(
            say,
            "compiling the snapshot to native code (a few minutes, once per machine)",
            || module_cache::compile(engine, &snap, &compiled),
        )?;
        let module = module_cache::load(engine, &compiled).ok_or_else(|| {
            SetupError::Compile(format!(
                "{} was written but does not load",
                compiled.display()
            ))
        })?;
        Self::link(module, false)
    }

    fn link(module: wasmtime::Module, from_bundle: bool) -> Result<Sandbox, SetupError> {
        let mut linker: Linker<HostState> = Linker::new(module.engine());
        linker::add_imports(&mut linker)
            .map_err(|e| SetupError::Compile(format!("linking: {e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| SetupError::Compile(format!("linking: {e:#}")))?;
        Ok(Sandbox {
            pre,
            from_bundle,
            code: Default::default(),
            written: Default::default(),
            metering: engine::Metering::Metered,
        })
    }

    /// The same guest compiled with only some of fuel counting and epoch
    /// checks (`metering`), for `sandstack bench sandbox --unmetered` only:
    /// it measures what each check costs. Its runs lack a fuel limit, a
    /// timeout or both, so it must never run code that is not trusted.
    /// Compiled once into `home` (about as long as the first setup's
    /// compile) from the snapshot there, or the bundle's.
    pub fn for_bench(
        home: &Path,
        metering: engine::Metering,
        say: Say<'_>,
    ) -> Result<Sandbox, SetupError> {
        let engine = engine::bench_engine(metering).map_err(SetupError::Compile)?;
        let key = snapshot_key();
        let compiled = module_cache::compiled_path_of(home, &key, metering);
        if module_cache::load(engine, &compiled).is_none() {
            let _lock = setup_lock(home, say)?;
            compile_for_bench(home, &key, &compiled, engine, metering, say)?;
        }
        let module = module_cache::load(engine, &compiled).ok_or_else(|| {
            SetupError::Compile(format!(
                "{} was written but does not load",
                compiled.display()
            ))
        })?;
        let mut sandbox = Self::link(module, false)?;
        sandbox.metering = metering;
        Ok(sandbox)
    }

    /// A sandbox whose instance slots no other sandbox in this process
    /// shares ([`engine::own_engine`]), for tests that must know every run
    /// in its slots. The guest must be compiled in `home` already (open
    /// the shared sandbox first).
    pub fn with_own_engine(home: &Path) -> Result<Sandbox, SetupError> {
        let engine = engine::own_engine().map_err(SetupError::Compile)?;
        let module = compiled_guest(&engine, home).ok_or_else(|| {
            SetupError::Compile(format!(
                "no compiled guest in {} for a sandbox of its own: set the sandbox up first",
                home.display()
            ))
        })?;
        Self::link(module, false)
    }

    /// Whether the compiled guest is mapped from this process's bundle
    /// (else it came from the cache in `SANDSTACK_HOME`).
    pub fn from_bundle(&self) -> bool {
        self.from_bundle
    }

    /// The process-wide sandbox for `home`, opened on first use.
    pub fn shared(home: &Path, say: Say<'_>) -> Result<Arc<Sandbox>, SetupError> {
        static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<Sandbox>>>> = OnceLock::new();
        let map = OPEN.get_or_init(Default::default);
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(home) {
            return Ok(s.clone());
        }
        let s = Arc::new(Sandbox::open(home, say)?);
        map.insert(home.to_path_buf(), s.clone());
        Ok(s)
    }

    /// Run one ingest in a fresh instance, on a thread with a stack large
    /// enough for the guest. Blocks until the run ends.
    pub fn execute(self: &Arc<Self>, req: ExecRequest) -> ExecReport {
        let me = self.clone();
        guest_threads::run(move || me.execute_here(req))
            .unwrap_or_else(|e| ExecReport::failed(ExecError::Internal(e), [0; 32], 0))
    }
}

/// Compile the snapshot in `home` (or the bundle's) for a bench engine,
/// unless another process did while this one waited for the lock.
fn compile_for_bench(
    home: &Path,
    key: &str,
    compiled: &Path,
    engine: &wasmtime::Engine,
    metering: engine::Metering,
    say: Say<'_>,
) -> Result<(), SetupError> {
    if module_cache::load(engine, compiled).is_some() {
        return Ok(());
    }
    let snap = snapshot::snapshot_path(home, key);
    unpack_missing_snapshot(&snap, bundle::Bundle::running(), say)?;
    if !snap.is_file() {
        return Err(SetupError::Compile(format!(
            "no guest snapshot at {} to compile for the bench ({}): run `sandstack setup` first",
            snap.display(),
            metering.name()
        )));
    }
    timed(
        say,
        &format!(
            "compiling the snapshot with {}, for the bench (once)",
            metering.name()
        ),
        || module_cache::compile(engine, &snap, compiled),
    )
}

/// Unpack `bundle`'s snapshot to `snap` when there is a bundle and no file.
fn unpack_missing_snapshot(
    snap: &Path,
    bundle: Option<&bundle::Bundle>,
    say: Say<'_>,
) -> Result<(), SetupError> {
    match (snap.is_file(), bundle) {
        (false, Some(b)) => timed(say, "unpacking the bundle's guest snapshot", || {
            b.unpack_snapshot(snap).map_err(SetupError::from)
        }),
        _ => Ok(()),
    }
}

/// Setup in `home` is one process's at a time: this lock, held until the
/// file is dropped.
fn setup_lock(home: &Path, say: Say<'_>) -> Result<std::fs::File, SetupError> {
    std::fs::create_dir_all(home)
        .map_err(SetupError::io(format!("creating {}", home.display())))?;
    let lock_path = home.join("setup.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(SetupError::io(format!("creating {}", lock_path.display())))?;
    if lock.try_lock().is_err() {
        say("waiting for another sandstack process to finish setting up the sandbox");
        lock.lock()
            .map_err(SetupError::io(format!("locking {}", lock_path.display())))?;
    }
    Ok(lock)
}

/// Run a long step, saying what it is, how long it has taken every 15 s,
/// and how long it took.
fn timed<T>(
    say: Say<'_>,
    what: &str,
    step: impl FnOnce() -> Result<T, SetupError>,
) -> Result<T, SetupError> {
    say(what);
    let start = Instant::now();
    let done = Mutex::new(false);
    let cv = std::sync::Condvar::new();
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut finished = done.lock().unwrap_or_else(|p| p.into_inner());
            while !*finished {
                let (guard, timeout) = cv
                    .wait_timeout(finished, Duration::from_secs(15))
                    .unwrap_or_else(|p| p.into_inner());
                finished = guard;
                if timeout.timed_out() && !*finished {
                    say(&format!(
                        "  ... still working ({}s)",
                        start.elapsed().as_secs()
                    ));
                }
            }
        });
        let result = step();
        *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        result
    });
    if result.is_ok() {
        say(&format!("  done in {:.0}s", start.elapsed().as_secs_f64()));
    }
    result
}

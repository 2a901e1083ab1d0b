//! The one wasmtime `Engine` configuration sandstack uses, everywhere: one
//! configuration means one compiled guest, shared by every command and test.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ProfilingStrategy,
};

/// How often the epoch advances; wall-clock deadlines are counted in these.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The guest's wasm stack; deep pandas call chains need several MiB.
pub const MAX_WASM_STACK: usize = 8 << 20;

/// Native stack for the thread that runs guest code: above the wasm stack
/// limit, so the guest's limit trips before the host's stack runs out.
pub const GUEST_THREAD_STACK: usize = 64 << 20;

/// Instances that may exist at once (runs in flight across all batches).
pub const MAX_CONCURRENT_INSTANCES: u32 = 32;

/// Largest linear memory any batch may be given (`ingest_memory_mb` max).
pub const MAX_GUEST_MEMORY: u64 = 4 << 30;

/// Whether compiled guest code counts fuel and checks the epoch. Every run
/// is metered; the other kinds exist only for `sandstack bench sandbox
/// --unmetered`, to measure what each check costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metering {
    Metered,
    Unmetered,
    FuelOnly,
    EpochOnly,
}

impl Metering {
    pub fn counts_fuel(self) -> bool {
        matches!(self, Metering::Metered | Metering::FuelOnly)
    }

    pub fn checks_epochs(self) -> bool {
        matches!(self, Metering::Metered | Metering::EpochOnly)
    }

    /// How a bench names it.
    pub fn name(self) -> &'static str {
        match self {
            Metering::Metered => "fuel + epoch checks",
            Metering::Unmetered => "no checks",
            Metering::FuelOnly => "fuel only",
            Metering::EpochOnly => "epoch checks only",
        }
    }
}

/// Describes everything in the runtime configuration that changes compiled
/// code; part of the compiled-module cache key.
pub fn fingerprint() -> String {
    fingerprint_of(Metering::Metered)
}

pub fn fingerprint_of(metering: Metering) -> String {
    let checks = match metering {
        Metering::Metered => "fuel;epochs",
        Metering::Unmetered => "nofuel;noepochs",
        Metering::FuelOnly => "fuel;noepochs",
        Metering::EpochOnly => "nofuel;epochs",
    };
    format!(
        "wasmtime-{};exceptions;{checks};stack={MAX_WASM_STACK};opt=speed;v1",
        wasmtime_version()
    )
}

pub fn wasmtime_version() -> &'static str {
    // Pinned in Cargo.toml with `=`; keep the two in step.
    "48.0.8"
}

fn base_config(metering: Metering) -> Config {
    let mut c = Config::new();
    c.wasm_exceptions(true);
    c.max_wasm_stack(MAX_WASM_STACK);
    // wasmtime refuses a wasm stack larger than the async stack, even when
    // nothing runs async (the async feature comes with wasmtime-wasi).
    c.async_stack_size(MAX_WASM_STACK + (2 << 20));
    c.consume_fuel(metering.counts_fuel());
    c.epoch_interruption(metering.checks_epochs());
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    c.parallel_compilation(true);
    c
}

/// The engine used to run guests: pooling allocator with copy-on-write
/// memory images, so instantiating the snapshot costs well under a ms.
pub fn runtime_config() -> Config {
    runtime_config_of(Metering::Metered)
}

fn runtime_config_of(metering: Metering) -> Config {
    let mut c = base_config(metering);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(MAX_CONCURRENT_INSTANCES)
        .total_memories(MAX_CONCURRENT_INSTANCES)
        .total_tables(MAX_CONCURRENT_INSTANCES)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        .total_gc_heaps(MAX_CONCURRENT_INSTANCES)
        .max_memory_size(MAX_GUEST_MEMORY as usize)
        .table_elements(1 << 20)
        .max_core_instance_size(16 << 20)
        // A freed slot's linear memory is reset by `madvise(MADV_DONTNEED)`
        // over all of it, which also drops pages the kernel swapped out:
        // the next run starts from the snapshot's image, by the kernel's
        // own rule. wasmtime's PAGEMAP_SCAN reset (copy back the dirty
        // pages it finds, keep them resident) looks only at pages present
        // in memory, so a dirty page swapped out between two runs was
        // neither reset nor dropped, and the next run in the slot read the
        // last one's data (tests/it/residue.rs shows it; wasmtime PR
        // #14357). It also stops after 32 stretches, so it bought little:
        // 6.9 against 7.5 ms per run of the random example.
        .linear_memory_keep_resident(0)
        // Tables (host pointers, no guest data) are zeroed in place rather
        // than unmapped, so the next run does not fault them in again.
        .table_keep_resident(8 << 20)
        .pagemap_scan(wasmtime::Enabled::No);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c.memory_init_cow(true);
    c.profiler(profiler_from_env());
    c
}

/// `SANDSTACK_PROFILER=perfmap` (or `jitdump`) names guest functions for
/// `perf` (`/tmp/perf-PID.map`, or a jitdump file for `perf inject`). An
/// operator's switch for profiling; it changes no compiled code.
fn profiler_from_env() -> ProfilingStrategy {
    match std::env::var("SANDSTACK_PROFILER").as_deref() {
        Ok("perfmap") => ProfilingStrategy::PerfMap,
        Ok("jitdump") => ProfilingStrategy::JitDump,
        Ok("") | Err(_) => ProfilingStrategy::None,
        Ok(other) => {
            tracing::warn!(value = ?other, "SANDSTACK_PROFILER is not perfmap or jitdump; ignored");
            ProfilingStrategy::None
        }
    }
}

/// The process-wide engine, with its epoch ticker started.
pub fn shared_engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(own_engine)
        .as_ref()
        .map_err(Clone::clone)
}

/// A new engine, with its own pool of instance slots and epoch ticker
/// (running for the process's life): the process's shared one, made once,
/// and one for a sandbox that must know every run that takes one of its
/// slots (the residue tests').
pub fn own_engine() -> Result<Engine, String> {
    let engine = Engine::new(&runtime_config()).map_err(|e| format!("{e:#}"))?;
    start_epoch_ticker(engine.clone());
    Ok(engine)
}

/// The engine for guest code compiled with other checks than the runs',
/// for the bench (with its own epoch ticker when it checks epochs).
pub fn bench_engine(metering: Metering) -> Result<&'static Engine, String> {
    static ENGINES: [OnceLock<Result<Engine, String>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match metering {
        Metering::Metered => return shared_engine(),
        Metering::Unmetered => &ENGINES[0],
        Metering::FuelOnly => &ENGINES[1],
        Metering::EpochOnly => &ENGINES[2],
    };
    slot.get_or_init(|| {
        let engine = Engine::new(&runtime_config_of(metering)).map_err(|e| format!("{e:#}"))?;
        if metering.checks_epochs() {
            start_epoch_ticker(engine.clone());
        }
        Ok(engine)
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn start_epoch_ticker(engine: Engine) {
    std::thread::Builder::new()
        .name("sandstack-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the epoch ticker"));
}

/// A plain (on-demand allocator) engine for building the snapshot, with the
/// same code-generation settings.
pub fn snapshot_engine() -> Result<Engine, String> {
    let mut c = base_config(Metering::Metered);
    // The instrumented module runs once; compile it quickly.
    c.cranelift_opt_level(wasmtime::OptLevel::None);
    Engine::new(&c).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmetered_code_never_passes_for_metered_code() {
        let all = [
            Metering::Metered,
            Metering::Unmetered,
            Metering::FuelOnly,
            Metering::EpochOnly,
        ];
        let prints: std::collections::BTreeSet<String> =
            all.iter().map(|m| fingerprint_of(*m)).collect();
        assert_eq!(prints.len(), 4, "each kind of code has its own fingerprint");
        assert_eq!(fingerprint_of(Metering::Metered), fingerprint());
        let home = std::path::Path::new("/h");
        assert_ne!(
            super::super::module_cache::compiled_path_of(home, "k", Metering::Metered),
            super::super::module_cache::compiled_path_of(home, "k", Metering::Unmetered),
            "each is cached under its own name"
        );
    }
}

//! One execution of guest code (an "exec", as opposed to a scheduled job
//! run): a fresh instance of the compiled snapshot, the driver's turn, and
//! the outcome, with every way it can end mapped to an error that names its
//! cause.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use rand::{Rng, SeedableRng};
use wasmtime::{Store, Trap};
use wasmtime_wasi::I32Exit;

use super::clock::GuestClock;
use super::engine::EPOCH_TICK;
use super::error::ExecError;
use super::host::{DoorState, ExecInputs, HostState, LogLine, PhaseMarks};
use super::http::fmt_secs;
use super::output::CappedOutput;
use super::secrets::Vault;
use super::{code_cache, guest_sources, instance, prefault, residue, Sandbox};
use crate::cassette::{Interaction, ReplayBook, Scrubber};
use crate::config::{HttpPolicy, PythonSource, SandboxLimits};
use crate::escape;

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub batch: String,
    pub source: PythonSource,
    pub limits: SandboxLimits,
    pub http: HttpPolicy,
    /// Allowlisted environment variables and their values.
    pub env: BTreeMap<String, String>,
    /// Secrets the guest gets as placeholders ([`super::secrets`]).
    pub secrets: Vec<super::secrets::HostSecret>,
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// The guest's random seed; a fresh one when None.
    pub seed: Option<[u8; 32]>,
    /// The guest's wall-clock start (µs since the epoch); now when None.
    pub clock_start_us: Option<i64>,
    /// Deterministic time: every clock read advances 1 µs from the start,
    /// so a replay sees the same times on every run.
    pub virtual_clock: bool,
    /// Replay HTTP from these recorded interactions.
    pub replay: Option<ReplayBook>,
    /// Extra header or variable names whose values are scrubbed from the
    /// recorded interactions.
    pub scrub_names: Vec<String>,
    /// Keep the run's HTTP interactions (scrubbed) for a cassette.
    pub record_interactions: bool,
    /// Run the function as a preprocess over this series (timestamps in µs,
    /// values), instead of as an ingest; `kwargs` are its parameters.
    pub preprocess_input: Option<(Vec<i64>, Vec<f64>)>,
    /// Time the run's phases ([`ExecStats::phases`]); the driver then makes
    /// one more door call.
    pub time_phases: bool,
    /// Residue check: these bytes are looked for in the whole linear memory
    /// once the instance is made, before any guest code runs in it
    /// ([`ExecStats::residue`]).
    pub scan_memory_for: Option<Vec<u8>>,
    /// Page the run's memory out when it ends, before its instance is
    /// freed, as memory pressure would (to swap, where there is swap), so
    /// a residue check can see whether the next run's memory is reset from
    /// swapped pages too.
    pub page_out_after: bool,
}

impl ExecRequest {
    pub fn new(batch: &str, source: PythonSource, limits: SandboxLimits, http: HttpPolicy) -> Self {
        ExecRequest {
            batch: batch.to_string(),
            source,
            limits,
            http,
            env: BTreeMap::new(),
            secrets: Vec::new(),
            kwargs: serde_json::Map::new(),
            seed: None,
            clock_start_us: None,
            virtual_clock: false,
            replay: None,
            scrub_names: Vec::new(),
            preprocess_input: None,
            record_interactions: false,
            time_phases: false,
            scan_memory_for: None,
            page_out_after: false,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExecStats {
    pub fuel_used: u64,
    pub wall: Duration,
    pub instantiate: Duration,
    pub peak_memory_bytes: u64,
    pub http_requests: u64,
    /// The user's code came compiled from an earlier run of the same source.
    pub code_cached: bool,
    /// Where the time went, when the request asked and the run got as far
    /// as its result.
    pub phases: Option<Phases>,
    /// What a run that asked for a residue check or a page-out found.
    pub residue: Option<Box<ResidueCheck>>,
}

/// A residue check's findings ([`ExecRequest::scan_memory_for`],
/// [`ExecRequest::page_out_after`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ResidueCheck {
    /// The linear memory's address: runs at the same address ran in the
    /// same slot.
    pub slot: u64,
    /// Where the bytes looked for were in the fresh instance's memory (an
    /// offset), if they were.
    pub found_at: Option<u64>,
    /// Where they were in the run's memory when it ended (before any
    /// page-out): the check's own proof that the bytes were there to leave.
    pub found_after: Option<u64>,
    /// Pages of the run's memory in swap after its page-out.
    pub swapped_after: Option<u64>,
    /// Why the page-out could not be done.
    pub page_out_error: Option<String>,
}

/// One run's time, step by step, as the host saw it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Phases {
    pub instantiate: Duration,
    /// Instance made → the driver asks for its inputs.
    pub driver_start: Duration,
    /// Inputs handed over → the user's function returned.
    pub user_code: Duration,
    /// Returned → its result frame reaches the door (encoding in the guest).
    pub encode: Duration,
    /// The door reads the frame into Arrow.
    pub decode: Duration,
    /// Result read → the instance's turn ends and it is dropped.
    pub finish: Duration,
    /// Page faults the run's thread took, instantiate to drop.
    pub page_faults: u64,
}

impl Phases {
    fn from_marks(
        made: Instant,
        ready: Instant,
        marks: &PhaseMarks,
        ended: Instant,
        page_faults: u64,
    ) -> Option<Self> {
        let (started, returned) = (marks.started?, marks.returned?);
        let (result_in, result_read) = (marks.result_in?, marks.result_read?);
        Some(Phases {
            instantiate: ready.saturating_duration_since(made),
            driver_start: started.saturating_duration_since(ready),
            user_code: returned.saturating_duration_since(started),
            encode: result_in.saturating_duration_since(returned),
            decode: result_read.saturating_duration_since(result_in),
            finish: ended.saturating_duration_since(result_read),
            page_faults,
        })
    }
}

/// How a run went, with what it printed and logged either way.
#[derive(Debug)]
pub struct ExecReport {
    pub outcome: Result<RecordBatch, ExecError>,
    pub stats: ExecStats,
    pub output: String,
    pub logs: Vec<LogLine>,
    /// Every HTTP request the guest made and its outcome, scrubbed.
    pub interactions: Vec<Interaction>,
    /// The scrubber the run used (it learned secrets from headers), for
    /// writing the rest of a cassette consistently.
    pub scrubber: Scrubber,
    pub seed: [u8; 32],
    pub clock_start_us: i64,
}

impl ExecReport {
    /// A run that ended (or has not got) anywhere yet: `error`, no output.
    pub(super) fn failed(error: ExecError, seed: [u8; 32], clock_start_us: i64) -> ExecReport {
        ExecReport {
            outcome: Err(error),
            stats: ExecStats::default(),
            output: String::new(),
            logs: Vec::new(),
            interactions: Vec::new(),
            scrubber: Scrubber::default(),
            seed,
            clock_start_us,
        }
    }
}

impl Sandbox {
    pub(super) fn execute_here(&self, req: ExecRequest) -> ExecReport {
        let started = Instant::now();
        let seed = req.seed.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            rand::rng().fill_bytes(&mut s);
            s
        });
        let clock_start_us = req.clock_start_us.unwrap_or_else(super::clock::now_us);
        let output = CappedOutput::new(req.limits.max_output_kb.saturating_mul(1024) as usize);
        let mut report =
            ExecReport::failed(ExecError::Internal("not run".into()), seed, clock_start_us);
        let mut store = match self.new_store(&req, &output, seed, clock_start_us) {
            Ok(s) => s,
            Err(e) => {
                report.outcome = Err(e);
                return report;
            }
        };
        let code_key = code_cache::key(&req.batch, &req.source.filename, &req.source.code);
        store.data_mut().door.code.given = self.code.get(&code_key);
        // Only a timed run pays for counting its faults.
        let faults_before = req.time_phases.then(thread_page_faults);
        let t0 = Instant::now();
        let _in_use = crate::telemetry::InstanceInUse::start();
        let instance = self.pre.instantiate(&mut store);
        let prefault = instance
            .as_ref()
            .ok()
            .and_then(|_| self.written.for_run(&code_key));
        if let (Ok(i), Some(stretches)) = (&instance, &prefault) {
            if let Some(m) = i.get_memory(&mut store, "memory") {
                // SAFETY: the live instance's memory, `data_size` bytes.
                unsafe { prefault::populate(m.data_ptr(&store), m.data_size(&store), stretches) };
            }
        }
        let ready = Instant::now();
        report.stats.instantiate = ready.saturating_duration_since(t0);
        let turn = instance.and_then(|i| {
            let memory = i.get_memory(&mut store, "memory");
            let checked = req.scan_memory_for.is_some() || req.page_out_after;
            let mut residue = match (checked, memory) {
                (true, Some(m)) => Some(Box::new(ResidueCheck {
                    slot: m.data_ptr(&store) as u64,
                    found_at: req
                        .scan_memory_for
                        .as_ref()
                        .and_then(|needle| residue::find(m.data(&store), needle)),
                    ..Default::default()
                })),
                _ => None,
            };
            let status = instance::run_turn(&mut store, &i, guest_sources::RUN_TURN);
            let size = memory.map_or(0, |m| m.data_size(&store));
            store.data_mut().limiter.peak_bytes = store.data().limiter.peak_bytes.max(size);
            // A run that was not prefaulted shows what the batch's runs write.
            if prefault.is_none() {
                if let Some(stretches) =
                    memory.and_then(|m| prefault::written(m.data_ptr(&store), size))
                {
                    self.written.learned(code_key, stretches);
                }
            }
            if let (Some(needle), Some(m), Some(r)) =
                (&req.scan_memory_for, memory, residue.as_mut())
            {
                r.found_after = residue::find(m.data(&store), needle);
            }
            if let (true, Some(m), Some(r)) = (req.page_out_after, memory, residue.as_mut()) {
                // SAFETY: the live instance's memory, `size` bytes.
                r.page_out_error = unsafe { residue::page_out(m.data_ptr(&store), size) }
                    .err()
                    .map(|e| e.to_string());
                r.swapped_after = residue::swapped_pages(m.data_ptr(&store), size);
            }
            report.stats.residue = residue;
            status
        });
        report.stats.fuel_used = match self.metering.counts_fuel() {
            true => req
                .limits
                .fuel
                .saturating_sub(store.get_fuel().unwrap_or(0)),
            false => 0,
        };
        let mut state = store.into_data();
        let ended = Instant::now();
        report.stats.code_cached = state.door.code.given.is_some();
        if let Some(code) = state.door.code.taken.take() {
            self.code.put(code_key, code);
        }
        report.stats.wall = ended.saturating_duration_since(started);
        if let Some(before) = faults_before {
            let faults = thread_page_faults().saturating_sub(before);
            report.stats.phases = Phases::from_marks(t0, ready, &state.door.marks, ended, faults);
        }
        report.stats.peak_memory_bytes = state.limiter.peak_bytes as u64;
        report.stats.http_requests = state.door.http.requests_made;
        report.output = escape::terminal_block(&output.text());
        report.logs = state.door.logs.clone();
        report.interactions = state.door.http.interactions.clone();
        report.scrubber = state.door.http.scrubber.clone();
        let vault = state.door.http.take_vault();
        report.outcome = classify(turn, state, &output, &report.output, &req.limits);
        vault.stop_if_held(&mut report);
        report
    }

    fn new_store(
        &self,
        req: &ExecRequest,
        output: &CappedOutput,
        seed: [u8; 32],
        clock_start_us: i64,
    ) -> Result<Store<HostState>, ExecError> {
        let mut b = instance::wasi_builder(output);
        let clock = GuestClock::new(clock_start_us, req.virtual_clock);
        b.wall_clock(clock.clone());
        b.monotonic_clock(clock.clone());
        // Every random byte the guest sees derives from the seed, so a run
        // can be replayed exactly.
        let mut insecure_seed = seed;
        insecure_seed[0] ^= 0x5a;
        b.secure_random(rand::rngs::StdRng::from_seed(seed));
        b.insecure_random(rand::rngs::StdRng::from_seed(insecure_seed));
        b.insecure_random_seed(u128::from_le_bytes(
            seed[..16].try_into().unwrap_or([0; 16]),
        ));
        let limits = req.limits.clone();
        let vault =
            Vault::new(&req.secrets, &seed, req.replay.is_some()).map_err(ExecError::Secret)?;
        let placeholders = vault.placeholders();
        let mut env = req.env.clone();
        env.extend(placeholders.clone());
        let inputs = ExecInputs {
            batch: req.batch.clone(),
            source: req.source.code.clone(),
            filename: req.source.filename.clone(),
            function: req.source.function.clone(),
            kwargs: req.kwargs.clone(),
            env,
            secrets: placeholders.into_values().collect(),
            mode: if req.preprocess_input.is_some() {
                "preprocess"
            } else {
                "ingest"
            },
            time_phases: req.time_phases,
            series: req.preprocess_input.as_ref().map(|(ts, v)| {
                // NaN is not JSON: missing values travel as null.
                let values: Vec<Option<f64>> =
                    v.iter().map(|x| x.is_finite().then_some(*x)).collect();
                serde_json::json!({"timestamps_us": ts, "values": values})
            }),
        };
        let mut state = HostState::new(
            b.build_p1(),
            clock,
            output.clone(),
            (limits.memory_mb.saturating_mul(1 << 20)) as usize,
            DoorState::open(inputs, req.http.clone(), limits.clone()),
        );
        state.door.http.set_cassette(
            req.replay.clone(),
            req.record_interactions,
            Scrubber::new(&req.env, &req.scrub_names).with_markers(vault.markers()),
        );
        state.door.http.set_vault(vault);
        let mut store = Store::new(self.pre.module().engine(), state);
        store.limiter(|s| &mut s.limiter);
        if self.metering.counts_fuel() {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| ExecError::Internal(format!("{e:#}")))?;
        }
        if self.metering.checks_epochs() {
            let ticks = (limits.timeout_s / EPOCH_TICK.as_secs_f64())
                .ceil()
                .max(1.0) as u64;
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        Ok(store)
    }
}

/// Page faults (minor and major) this thread has taken so far.
fn thread_page_faults() -> u64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrusage writes one rusage into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == 0 {
            return (usage.ru_minflt + usage.ru_majflt).max(0) as u64;
        }
    }
    0
}

/// `shown` is the guest's output, already cleaned for display.
fn classify(
    turn: wasmtime::Result<i32>,
    state: HostState,
    output: &CappedOutput,
    shown: &str,
    limits: &SandboxLimits,
) -> Result<RecordBatch, ExecError> {
    let door = state.door;
    if let Some(fatal) = door.fatal {
        return Err(fatal);
    }
    let memory_limit = |detail: String| ExecError::Limit {
        limit: "ingest_memory_mb",
        value: limits.memory_mb.to_string(),
        detail,
    };
    let status = match turn {
        Ok(status) => status,
        Err(e) => {
            if output.overflowed() {
                return Err(super::host::output_limit(limits));
            }
            return Err(match e.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => ExecError::Limit {
                    limit: "ingest_fuel",
                    value: limits.fuel.to_string(),
                    detail: String::new(),
                },
                Some(Trap::Interrupt) => ExecError::Limit {
                    limit: "ingest_timeout_s",
                    value: fmt_secs(limits.timeout_s),
                    detail: String::new(),
                },
                Some(Trap::StackOverflow) => {
                    ExecError::StackOverflow(super::engine::MAX_WASM_STACK >> 20)
                }
                _ if state.limiter.denied => memory_limit(String::new()),
                _ => match e.downcast_ref::<I32Exit>() {
                    Some(exit) => {
                        ExecError::Crashed(format!("the guest exited with status {}", exit.0))
                    }
                    None => ExecError::Crashed(format!("{e:#}{}", output_tail(shown))),
                },
            });
        }
    };
    if let Some(err) = door.guest_error {
        let message = escape::terminal_block(&err.message);
        if state.limiter.denied {
            // Whatever the code made of the refused allocation (a swallowed
            // MemoryError, a None used later), the cause is the cap.
            return Err(memory_limit(if err.type_name == "MemoryError" {
                String::new()
            } else {
                format!(
                    "an allocation was refused; the code then failed with {}: {}",
                    escape::terminal_line(&err.type_name),
                    escape::terminal_line(&message)
                )
            }));
        }
        if err.kind == "result_type" || err.kind == "result" {
            return Err(ExecError::BadResult(escape::terminal_line(&message)));
        }
        return Err(ExecError::Exception {
            type_name: escape::terminal_line(&err.type_name),
            message,
            traceback: escape::terminal_block(&err.traceback),
        });
    }
    if let Some(batch) = door.result {
        return Ok(batch);
    }
    if state.limiter.denied {
        return Err(memory_limit(String::new()));
    }
    Err(ExecError::Crashed(format!(
        "the driver ended with status {status} and no result{}",
        output_tail(shown)
    )))
}

fn output_tail(text: &str) -> String {
    if text.trim().is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    // Indented: guest lines must not pass for the host's own.
    let tail: Vec<String> = lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect();
    let tail = tail.join("\n");
    format!("; guest output:\n{tail}")
}

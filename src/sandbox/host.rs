//! The per-store context (one per run, as in wasmtime's embedding examples):
//! WASI, the memory limiter, and the door's state; plus `host::call`, the
//! function behind the guest's `_host.call`.

use std::time::Instant;

use arrow::record_batch::RecordBatch;
use wasmtime::{Caller, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::clock::GuestClock;
use super::code_cache;
use super::door::{self, GuestError, Op};
use super::error::ExecError;
use super::http::{self, HttpGate, Reply};
use super::output::CappedOutput;
use super::result_frame;
use crate::config::{HttpPolicy, SandboxLimits};
use crate::escape;

/// Return codes of `host::call`, as the guest's `_host` module reads them.
const CALL_OK: i32 = 0;
const CALL_HOST_FAULT: i32 = -2;

/// Guest log lines kept per run (further lines are counted, not kept).
const MAX_LOG_LINES: usize = 10_000;

/// Characters of one log record kept (the rest is cut, marked with `…`).
const MAX_LOG_CHARS: usize = 4096;

/// The output budget is spent: stdout, stderr and log records together.
pub fn output_limit(limits: &SandboxLimits) -> ExecError {
    ExecError::Limit {
        limit: "ingest_max_output_kb",
        value: limits.max_output_kb.to_string(),
        detail: "stdout, stderr and log records together".into(),
    }
}

/// What the guest asks for with `start`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecInputs {
    pub batch: String,
    pub source: String,
    pub filename: String,
    pub function: String,
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    pub env: std::collections::BTreeMap<String, String>,
    /// The placeholders among `env`'s values, for the driver's guard on
    /// hashing them ([`super::secrets`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// `ingest`, or `preprocess` with `series` as the metric's input.
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<serde_json::Value>,
    /// Ask the driver to say when the user's function returns, so the run's
    /// phases can be timed (`sandstack bench`).
    #[serde(rename = "phases", skip_serializing_if = "std::ops::Not::not")]
    pub time_phases: bool,
}

/// The user's compiled code, either way between host and guest.
#[derive(Debug, Default)]
pub struct CodeHandOver {
    /// Given to the driver with its inputs (it skips the compile).
    pub given: Option<std::sync::Arc<[u8]>>,
    /// Handed over by the driver, to keep for later runs.
    pub taken: Option<Vec<u8>>,
    /// The driver's one hand-over has come (empty when its code was too
    /// big to keep); any later one is the user's code and is ignored.
    pub closed: bool,
}

/// When the host saw each step of a run (for [`super::exec::Phases`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseMarks {
    /// The driver asked for its inputs.
    pub started: Option<Instant>,
    /// The user's function returned (only when the phases are timed).
    pub returned: Option<Instant>,
    /// The result frame arrived at the door.
    pub result_in: Option<Instant>,
    /// The result frame was read into Arrow.
    pub result_read: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Caps linear memory at `ingest_memory_mb`. A refused growth makes the
/// guest's allocator fail, which CPython raises as `MemoryError`; `denied`
/// lets the host name the limit whatever the guest made of it.
pub struct MemoryLimiter {
    pub cap_bytes: usize,
    pub denied: bool,
    pub peak_bytes: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired).max(current);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

pub struct DoorState {
    pub inputs: ExecInputs,
    pub limits: SandboxLimits,
    pub deadline: Instant,
    pub http: HttpGate,
    pub logs: Vec<LogLine>,
    pub logs_dropped: usize,
    pub started: bool,
    pub marks: PhaseMarks,
    pub code: CodeHandOver,
    pub result: Option<RecordBatch>,
    pub guest_error: Option<GuestError>,
    /// Set when the host stops the run; the trap that follows is this.
    pub fatal: Option<ExecError>,
    /// When false (while building the snapshot) every call answers "no host".
    pub open: bool,
}

impl DoorState {
    /// The door of a run.
    pub fn open(inputs: ExecInputs, http: HttpPolicy, limits: SandboxLimits) -> Self {
        Self::new(inputs, http, limits, true)
    }

    /// A door that answers every call with "no host" (while the snapshot
    /// is built).
    pub fn closed() -> Self {
        let inputs = ExecInputs {
            batch: "(snapshot)".into(),
            source: String::new(),
            filename: String::new(),
            function: String::new(),
            kwargs: Default::default(),
            env: Default::default(),
            secrets: Vec::new(),
            mode: "ingest",
            series: None,
            time_phases: false,
        };
        Self::new(
            inputs,
            HttpPolicy::default(),
            SandboxLimits::default(),
            false,
        )
    }

    fn new(inputs: ExecInputs, http: HttpPolicy, limits: SandboxLimits, open: bool) -> Self {
        DoorState {
            inputs,
            http: HttpGate::new(http, limits.clone()),
            deadline: Instant::now() + std::time::Duration::from_secs_f64(limits.timeout_s),
            limits,
            logs: Vec::new(),
            logs_dropped: 0,
            started: false,
            marks: PhaseMarks::default(),
            code: CodeHandOver::default(),
            result: None,
            guest_error: None,
            fatal: None,
            open,
        }
    }
}

impl HostState {
    /// A store's context: `memory_cap_bytes` bounds the guest's linear
    /// memory.
    pub fn new(
        wasi: WasiP1Ctx,
        clock: GuestClock,
        output: CappedOutput,
        memory_cap_bytes: usize,
        door: DoorState,
    ) -> Self {
        HostState {
            wasi,
            limiter: MemoryLimiter {
                cap_bytes: memory_cap_bytes,
                denied: false,
                peak_bytes: 0,
            },
            door,
            clock,
            output,
        }
    }
}

pub struct HostState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryLimiter,
    pub door: DoorState,
    /// The clocks WASI reads, for waits against them ([`super::poll`]).
    pub clock: GuestClock,
    /// stdout and stderr; log records are charged to the same budget.
    pub output: CappedOutput,
}

/// Whether `n` bytes at `at` lie within guest memory `mem`.
pub(super) fn fits(mem: &[u8], at: usize, n: usize) -> bool {
    at.checked_add(n).is_some_and(|end| end <= mem.len())
}

/// Trap message used after `fatal` is set.
pub const STOP_TRAP: &str = "sandstack: run stopped by the host";

pub(super) fn stop(state: &mut HostState, error: ExecError) -> wasmtime::Error {
    if state.door.fatal.is_none() {
        state.door.fatal = Some(error);
    }
    wasmtime::Error::msg(STOP_TRAP)
}

/// `host::call(ptr, len, out_ptr_ptr, out_len_ptr) -> i32`.
pub fn door_call(
    mut caller: Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    out_ptr_ptr: i32,
    out_len_ptr: i32,
) -> wasmtime::Result<i32> {
    if !caller.data().door.open {
        return Ok(-1);
    }
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Ok(CALL_HOST_FAULT);
    };
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let max_frame = caller
        .data()
        .door
        .limits
        .max_result_kb
        .saturating_mul(1024)
        .saturating_add(door::MAX_HEADER as u64) as usize;
    if len > max_frame {
        let limits = caller.data().door.limits.clone();
        return Err(stop(
            caller.data_mut(),
            ExecError::Limit {
                limit: "ingest_max_result_kb",
                value: limits.max_result_kb.to_string(),
                detail: format!("the guest sent a {} KiB message", len / 1024),
            },
        ));
    }
    // The frame is read where it lies in guest memory: nothing the guest
    // sends is copied before its op is known and charged to its budget.
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let Some(frame) = ptr.checked_add(len).and_then(|end| data.get(ptr..end)) else {
        return Ok(CALL_HOST_FAULT);
    };
    let reply = match handle(state, frame) {
        Ok(reply) => reply,
        Err(e) => return Err(stop(state, e)),
    };
    // Reply memory is allocated by the guest's own allocator.
    let alloc = caller
        .get_export("host_alloc")
        .and_then(|e| e.into_func())
        .and_then(|f| f.typed::<i32, i32>(&caller).ok());
    let Some(alloc) = alloc else {
        return Ok(CALL_HOST_FAULT);
    };
    let p = alloc.call(&mut caller, reply.len() as i32)? as u32 as usize;
    let mem = memory.data_mut(&mut caller);
    let (opp, olp) = (out_ptr_ptr as u32 as usize, out_len_ptr as u32 as usize);
    if p == 0 || !fits(mem, p, reply.len()) || !fits(mem, opp, 4) || !fits(mem, olp, 4) {
        return Ok(CALL_HOST_FAULT);
    }
    mem[p..p + reply.len()].copy_from_slice(&reply);
    mem[opp..opp + 4].copy_from_slice(&(p as u32).to_le_bytes());
    mem[olp..olp + 4].copy_from_slice(&(reply.len() as u32).to_le_bytes());
    Ok(CALL_OK)
}

/// Answer one frame, or stop the run.
pub(super) fn handle(state: &mut HostState, frame: &[u8]) -> Result<Vec<u8>, ExecError> {
    let request = door::decode(frame)
        .map_err(|e| ExecError::Protocol(escape::terminal_line(&e.to_string())))?;
    let door = &mut state.door;
    match request.op {
        Op::Start { .. } => start(door),
        Op::Log { level, message } => {
            // Charged before the host copies or prints any of it.
            if !state.output.charge(level.len() + message.len()) {
                return Err(output_limit(&door.limits));
            }
            let level = escape::terminal_line(&escape::truncate(&level, 16));
            // A value the scrub missed is not printed to the host's log either.
            let message = door.http.scrub_log(&message);
            let message = escape::terminal_line(&escape::truncate(&message, MAX_LOG_CHARS));
            tracing::info!(target: "sandstack::guest", batch = %door.inputs.batch, "[{level}] {message}");
            if door.logs.len() < MAX_LOG_LINES {
                door.logs.push(LogLine { level, message });
            } else {
                door.logs_dropped += 1;
            }
            Ok(door::ok(serde_json::json!({}), &[]))
        }
        Op::Http(req) => {
            let reply = door.http.execute(&req, request.body, door.deadline)?;
            if Instant::now() >= door.deadline {
                return Err(ExecError::Limit {
                    limit: "ingest_timeout_s",
                    value: http::fmt_secs(door.limits.timeout_s),
                    detail: String::new(),
                });
            }
            Ok(match reply {
                Reply::Response(x) => door::ok(
                    serde_json::json!({
                        "status": x.status,
                        "reason": x.reason,
                        "headers": x.response_headers,
                        "url": x.final_url,
                    }),
                    &x.response_body,
                ),
                Reply::Failed { kind, message } => door::refuse(kind, &message),
            })
        }
        Op::Returned {} => {
            door.marks.returned.get_or_insert_with(Instant::now);
            Ok(door::ok(serde_json::json!({}), &[]))
        }
        Op::Compiled {} => {
            // Only the driver's hand-over, which precedes the user's code:
            // the first, and none in a run that was given its code.
            let drivers = door.code.given.is_none() && !door.code.closed;
            door.code.closed = true;
            let body = request.body;
            if drivers && !body.is_empty() && body.len() <= code_cache::MAX_ENTRY_BYTES {
                door.code.taken = Some(body.to_vec());
            }
            Ok(door::ok(serde_json::json!({}), &[]))
        }
        Op::Result(header) => {
            door.marks.result_in = Some(Instant::now());
            if door.result.is_some() {
                return Err(ExecError::Protocol("`result` sent twice".into()));
            }
            if header.rows > door.limits.max_rows {
                return Err(ExecError::Limit {
                    limit: "ingest_max_rows",
                    value: door.limits.max_rows.to_string(),
                    detail: format!("returned {} rows", header.rows),
                });
            }
            let batch = result_frame::read(&header, request.body)
                .map_err(|e| ExecError::Protocol(escape::terminal_line(&e.to_string())))?;
            door.result = Some(batch);
            door.marks.result_read = Some(Instant::now());
            Ok(door::ok(serde_json::json!({}), &[]))
        }
        Op::Error(err) => {
            door.guest_error = Some(err);
            Ok(door::ok(serde_json::json!({}), &[]))
        }
    }
}

/// The run's inputs, once, with its compiled code when the host kept it.
fn start(door: &mut DoorState) -> Result<Vec<u8>, ExecError> {
    if door.started {
        return Err(ExecError::Protocol("`start` sent twice".into()));
    }
    door.started = true;
    door.marks.started = Some(Instant::now());
    let mut inputs =
        serde_json::to_value(&door.inputs).map_err(|e| ExecError::Internal(e.to_string()))?;
    let Some(map) = inputs.as_object_mut() else {
        return Err(ExecError::Internal(
            "the run's inputs are not an object".into(),
        ));
    };
    if let Some(code) = &door.code.given {
        map.insert("code".into(), "marshal".into());
        return Ok(door::ok(inputs, code));
    }
    // What the driver may hand over: within the frame limit too.
    let room =
        (door.limits.max_result_kb.saturating_mul(1024) as usize).min(code_cache::MAX_ENTRY_BYTES);
    map.insert("code_room".into(), room.into());
    Ok(door::ok(inputs, &[]))
}

/// The host side of the door, driven with frames as the guest would send
/// them, without a guest.
#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{HttpPolicy, SandboxLimits};

    pub(in crate::sandbox) fn state(limits: SandboxLimits, http: HttpPolicy) -> HostState {
        let inputs = ExecInputs {
            batch: "b".into(),
            source: "def ingest(): pass".into(),
            filename: "<b>".into(),
            function: "ingest".into(),
            kwargs: Default::default(),
            env: Default::default(),
            secrets: Vec::new(),
            mode: "ingest",
            series: None,
            time_phases: false,
        };
        let output = CappedOutput::new(limits.max_output_kb as usize * 1024);
        HostState::new(
            wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
            GuestClock::new(0, false),
            output,
            64 << 20,
            DoorState::open(inputs, http, limits),
        )
    }

    fn frame(header: serde_json::Value, body: &[u8]) -> Vec<u8> {
        door::encode(&header, body)
    }

    fn reply_header(reply: &[u8]) -> serde_json::Value {
        let n = u32::from_le_bytes(reply[4..8].try_into().expect("4 bytes")) as usize;
        serde_json::from_slice(&reply[8..8 + n]).expect("json header")
    }

    #[test]
    fn start_answers_the_inputs_once() {
        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        let start = frame(serde_json::json!({"op": "start", "v": 1}), b"");
        let h = reply_header(&handle(&mut s, &start).expect("start"));
        assert_eq!(
            (h["ok"].clone(), h["function"].clone()),
            (true.into(), "ingest".into())
        );
        let again = handle(&mut s, &start).unwrap_err();
        assert_eq!(
            again.to_string(),
            ExecError::Protocol("`start` sent twice".into()).to_string()
        );
    }

    #[test]
    fn phase_marks_follow_the_door_calls_and_a_repeated_returned_changes_nothing() {
        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        handle(
            &mut s,
            &frame(serde_json::json!({"op": "start", "v": 1}), b""),
        )
        .expect("start");
        let returned = frame(serde_json::json!({"op": "returned", "v": 1}), b"");
        handle(&mut s, &returned).expect("returned");
        let first = s.door.marks.returned;
        handle(&mut s, &returned).expect("a second returned is answered");
        assert_eq!(s.door.marks.returned, first, "the first one counts");
        let result = frame(
            serde_json::json!({"op": "result", "v": 1, "format": "sscf1", "rows": 0, "columns": []}),
            b"",
        );
        handle(&mut s, &result).expect("result");
        let m = s.door.marks;
        let (started, returned) = (m.started.expect("started"), m.returned.expect("returned"));
        let (result_in, read) = (m.result_in.expect("in"), m.result_read.expect("read"));
        assert!(started <= returned && returned <= result_in && result_in <= read);
    }

    #[test]
    fn only_the_first_hand_over_of_a_run_not_given_its_code_is_kept() {
        let compiled = |body: &[u8]| frame(serde_json::json!({"op": "compiled", "v": 1}), body);
        let start = frame(serde_json::json!({"op": "start", "v": 1}), b"");
        let limits = SandboxLimits {
            max_result_kb: 1,
            ..Default::default()
        };
        let mut s = state(limits, HttpPolicy::default());
        let h = reply_header(&handle(&mut s, &start).expect("start"));
        assert_eq!(h["code_room"], 1024, "the frame limit bounds the hand-over");
        handle(&mut s, &compiled(b"driver")).expect("kept");
        handle(&mut s, &compiled(b"user code posing as the driver")).expect("answered");
        assert_eq!(s.door.code.taken.as_deref(), Some(&b"driver"[..]));

        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        s.door.code.given = Some(std::sync::Arc::from(&b"kept code"[..]));
        let reply = handle(&mut s, &start).expect("start");
        assert_eq!(reply_header(&reply)["code"], "marshal");
        assert!(
            reply.ends_with(b"kept code"),
            "the code is the reply's body"
        );
        handle(&mut s, &compiled(b"other code")).expect("answered");
        assert!(
            s.door.code.taken.is_none(),
            "a run given its code hands none over"
        );

        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        let big = vec![0u8; code_cache::MAX_ENTRY_BYTES + 1];
        handle(&mut s, &compiled(&big)).expect("answered");
        assert!(s.door.code.taken.is_none(), "oversized code is not kept");

        // The driver's code was too big to keep: it says so with an empty
        // hand-over, and the user's code cannot fill the gap after it.
        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        handle(&mut s, &compiled(b"")).expect("the driver's empty hand-over");
        handle(&mut s, &compiled(b"user code")).expect("answered");
        assert!(
            s.door.code.taken.is_none(),
            "nothing is kept after the driver's turn"
        );
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        assert!(matches!(
            handle(&mut s, b"not a frame"),
            Err(ExecError::Protocol(_))
        ));
        let unknown = frame(serde_json::json!({"op": "format_disk", "v": 1}), b"");
        assert!(matches!(
            handle(&mut s, &unknown),
            Err(ExecError::Protocol(_))
        ));
    }

    #[test]
    fn log_records_are_escaped_and_charged_to_the_output_budget() {
        let limits = SandboxLimits {
            max_output_kb: 1,
            ..Default::default()
        };
        let mut s = state(limits, HttpPolicy::default());
        let log = |m: &str| {
            frame(
                serde_json::json!({"op": "log", "v": 1, "level": "info", "message": m}),
                b"",
            )
        };
        handle(&mut s, &log("line one\nline two \u{1b}[31m")).expect("logged");
        assert_eq!(s.door.logs.len(), 1);
        let kept = &s.door.logs[0].message;
        assert!(!kept.contains('\n') && !kept.contains('\u{1b}'), "{kept:?}");
        let big = "x".repeat(2048);
        let err = handle(&mut s, &log(&big)).unwrap_err();
        assert!(err.to_string().contains("ingest_max_output_kb"), "{err}");
    }

    #[test]
    fn a_result_over_max_rows_stops_before_it_is_read() {
        let limits = SandboxLimits {
            max_rows: 10,
            ..Default::default()
        };
        let mut s = state(limits, HttpPolicy::default());
        let result = frame(
            serde_json::json!({"op": "result", "v": 1, "format": "columns", "rows": 11, "columns": []}),
            b"",
        );
        let err = handle(&mut s, &result).unwrap_err();
        assert!(err.to_string().contains("ingest_max_rows"), "{err}");
        assert!(s.door.result.is_none());
    }

    #[test]
    fn http_to_loopback_is_refused_by_the_policy() {
        let mut s = state(SandboxLimits::default(), HttpPolicy::default());
        let req = frame(
            serde_json::json!({"op": "http", "v": 1, "method": "GET", "url": "http://127.0.0.1:9/"}),
            b"",
        );
        let err = handle(&mut s, &req).unwrap_err();
        assert!(matches!(err, ExecError::Policy { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }

    #[test]
    fn http_outside_the_allowlist_is_refused_before_any_request() {
        let http = HttpPolicy {
            allow_hosts: vec!["api.example.com".into()],
            ..Default::default()
        };
        let mut s = state(SandboxLimits::default(), http);
        let req = frame(
            serde_json::json!({"op": "http", "v": 1, "method": "GET", "url": "http://elsewhere.example.org/"}),
            b"",
        );
        let err = handle(&mut s, &req).unwrap_err();
        assert!(err.to_string().contains("elsewhere.example.org"), "{err}");
        assert_eq!(s.door.http.requests_made, 0);
    }
}

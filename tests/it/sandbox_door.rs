//! User code can reach the door directly (`import _host`): malformed,
//! oversized, forged and out-of-order frames end the run with a clear error.

use crate::support::{expect_failure, python_batch};

fn code(body: &str) -> String {
    format!("import pandas as pd\nimport _host\nimport _sandstack_door as door\n\ndef ingest():\n{body}\n")
}

#[test]
fn a_garbage_frame_is_a_protocol_error() {
    let (_f, spec) = python_batch("junk", &code("    _host.call(b'junk')"), "");
    assert_eq!(
        expect_failure(&spec),
        "batch junk: the guest broke the door protocol: frame shorter than its 8-byte preamble"
    );
}

#[test]
fn an_oversized_frame_hits_the_result_size_cap() {
    let (_f, spec) = python_batch(
        "huge",
        &code("    _host.call(b'SSD1' + b'x' * (2 * 1024 * 1024))"),
        "ingest_max_result_kb: 64",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch huge: ingest exceeded ingest_max_result_kb=64 (the guest sent a 2048 KiB message)"
    );
}

#[test]
fn a_forged_result_with_hostile_offsets_is_refused() {
    let body = "    cols = [{'name': 'metric_value', 'type': 'f64', 'buffers': [[2**40, 8]]}]\n    door.call('result', {'format': 'sscf1', 'rows': 1, 'columns': cols}, b'')";
    let (_f, spec) = python_batch("forged", &code(body), "");
    assert_eq!(
        expect_failure(&spec),
        "batch forged: the guest broke the door protocol: malformed result frame: column `metric_value` buffer 0 runs past the frame"
    );
}

#[test]
fn replaying_start_is_refused() {
    let (_f, spec) = python_batch("restart", &code("    door.call('start')"), "");
    assert_eq!(
        expect_failure(&spec),
        "batch restart: the guest broke the door protocol: `start` sent twice"
    );
}

#[test]
fn unknown_ops_are_refused() {
    let (_f, spec) = python_batch("shell", &code("    door.call('shell', {'cmd': 'id'})"), "");
    let err = expect_failure(&spec);
    assert!(
        err.starts_with("batch shell: the guest broke the door protocol: frame header is not valid JSON for op: unknown variant `shell`"),
        "{err}"
    );
}

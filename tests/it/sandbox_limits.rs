//! Hostile ingest code: every limit holds, the error names it, and nothing
//! is stored.

use sandstack::store::Store;

use crate::support::{expect_failure, python_batch, run_ingest};

const OK_FRAME: &str = "pd.DataFrame({'metric_name': ['m'], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})";

fn body(lines: &str) -> String {
    format!("import pandas as pd\n\ndef ingest():\n{lines}\n    return {OK_FRAME}\n")
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let (_f, spec) = python_batch(
        "spin",
        &body("    while True:\n        pass"),
        "ingest_fuel: 200000000",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch spin: ingest exceeded ingest_fuel=200000000"
    );
}

#[test]
fn an_infinite_loop_with_ample_fuel_hits_the_wall_clock() {
    let (_f, spec) = python_batch(
        "spin_slow",
        &body("    while True:\n        pass"),
        "ingest_fuel: 100000000000000\ningest_timeout_s: 1",
    );
    let started = std::time::Instant::now();
    assert_eq!(
        expect_failure(&spec),
        "batch spin_slow: ingest exceeded ingest_timeout_s=1"
    );
    crate::support::assert_stopped_in_time(started, std::time::Duration::from_secs(1), "the loop");
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let (_f, spec) = python_batch(
        "bomb",
        &body("    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))"),
        "ingest_memory_mb: 400",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch bomb: ingest exceeded ingest_memory_mb=400"
    );
}

#[test]
fn fifty_megabytes_of_stdout_hit_the_output_cap() {
    let (_f, spec) = python_batch(
        "loud",
        &body("    print('x' * 50_000_000)"),
        "ingest_max_output_kb: 64",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch loud: ingest exceeded ingest_max_output_kb=64 (stdout, stderr and log records together)"
    );
}

#[test]
fn deep_recursion_is_stopped_cleanly() {
    let code = body("    import sys\n    sys.setrecursionlimit(10**7)\n    def down(n):\n        return down(n + 1) + 1\n    down(0)");
    let (_f, spec) = python_batch("deep", &code, "");
    assert_eq!(
        expect_failure(&spec),
        "batch deep: ingest exceeded the guest's 8 MiB stack: recursion too deep (make it iterative or shallower)"
    );
}

#[test]
fn the_host_filesystem_is_out_of_reach() {
    let code = body(
        "    for path in ['/etc/passwd', '/usr/local/lib/../../../etc/passwd', '/proc/self/environ']:\n        try:\n            open(path).read()\n        except OSError:\n            continue\n        raise AssertionError('read ' + path)\n    open('/etc/passwd').read()",
    );
    let (_f, spec) = python_batch("files", &code, "");
    let err = expect_failure(&spec);
    assert!(
        err.starts_with(
            "batch files: FileNotFoundError: [Errno 44] No such file or directory: '/etc/passwd'"
        ),
        "{err}"
    );
    assert!(!err.contains("root:x:0:0"), "{err}");
}

/// A run has no file system at all; the standard library, which lives in
/// the snapshot's memory, still imports and reads its data files.
#[test]
fn a_run_has_no_file_system_but_the_standard_library_reads() {
    let code = "import os\nimport pandas as pd\n\ndef ingest():\n    for d in ['/', '/usr/local/lib', '/tmp', '.']:\n        try:\n            os.listdir(d)\n        except OSError:\n            continue\n        raise AssertionError('listed ' + d)\n    import difflib, fractions, xml.dom.minidom, zoneinfo\n    doc = xml.dom.minidom.parseString('<v>1</v>')\n    value = float(doc.documentElement.firstChild.data) + float(fractions.Fraction(1, 2))\n    summer = pd.Timestamp('2026-07-01 12:00', tz=zoneinfo.ZoneInfo('Europe/Paris'))\n    value += summer.utcoffset().total_seconds() / 3600\n    value += difflib.SequenceMatcher(None, 'abc', 'abd').ratio()\n    return pd.DataFrame({'metric_timestamp': [pd.Timestamp.now(tz='UTC')], 'metric_name': ['v'], 'metric_value': [value]})\n";
    let (_f, spec) = python_batch("nofs", code, "");
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(&spec, &mut store, &[]).expect("runs");
    assert_eq!(report.stored, 1);
    let value: f64 = crate::support::duck(&store)
        .query_row("SELECT metric_value FROM metrics", [], |r| r.get(0))
        .expect("value");
    // 1 + 0.5 + 2 hours of summer time in Paris + 2/3 similarity.
    assert!((value - (3.5 + 2.0 / 3.0)).abs() < 1e-3, "{value}");
}

#[test]
fn writing_files_is_refused() {
    let code = body("    open('/usr/local/lib/python315.zip', 'wb').write(b'x')");
    let (_f, spec) = python_batch("writes", &code, "");
    let err = expect_failure(&spec);
    assert!(
        err.starts_with("batch writes: PermissionError: [Errno 30] Read-only file system: '/usr/local/lib/python315.zip'\n"),
        "{err}"
    );
    // Nowhere else either: each write fails with its own error.
    let code = "def ingest():\n    seen = []\n    for path in ['/tmp/x', 'x', '/usr/local/lib/python3.15/x.py', '/dev/null']:\n        try:\n            open(path, 'wb').write(b'x')\n        except OSError as e:\n            seen.append(f'{path}: {type(e).__name__} {e.errno}')\n        else:\n            seen.append(f'{path}: WRITTEN')\n    raise RuntimeError('; '.join(seen))\n";
    let (_f, spec) = python_batch("writes_anywhere", code, "");
    let err = expect_failure(&spec);
    // WASI's errno: 44 no such file (there is no directory to write in),
    // 8 a bad descriptor (the standard library's folder is in memory).
    assert_eq!(
        err.lines().next(),
        Some("batch writes_anywhere: RuntimeError: /tmp/x: FileNotFoundError 44; x: FileNotFoundError 44; /usr/local/lib/python3.15/x.py: OSError 8; /dev/null: FileNotFoundError 44"),
        "{err}"
    );
}

#[test]
fn returning_a_list_is_refused() {
    let (_f, spec) = python_batch("list", "def ingest():\n    return [1, 2, 3]\n", "");
    assert_eq!(
        expect_failure(&spec),
        "batch list: ingest() returned list, expected a pandas DataFrame"
    );
}

#[test]
fn missing_columns_are_refused() {
    let code = "import pandas as pd\n\ndef ingest():\n    return pd.DataFrame({'metric_name': ['a'], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})\n";
    let (_f, spec) = python_batch("cols", code, "");
    assert_eq!(
        expect_failure(&spec),
        "batch cols: ingest result is missing required column(s) metric_value; found columns: metric_name, metric_timestamp. Return a DataFrame with metric_name, metric_value and metric_timestamp"
    );
}

#[test]
fn non_numeric_values_are_refused() {
    let code = "import pandas as pd\n\ndef ingest():\n    return pd.DataFrame({'metric_name': ['a', 'b'], 'metric_value': [1.0, 'lots'], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')] * 2})\n";
    let (_f, spec) = python_batch("nonnum", code, "");
    assert_eq!(
        expect_failure(&spec),
        "batch nonnum: metric_value must be numeric: row 1 (metric `b`) has \"lots\""
    );
}

#[test]
fn zero_rows_are_refused() {
    let code = "import pandas as pd\n\ndef ingest():\n    return pd.DataFrame(columns=['metric_name', 'metric_value', 'metric_timestamp'])\n";
    let (_f, spec) = python_batch("empty", code, "");
    assert_eq!(
        expect_failure(&spec),
        "batch empty: ingest returned no rows: return at least one row with metric_name, metric_value and metric_timestamp"
    );
}

#[test]
fn more_rows_than_allowed_are_refused() {
    let code = "import pandas as pd\n\ndef ingest():\n    n = 50\n    return pd.DataFrame({'metric_name': [f'm{i}' for i in range(n)], 'metric_value': range(n), 'metric_timestamp': pd.Timestamp.now(tz='UTC')})\n";
    let (_f, spec) = python_batch("many", code, "ingest_max_rows: 10");
    assert_eq!(
        expect_failure(&spec),
        "batch many: ingest exceeded ingest_max_rows=10 (returned 50 rows)"
    );
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let code = "import pandas as pd\n\ndef ingest(:\n    return None\n";
    let (_f, spec) = python_batch("syntax", code, "");
    let err = expect_failure(&spec);
    assert!(err.starts_with("batch syntax: SyntaxError: "), "{err}");
    assert!(err.contains("File \"b/syntax.py\", line 3"), "{err}");
    assert!(err.contains("def ingest(:"), "{err}");
}

#[test]
fn a_missing_function_says_what_is_defined() {
    let (_f, spec) = python_batch("nofn", "def fetch():\n    return 1\n", "");
    assert_eq!(
        expect_failure(&spec),
        "batch nofn: NameError: the ingest code defines no function `ingest()` (it defines: fetch)"
    );
}

#[test]
fn a_failing_batch_does_not_affect_the_next() {
    let (_f, bad) = python_batch(
        "bad",
        &body("    while True:\n        pass"),
        "ingest_fuel: 100000000",
    );
    let (_g, good) = python_batch("good", &body(""), "");
    expect_failure(&bad);
    let mut store = sandstack::store::Store::in_memory().expect("store");
    let r = crate::support::run_ingest(&good, &mut store, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(r.stored, 1);
}

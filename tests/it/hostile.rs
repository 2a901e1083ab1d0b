//! The holes a hostile batch looked for, one class per section: waits that
//! would outlive the deadline, the host's own addresses and IPv6 forms of
//! private ones, the log side door, guest data the host must not trust,
//! terminal escapes, replays, misleading errors, names pasted into SQL and
//! paths, and the dashboard's Host header. Each test asserts the exact
//! error, a bounded time and that nothing was stored.

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use sandstack::cassette::{self, Cassette, RecordMode};
use sandstack::jobs::ingest::recording::CassetteOptions;
use sandstack::jobs::ingest::{self, IngestOptions};
use sandstack::store::Store;

use crate::support::{
    assert_stopped_in_time, expect_failure, key, python_batch, run_ingest, start_sandstack_args,
    terminate, wait_for_ingests, Folder, TestSandbox, TestServer,
};

const FRAME: &str = "pd.DataFrame({'metric_name': ['m'], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})";

fn body(lines: &str) -> String {
    format!("import time\nimport pandas as pd\n\ndef ingest():\n{lines}\n    return {FRAME}\n")
}

/// Expect a failure, stopped by the batch's `deadline`; return the error.
fn fails_by(spec: &sandstack::config::BatchSpec, deadline: Duration) -> String {
    let started = Instant::now();
    let err = expect_failure(spec);
    eprintln!(
        "stopped in {:.0} ms: {err}",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_stopped_in_time(started, deadline, &spec.metric_batch);
    err
}

// 1. Waits in host calls keep the deadline.

#[test]
fn a_sleep_past_the_deadline_ends_the_run_at_once() {
    let (_f, spec) = python_batch(
        "sleeper",
        &body("    time.sleep(10**6)"),
        "ingest_timeout_s: 2",
    );
    assert_eq!(
        fails_by(&spec, Duration::from_secs(2)),
        "batch sleeper: ingest exceeded ingest_timeout_s=2 (the code asked to wait 1000000s (time.sleep, select, ...), which ends past the run's deadline)"
    );
}

#[test]
fn select_with_a_long_timeout_is_bounded() {
    let (_f, spec) = python_batch(
        "selector",
        &body("    import select\n    select.select([], [], [], 10**6)"),
        "ingest_timeout_s: 2",
    );
    let err = fails_by(&spec, Duration::from_secs(2));
    assert!(
        err.starts_with("batch selector: ingest exceeded ingest_timeout_s=2"),
        "{err}"
    );
}

#[test]
fn a_sleep_in_code_the_driver_runs_after_ingest_is_bounded() {
    let code = "import time\nimport pandas as pd\n\nclass Slow:\n    def __str__(self):\n        time.sleep(10**6)\n        return 'm'\n\ndef ingest():\n    return pd.DataFrame({'metric_name': [Slow()], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})\n";
    let (_f, spec) = python_batch("late_sleeper", code, "ingest_timeout_s: 2");
    assert_eq!(
        fails_by(&spec, Duration::from_secs(2)),
        "batch late_sleeper: ingest exceeded ingest_timeout_s=2 (the code asked to wait 1000000s (time.sleep, select, ...), which ends past the run's deadline)"
    );
}

#[test]
fn short_sleeps_in_a_loop_end_at_the_deadline() {
    let (_f, spec) = python_batch(
        "napper",
        &body("    while True:\n        time.sleep(0.3)"),
        "ingest_timeout_s: 1",
    );
    let err = fails_by(&spec, Duration::from_secs(1));
    assert!(
        err.starts_with("batch napper: ingest exceeded ingest_timeout_s=1"),
        "{err}"
    );
}

#[test]
fn a_sleep_within_the_deadline_sleeps() {
    let (_f, spec) = python_batch(
        "short_nap",
        &body("    t = time.monotonic()\n    time.sleep(0.3)\n    assert time.monotonic() - t >= 0.3, time.monotonic() - t"),
        "ingest_timeout_s: 5",
    );
    let mut store = Store::in_memory().expect("store");
    let started = Instant::now();
    let r = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.stored, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_poll_of_thousands_of_descriptors_is_refused_not_copied() {
    let code = body(
        "    import errno, select\n    p = select.poll()\n    for fd in range(5000):\n        p.register(fd)\n    try:\n        p.poll(0)\n    except OSError as e:\n        assert e.errno == errno.EINVAL, e\n    else:\n        raise AssertionError('polled 5000 descriptors')",
    );
    let (_f, spec) = python_batch("poll_bomb", &code, "");
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.stored, 1);
}

// 2. Addresses: this machine's own, IPv6 forms of private IPv4, rewrite
// targets kept from the guest.

/// This machine's first non-loopback IPv4 address.
fn own_address() -> Option<std::net::IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

#[test]
fn this_machines_own_address_is_refused_directly_and_through_a_redirect() {
    let own = own_address().expect(
        "this test needs a non-loopback IPv4 interface (the machine's own address), and this machine has none",
    );
    // A service bound to every interface, as the dashboard may be.
    let service = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    service.set_nonblocking(true).expect("nonblocking");
    let port = service.local_addr().expect("addr").port();
    let target = format!("http://{own}:{port}/secret");

    let (_f, spec) = python_batch(
        "self_probe",
        &body(&format!(
            "    import requests\n    requests.get({target:?})"
        )),
        "",
    );
    assert_eq!(
        expect_failure(&spec),
        format!("batch self_probe: HTTP to {target} refused: {own} is an address of this machine (set http_allow_private: true to allow it)")
    );

    let location = target.clone();
    let mirror = TestServer::start(Router::new().route(
        "/hop",
        get(move || {
            let location = location.clone();
            async move { (StatusCode::FOUND, [(header::LOCATION, location)]).into_response() }
        }),
    ));
    let (_f, spec) = python_batch(
        "self_redirect",
        &body("    import requests\n    requests.get('http://api.test/hop')"),
        &format!(
            "http_rewrite:\n  \"http://api.test\": \"http://{}\"",
            mirror.addr
        ),
    );
    assert_eq!(
        expect_failure(&spec),
        format!("batch self_redirect: HTTP to {target} refused: {own} is an address of this machine (set http_allow_private: true to allow it)")
    );
    assert!(
        service.accept().is_err(),
        "the service on this machine's address was reached"
    );
}

#[test]
fn ipv6_forms_of_private_ipv4_are_refused() {
    let cases = [
        ("[::ffff:127.0.0.1]", "IPv4-mapped form of 127.0.0.1"),
        ("[::127.0.0.1]", "IPv4-compatible form of 127.0.0.1"),
        (
            "[::ffff:0:a9fe:a9fe]",
            "IPv4-translated form of 169.254.169.254",
        ),
        ("[64:ff9b::a00:1]", "NAT64 form of 10.0.0.1"),
        ("[2002:c0a8:101::1]", "6to4 form of 192.168.1.1"),
        ("[2001:0:7f00:1::1]", "Teredo server form of 127.0.0.1"),
    ];
    for (i, (host, form)) in cases.iter().enumerate() {
        let (_f, spec) = python_batch(
            &format!("v6_{i}"),
            &body(&format!(
                "    import requests\n    requests.get('http://{host}:8080/')"
            )),
            "",
        );
        let err = expect_failure(&spec);
        assert!(
            err.contains("refused") && err.contains(form),
            "{host}: {err}"
        );
    }
}

#[test]
fn guest_errors_and_urls_never_name_the_rewrite_target() {
    let mirror = TestServer::start(Router::new().route("/ok", get(|| async { "hello" })).route(
        "/hop",
        get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response() }),
    ));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let code = body(
        "    import requests\n    r = requests.get('http://api.test/hop')\n    assert r.text == 'hello' and r.url == 'http://api.test/ok', r.url\n    try:\n        requests.get('https://down.test/x', timeout=5)\n    except requests.exceptions.ConnectionError as e:\n        msg = str(e)\n    else:\n        raise AssertionError('no error')\n    assert '127.0.0.1' not in msg and 'https://down.test/x' in msg, msg",
    );
    let (_f, spec) = python_batch(
        "mirrored",
        &code,
        &format!(
            "http_rewrite:\n  \"http://api.test\": \"http://{}\"\n  \"https://down.test\": \"http://127.0.0.1:{closed}\"",
            mirror.addr
        ),
    );
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.stored, 1);
}

// 3. One output budget: log records count with stdout and stderr.

#[test]
fn log_records_share_the_output_budget() {
    let code = "import pandas as pd\nfrom dagster import get_dagster_logger\n\ndef ingest():\n    log = get_dagster_logger()\n    while True:\n        log.info('x' * 10000)\n";
    let (_f, spec) = python_batch("chatty", code, "ingest_max_output_kb: 64");
    assert_eq!(
        expect_failure(&spec),
        "batch chatty: ingest exceeded ingest_max_output_kb=64 (stdout, stderr and log records together)"
    );
    let code = "import _sandstack_door as door\n\ndef ingest():\n    door.call('log', {'level': 'info', 'message': 'y' * 900_000})\n";
    let (_f, spec) = python_batch("door_logger", code, "ingest_max_output_kb: 64");
    assert_eq!(
        expect_failure(&spec),
        "batch door_logger: ingest exceeded ingest_max_output_kb=64 (stdout, stderr and log records together)"
    );
}

// 4. Guest data the host does not trust.

#[test]
fn an_arrow_ipc_result_is_refused_unread() {
    let code = "import _sandstack_door as door\n\ndef ingest():\n    door.call('result', {'format': 'arrow_ipc', 'rows': 1}, b'ARROW1' + b'\\xff' * 64)\n";
    let (_f, spec) = python_batch("ipc", code, "");
    assert_eq!(
        expect_failure(&spec),
        "batch ipc: the guest broke the door protocol: malformed result frame: unknown format `arrow_ipc`"
    );
}

#[test]
fn times_at_the_ends_of_time_are_refused() {
    let ts = |expr: &str| {
        format!("import pandas as pd\n\ndef ingest():\n    return pd.DataFrame({{'metric_name': ['m'], 'metric_value': [1.0], 'metric_timestamp': [{expr}]}})\n")
    };
    let (_f, spec) = python_batch("far_future", &ts("pd.Timestamp.max"), "");
    assert_eq!(
        expect_failure(&spec),
        "batch far_future: metric_timestamp at row 0 is 2262-04-11 23:47:16, outside the allowed range 1900-01-01 00:00:00 to 2200-01-01 00:00:00 (ingest_timestamp_min, ingest_timestamp_max)"
    );
    let (_f, spec) = python_batch("far_past", &ts("pd.Timestamp.min"), "");
    assert!(expect_failure(&spec)
        .starts_with("batch far_past: metric_timestamp at row 0 is 1677-09-21"));
    let (_f, spec) = python_batch("year_200000", &ts("'200000-01-01T00:00:00'"), "");
    assert!(expect_failure(&spec).starts_with("batch year_200000: metric_timestamp"));
    let (_f, spec) = python_batch(
        "narrow",
        &ts("'2030-01-01'"),
        "ingest_timestamp_max: 2029-12-31",
    );
    assert!(expect_failure(&spec)
        .contains("outside the allowed range 1900-01-01 00:00:00 to 2029-12-31 00:00:00"));
}

#[test]
fn metric_names_are_bounded() {
    let named = |expr: &str| {
        format!("import pandas as pd\n\ndef ingest():\n    return pd.DataFrame({{'metric_name': [{expr}], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]}})\n")
    };
    let (_f, spec) = python_batch("huge_name", &named("'n' * 60_000_000"), "");
    let err = expect_failure(&spec);
    assert!(
        err.starts_with("batch huge_name: metric_name at row 0 is 60000000 characters long, over ingest_max_name_len=200: \"nnnn"),
        "{}",
        &err[..err.len().min(300)]
    );
    assert!(err.len() < 400, "the error does not carry the whole name");
    let (_f, spec) = python_batch("empty_name", &named("''"), "");
    assert_eq!(
        expect_failure(&spec),
        "batch empty_name: metric_name at row 0 is empty; every metric needs a name: \"\""
    );
    let (_f, spec) = python_batch("bell_name", &named("'cpu\\x07'"), "");
    assert_eq!(
        expect_failure(&spec),
        "batch bell_name: metric_name at row 0 holds the control character U+0007: \"cpu\\u{7}\""
    );
}

// 5. Guest text on the operator's terminal.

#[test]
fn guest_text_cannot_drive_the_terminal_or_forge_lines() {
    let code = "import pandas as pd\nfrom dagster import get_dagster_logger\n\ndef ingest():\n    print('\\x1b]52;c;ZXZpbA==\\x07\\x1b[2Jtitle\\rover')\n    get_dagster_logger().info('one\\nerror: batch other: forged \\x1b[8m')\n    raise ValueError('bad\\nerror: batch other: forged')\n";
    let (_f, spec) = python_batch("ansi", code, "");
    let mut store = Store::in_memory().expect("store");
    let failure = run_ingest(&spec, &mut store, &[]).expect_err("raises");
    let details = failure.sandbox.as_ref().expect("sandbox details");
    assert!(!details.output.contains('\x1b') && !details.output.contains('\r'));
    assert!(
        details.output.contains("\\u{1b}]52;c;ZXZpbA==\\u{7}"),
        "{}",
        details.output
    );
    let log = &details.logs[0].message;
    assert_eq!(log, "one\\nerror: batch other: forged \\u{1b}[8m");
    let err = failure.to_string();
    assert!(
        err.starts_with("batch ansi: ValueError: bad\\nerror: batch other: forged\n"),
        "{err}"
    );
    assert!(
        err.lines().all(|l| !l.starts_with("error:")),
        "a forged line: {err}"
    );
}

// 6. Replays run under the live run's limits.

fn replay(spec: &sandstack::config::BatchSpec, path: &std::path::Path) -> String {
    let mut store = Store::in_memory().expect("store");
    let opts = IngestOptions {
        cassette: Some(CassetteOptions {
            path: path.to_path_buf(),
            mode: RecordMode::None,
            match_on: Vec::new(),
            scrub: Vec::new(),
        }),
        ..Default::default()
    };
    let err = ingest::run(spec, &mut store, &TestSandbox, &Default::default(), opts)
        .expect_err("the replay fails");
    assert_eq!(store.count_rows(&spec.table_key).expect("count"), 0);
    err.to_string()
}

fn cassette_with(body: cassette::Body) -> Cassette {
    Cassette {
        version: cassette::FORMAT_VERSION,
        note: None,
        job: None,
        batch: "replayed".into(),
        function_sha256: String::new(),
        clock_start_us: 1_767_225_600_000_000,
        recorded_at: String::new(),
        seed: "00".repeat(32),
        env: Vec::new(),
        interactions: vec![cassette::Interaction {
            request: cassette::Request {
                method: "GET".into(),
                url: "http://api.test/big".into(),
                headers: Vec::new(),
                body: cassette::Body::from_bytes(b""),
            },
            response: Some(cassette::Response {
                status: 200,
                reason: "OK".into(),
                headers: Vec::new(),
                url: String::new(),
                body,
            }),
            error: None,
        }],
    }
}

#[test]
fn replays_keep_the_limits_and_refuse_bad_cassettes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (_f, spec) = python_batch(
        "replayed",
        &body("    import requests\n    requests.get('http://api.test/big')"),
        "http_max_response_kb: 1024",
    );

    let big = tmp.path().join("big.yaml");
    cassette_with(cassette::Body::from_bytes(&vec![b'x'; 2 << 20]))
        .save(&big)
        .expect("save");
    assert_eq!(
        replay(&spec, &big),
        "batch replayed: ingest exceeded http_max_response_kb=1024 (the cassette's response from http://api.test/big is 2048 KiB)"
    );

    let broken = tmp.path().join("broken.yaml");
    let mut c = cassette_with(cassette::Body::from_bytes(b""));
    if let Some(r) = c.interactions[0].response.as_mut() {
        r.body = cassette::Body {
            body: None,
            body_base64: Some("%%% not base64".into()),
        };
    }
    c.save(&broken).expect("save");
    let err = replay(&spec, &broken);
    assert!(
        err.contains(
            "interaction 1 (GET http://api.test/big): the response body: invalid body_base64"
        ),
        "{err}"
    );

    let many = tmp.path().join("many.yaml");
    let mut c = cassette_with(cassette::Body::from_bytes(b"ok"));
    let one = c.interactions[0].clone();
    c.interactions = vec![one; cassette::MAX_INTERACTIONS + 1];
    c.save(&many).expect("save");
    let err = replay(&spec, &many);
    assert!(
        err.contains("it has 10001 interactions, over the 10000"),
        "{err}"
    );

    let huge = tmp.path().join("huge.yaml");
    std::fs::write(&huge, vec![b'#'; 17 << 20]).expect("write");
    let err = replay(&spec, &huge);
    assert!(
        err.contains("it is 17 MiB, over the 16 MiB a cassette may have"),
        "{err}"
    );
}

// 7. Errors that name the real cause.

#[test]
fn errors_name_the_real_cause() {
    let (_f, spec) = python_batch(
        "dup_columns",
        "import pandas as pd\n\ndef ingest():\n    df = pd.DataFrame([['m', 1.0, 2.0, '2026-01-01']], columns=['metric_name', 'metric_value', 'metric_value', 'metric_timestamp'])\n    return df\n",
        "",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch dup_columns: ingest() returned a DataFrame with duplicate column name(s) metric_value: give each column one name (df.loc[:, ~df.columns.duplicated()] keeps the first)"
    );
    let (_f, spec) = python_batch(
        "swallower",
        "import pandas as pd\n\ndef ingest():\n    try:\n        hog = bytearray(2**30)\n    except MemoryError:\n        hog = None\n    return hog.upper()\n",
        "ingest_memory_mb: 400",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch swallower: ingest exceeded ingest_memory_mb=400 (an allocation was refused; the code then failed with AttributeError: 'NoneType' object has no attribute 'upper')"
    );
    let (_f, spec) = python_batch(
        "bad_time",
        "import pandas as pd\n\ndef ingest():\n    return pd.DataFrame({'metric_name': ['m'], 'metric_value': [1.0], 'metric_timestamp': ['not a time']})\n",
        "",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch bad_time: metric_timestamp must be a timestamp, date or ISO-8601 string: row 0 has \"not a time\", which is not a readable date and time (or is out of range)"
    );
}

// 8. Names that reach SQL and paths.

#[test]
fn batch_names_that_could_reach_sql_or_paths_are_refused_at_load() {
    let f = Folder::with_defaults();
    f.write(
        "b/quote.yaml",
        "metric_batch: \"x' OR '1'='1\"\ningest_sql: \"SELECT 1\"\n",
    );
    f.write(
        "b/path.yaml",
        "metric_batch: \"../../escape\"\ningest_sql: \"SELECT 1\"\n",
    );
    f.write("b/fine.yaml", "metric_batch: \"fine-batch_1.v2\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n");
    let folder = f.load(&[]);
    let errors: Vec<String> = folder.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    for (file, name) in [
        ("b/quote.yaml", "x' OR '1'='1"),
        ("b/path.yaml", "../../escape"),
    ] {
        let expected = format!(
            "{}: key `metric_batch`: {name:?} is not a valid batch name: use at most 128 letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`",
            f.shown(file)
        );
        assert!(errors.contains(&expected), "{expected}\nnot in {errors:#?}");
    }
    assert!(folder.batch("fine-batch_1.v2").is_some());
}

#[test]
fn timeouts_past_a_day_are_refused_at_load() {
    let f = Folder::with_defaults();
    f.write(
        "b/slow.yaml",
        "metric_batch: \"slow\"\ningest_sql: \"SELECT 1\"\ningest_timeout_s: 1000000\nhttp_timeout_s: 86401\n",
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(|e| e.to_string()).collect();
    let file = f.shown("b/slow.yaml");
    assert_eq!(
        errors,
        vec![
            format!("{file}: key `ingest_timeout_s`: must be at most 86400 seconds (a day), found 1000000"),
            format!("{file}: key `http_timeout_s`: must be at most 86400 seconds (a day), found 86401"),
        ]
    );
}

#[test]
fn delete_sql_runs_as_one_statement() {
    let f = Folder::with_defaults();
    f.write(
        "b/sql.yaml",
        "metric_batch: \"sql_del\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\ndelete_sql: \"DELETE FROM metrics WHERE metric_batch = 'nobody'; DROP TABLE metrics\"\n",
    );
    let spec = f.spec("sql_del", &[]);
    let mut store = Store::in_memory().expect("store");
    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let err = sandstack::jobs::maintenance::delete(&spec, &mut store)
        .expect_err("two statements are refused")
        .to_string();
    assert!(
        err == "batch sql_del: delete_sql: it holds 2 statements; SQL from the metrics folder must be exactly one",
        "{err}"
    );
    assert_eq!(
        store
            .count_rows(&key("metrics"))
            .expect("the table is still there"),
        1
    );
}

#[test]
fn ingest_sql_and_sql_templates_run_as_one_statement() {
    let f = Folder::with_defaults();
    f.write(
        "b/two.yaml",
        "metric_batch: \"two\"\ningest_sql: \"DROP TABLE IF EXISTS metrics; SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n",
    );
    f.write(
        "b/ok.yaml",
        "metric_batch: \"ok\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\ntrain_sql: \"DROP TABLE metrics; SELECT * FROM metrics\"\n",
    );
    let mut store = Store::in_memory().expect("store");
    let ok = f.spec("ok", &[]);
    run_ingest(&ok, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let err = run_ingest(&f.spec("two", &[]), &mut store, &[])
        .expect_err("two statements")
        .to_string();
    assert_eq!(
        err,
        "batch two: ingest_sql failed: it holds 2 statements; SQL from the metrics folder must be exactly one"
    );
    let models = tempfile::tempdir().expect("tmp");
    let err = sandstack::jobs::train::run(&ok, &store, models.path(), &Default::default())
        .expect_err("two statements")
        .to_string();
    assert_eq!(
        err,
        "batch ok: train_sql: it holds 2 statements; SQL from the metrics folder must be exactly one"
    );
    assert_eq!(
        store
            .count_rows(&key("metrics"))
            .expect("the table is still there"),
        1
    );
}

#[test]
fn sql_from_the_folder_cannot_reach_host_files_or_change_settings() {
    let f = Folder::with_defaults();
    let cases = [
        ("passwd", "SELECT now() AS metric_timestamp, line AS metric_name, 1 AS metric_value FROM read_csv('/etc/passwd', columns = {'line': 'VARCHAR'})"),
        ("text", "SELECT now() AS metric_timestamp, content AS metric_name, 1 AS metric_value FROM read_text('/etc/hostname')"),
        ("files", "SELECT now() AS metric_timestamp, file AS metric_name, 1 AS metric_value FROM glob('/etc/*')"),
        ("copy", "COPY (SELECT 1) TO '/tmp/sandstack-hostile-copy.csv'"),
        ("attach", "ATTACH '/tmp/sandstack-hostile.duckdb' AS elsewhere"),
        ("setting", "SET enable_external_access = true"),
        ("load", "LOAD httpfs"),
        ("drop", "DROP TABLE metrics"),
        ("delete", "DELETE FROM metrics"),
    ];
    for (name, sql) in cases {
        f.write(
            &format!("b/{name}.yaml"),
            &format!(
                "metric_batch: \"{name}\"\ningest_sql: \"{}\"\n",
                sql.replace('"', "\\\"")
            ),
        );
    }
    f.write(
        "b/ok.yaml",
        "metric_batch: \"ok\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n",
    );
    let mut store = Store::in_memory().expect("store");
    run_ingest(&f.spec("ok", &[]), &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    for (name, _) in cases {
        let err = run_ingest(&f.spec(name, &[]), &mut store, &[])
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with(&format!("batch {name}: ingest_sql failed: ")),
            "{name}: {err}"
        );
        let expected = match name {
            "drop" => "it is DROP; this template must be one read-only query",
            "delete" => "it is a DELETE; this template must be one read-only query",
            "setting" => "it is SET; this template must be one read-only query",
            "load" => "it is LOAD/INSTALL; this template must be one read-only query",
            "attach" => "it is ATTACH; this template must be one read-only query",
            _ => "disabled by configuration",
        };
        assert!(err.contains(expected), "{name}: {err}");
    }
    assert_eq!(
        store.count_rows(&key("metrics")).expect("count"),
        1,
        "only ok's row"
    );
    assert!(!std::path::Path::new("/tmp/sandstack-hostile-copy.csv").exists());
    assert!(!std::path::Path::new("/tmp/sandstack-hostile.duckdb").exists());
}

#[test]
fn read_templates_must_be_queries_and_delete_sql_a_delete() {
    let f = Folder::with_defaults();
    f.write(
        "b/w.yaml",
        "metric_batch: \"w\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\ntrain_sql: \"DELETE FROM metrics\"\ndelete_sql: \"DROP TABLE metrics\"\n",
    );
    let spec = f.spec("w", &[]);
    let mut store = Store::in_memory().expect("store");
    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().expect("tmp");
    let err = sandstack::jobs::train::run(&spec, &store, models.path(), &Default::default())
        .expect_err("a DELETE in train_sql")
        .to_string();
    assert_eq!(
        err,
        "batch w: train_sql: it is a DELETE; this template must be one read-only query"
    );
    let err = sandstack::jobs::maintenance::delete(&spec, &mut store)
        .expect_err("a DROP in delete_sql")
        .to_string();
    assert_eq!(
        err,
        "batch w: delete_sql: it is DROP; this template must be a DELETE"
    );
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 1);
}

// 10. The dashboard answers to its own names only.

#[test]
fn the_dashboard_refuses_foreign_hosts_and_cross_site_votes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("dash.duckdb");
    let store = Store::open(&db).expect("db");
    store.ensure_runs_table().expect("runs table");
    let dir = tmp.path().to_path_buf();
    let loader: sandstack::scheduler::watch::Loader =
        std::sync::Arc::new(move || sandstack::config::load(&dir, &Default::default()));
    let state = sandstack::web::WebState::new(
        store,
        loader,
        None,
        tmp.path().join("c"),
        vec!["dash.example.com".into()],
        None,
    );
    let server = TestServer::start(sandstack::web::router(state));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let client = reqwest::Client::new();
    let get = |host: &str| {
        rt.block_on(
            client
                .get(server.url("/healthz"))
                .header(header::HOST, host)
                .send(),
        )
        .expect("request")
        .status()
    };
    assert_eq!(get(&server.addr.to_string()), StatusCode::OK);
    assert_eq!(get("localhost:8080"), StatusCode::OK);
    assert_eq!(get("dash.example.com"), StatusCode::OK);
    assert_eq!(
        get("rebound.evil.example:8080"),
        StatusCode::MISDIRECTED_REQUEST
    );

    let vote = |name: &str, value: &str| {
        rt.block_on(async {
            let r = client
                .post(server.url("/feedback"))
                .header(name, value)
                .form(&[
                    ("batch", "b"),
                    ("metric", "m"),
                    ("timestamp_us", "0"),
                    ("vote", "up"),
                ])
                .send()
                .await
                .expect("request");
            (r.status(), r.text().await.expect("text"))
        })
    };
    assert_eq!(
        vote("origin", "http://evil.example"),
        (
            StatusCode::FORBIDDEN,
            "refused a write from another site (Origin is http://evil.example)".to_string()
        )
    );
    assert_eq!(
        vote("sec-fetch-site", "cross-site").0,
        StatusCode::FORBIDDEN
    );
    // The dashboard's own origin passes the guard (and then fails on the
    // anomaly that does not exist).
    let own = format!("http://{}", server.addr);
    let (status, text) = vote("origin", &own);
    assert!(
        status != StatusCode::FORBIDDEN && status != StatusCode::MISDIRECTED_REQUEST,
        "{status}: {text}"
    );
}

// 1, under the scheduler: sleeping batches cannot starve another, and
// SIGTERM ends the process within the grace period whatever runs do.

#[test]
fn sleeping_batches_cannot_starve_a_third_and_sigterm_ends_the_process_in_grace() {
    use sandstack::store::{RunFilter, RunStatus};

    let f = Folder::with_defaults();
    f.write("s/forever.py", &body("    time.sleep(10**6)"));
    f.write("s/long.py", &body("    time.sleep(100)"));
    let every_second =
        "ingest_cron_schedule: \"* * * * * *\"\ningest_default_schedule_status: RUNNING\n";
    for name in ["forever_a", "forever_b"] {
        f.write(
            &format!("s/{name}.yaml"),
            &format!("metric_batch: \"{name}\"\ningest_fn: >\n  {{% include \"./s/forever.py\" %}}\n{every_second}"),
        );
    }
    // Holds a slot for the rest of the test (which waits at most 60 s for
    // steady's runs), well within its deadline.
    f.write(
        "s/long.yaml",
        &format!("metric_batch: \"long_nap\"\ningest_fn: >\n  {{% include \"./s/long.py\" %}}\ningest_timeout_s: 150\n{every_second}"),
    );
    f.write(
        "s/steady.yaml",
        &format!("metric_batch: \"steady\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n{every_second}"),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("s.duckdb");
    let (child, url) = start_sandstack_args(
        f.path(),
        &db,
        &["--max-concurrent", "2", "--grace-secs", "2"],
        &[],
    );
    // Five of steady's runs while the others sleep: not starved.
    wait_for_ingests(&url, "steady", 5.0);
    terminate(&child);
    let asked = Instant::now();
    let out = child.wait_with_output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("SIGTERM to exit: {:?}", asked.elapsed());
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    // long_nap sleeps on for more than a minute: only the grace period
    // ends the process this soon.
    assert_stopped_in_time(asked, Duration::from_secs(2), "the process after SIGTERM");

    let store = Store::open(&db).expect("db");
    let runs = |batch: &str| {
        store
            .list_runs(&RunFilter {
                batch: Some(batch.into()),
                limit: 10_000,
                ..Default::default()
            })
            .expect("runs")
    };
    let steady = runs("steady");
    let ok = steady
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .count();
    assert!(ok >= 5, "steady ran {ok} times: {steady:#?}");
    for name in ["forever_a", "forever_b"] {
        let r = runs(name);
        assert!(!r.is_empty());
        for run in &r {
            assert_eq!(
                run.error.as_deref(),
                Some(format!("batch {name}: ingest exceeded ingest_timeout_s=30 (the code asked to wait 1000000s (time.sleep, select, ...), which ends past the run's deadline)").as_str())
            );
        }
    }
    let long = runs("long_nap");
    assert!(
        long.iter().any(|r| r.status == RunStatus::Interrupted),
        "{long:#?}"
    );
}

#[test]
fn config_that_would_stall_the_loader_is_refused_quickly() {
    let f = Folder::with_defaults();
    let big = "x".repeat(1 << 20);
    f.write(
        "b/bomb.yaml",
        &format!(
            "metric_batch: \"bomb\"\ningest_sql: \"SELECT 1\"\na: &a \"{big}\"\nb: [{}]\n",
            vec!["*a"; 5000].join(", ")
        ),
    );
    f.write("b/laughs.yaml", &{
        let mut t =
            String::from("metric_batch: \"laughs\"\ningest_sql: \"SELECT 1\"\nl0: &l0 \"lol\"\n");
        for i in 1..30 {
            t.push_str(&format!(
                "l{i}: &l{i} [{}]\n",
                vec![format!("*l{}", i - 1); 10].join(", ")
            ));
        }
        t
    });
    f.write(
        "b/loop.yaml",
        "metric_batch: \"loop\"\ningest_sql: \"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}SELECT 1\"\n",
    );
    f.write(
        "b/huge.yaml",
        &format!(
            "metric_batch: \"huge\"\ningest_sql: \"SELECT 1\"\nfiller: \"{}\"\n",
            "y".repeat(5 << 20)
        ),
    );
    f.write(
        "b/ok.yaml",
        "metric_batch: \"ok\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n",
    );
    let t = std::time::Instant::now();
    let (code, text) = crate::support::validate(f.path(), &[]);
    let took = t.elapsed();
    assert_eq!(code, Some(1), "{text}");
    // Unbounded, the loop alone renders for hours; each file's own limit
    // is 2 s.
    assert!(
        took < 4 * Duration::from_secs(2) + crate::support::STOP_SLACK,
        "validate took {took:?}"
    );
    for expected in [
        "bomb.yaml: invalid YAML: it expands to more than 32 MiB",
        "laughs.yaml: invalid YAML: repetition limit exceeded",
        "loop.yaml: key `ingest_sql`: the template ran too long",
        "huge.yaml: cannot read: it is 5120 KiB; a YAML file may be at most 4096 KiB",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.contains("ok (sql"),
        "the sound batch still loads:\n{text}"
    );
    eprintln!("validate on the hostile folder took {took:?}");
}

#[test]
fn a_never_ending_sql_ingest_or_job_is_stopped_by_its_time_limit() {
    let f = Folder::with_defaults();
    let forever = "SELECT now() AS metric_timestamp, 'm' AS metric_name, count(*) AS metric_value FROM range(1000000000000) t(i) WHERE i % 7 = 3";
    f.write(
        "b/slow.yaml",
        &format!("metric_batch: \"slow\"\ningest_sql: \"{forever}\"\ningest_timeout_s: 1\n"),
    );
    f.write(
        "b/job.yaml",
        "metric_batch: \"job\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\njob_timeout_s: 1\ntrain_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, count(*) AS metric_value FROM metrics, range(1000000000000) t(i) WHERE i % 7 = 3\"\n",
    );
    let mut store = Store::in_memory().expect("store");
    let t = std::time::Instant::now();
    let err = run_ingest(&f.spec("slow", &[]), &mut store, &[]).expect_err("stopped");
    assert!(err.error.is_timeout());
    assert_eq!(
        err.to_string(),
        "batch slow: ingest exceeded ingest_timeout_s=1: ingest_sql was stopped and nothing was stored"
    );
    assert_stopped_in_time(t, Duration::from_secs(1), "ingest_sql");
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 0);

    let job = f.spec("job", &[]);
    run_ingest(&job, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let models = tempfile::tempdir().expect("tmp");
    let ctx = sandstack::pipeline::JobContext {
        model_base: models.path(),
        plot_dir: models.path(),
        channels: None,
        env: &Default::default(),
        sandboxes: &sandstack::jobs::ingest::DefaultSandbox,
        peers: &[],
        mode: Default::default(),
    };
    let t = std::time::Instant::now();
    let err =
        sandstack::pipeline::dispatch::run(&job, &mut store, sandstack::config::Job::Train, &ctx)
            .expect_err("stopped");
    assert!(
        matches!(err, sandstack::pipeline::DispatchError::TimedOut { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "batch job: the train job ran past job_timeout_s=1 and was stopped; nothing it was writing was stored"
    );
    assert_stopped_in_time(t, Duration::from_secs(1), "train");
    // The connection is usable afterwards.
    assert_eq!(store.count_rows(&key("metrics")).expect("count"), 1);
}

#[test]
fn delete_sql_cannot_reach_other_batches_rows() {
    let f = Folder::with_defaults();
    let ingest =
        "ingest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1 AS metric_value\"\n";
    f.write(
        "b/victim.yaml",
        &format!("metric_batch: \"victim\"\n{ingest}"),
    );
    f.write(
        "b/wiper.yaml",
        &format!("metric_batch: \"wiper\"\n{ingest}delete_sql: \"DELETE FROM metrics WHERE metric_name = 'm'\"\n"),
    );
    let mut store = Store::in_memory().expect("store");
    for b in ["victim", "wiper"] {
        run_ingest(&f.spec(b, &[]), &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    }
    // Its SQL runs over its own rows alone: what it names, it removes
    // there only.
    let removed = sandstack::jobs::maintenance::delete(&f.spec("wiper", &[]), &mut store)
        .expect("its own rows");
    assert_eq!(removed, 1);
    let left = store.read_rows(&key("metrics"), None).expect("rows");
    let batches: Vec<String> = left
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .expect("text")
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(batches, vec!["victim"], "the victim's row stays");
}

/// `http_rewrite` compares URLs, not text: a guest URL with user
/// information that spells the rewrite's prefix is not rewritten (and so
/// meets the address policy), and a target that hides another port behind
/// user information is refused at load.
#[test]
fn rewrites_match_urls_not_text() {
    let mirror = TestServer::start(Router::new().route("/ok", get(|| async { "mirror" })));
    let other = TestServer::start(Router::new().route("/ok", get(|| async { "unlisted" })));
    let code = body(&format!(
        "    import requests\n    assert requests.get('http://api.test/ok').text == 'mirror'\n    requests.get('http://api.test@127.0.0.1:{}/ok')",
        other.addr.port()
    ));
    let (_f, spec) = python_batch(
        "userinfo",
        &code,
        &format!(
            "http_rewrite:\n  \"http://api.test\": \"http://{}\"",
            mirror.addr
        ),
    );
    let err = expect_failure(&spec);
    assert_eq!(
        err,
        format!(
            "batch userinfo: HTTP to http://api.test@127.0.0.1:{}/ok refused: 127.0.0.1 is a loopback address \
             (set http_allow_private: true to allow it)",
            other.addr.port()
        )
    );

    let f = Folder::with_defaults();
    f.write(
        "b/b.yaml",
        &format!(
            "metric_batch: b\ningest_sql: \"SELECT 1\"\nhttp_rewrite:\n  \"http://api.test\": \"http://{}@127.0.0.1:{}/\"\n",
            mirror.addr,
            other.addr.port()
        ),
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("key `http_rewrite`") && errors[0].contains("it holds user information"),
        "{errors:?}"
    );
}

#[test]
fn host_patterns_are_hosts() {
    let f = Folder::with_defaults();
    f.write(
        "b/b.yaml",
        "metric_batch: b\ningest_sql: \"SELECT 1\"\nhttp_allow_hosts: [\"api.example.com\", \"evil.net/.example.com\"]\n",
    );
    let errors: Vec<String> = f.load(&[]).errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![format!(
            "{}: key `http_allow_hosts`: `evil.net/.example.com` is not a host pattern (it holds `/`): write a host \
             name (api.example.com), `*.` and a domain (*.example.com) or an IP address",
            f.shown("b/b.yaml")
        )]
    );
}

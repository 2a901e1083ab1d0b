//! Python ingest in the sandbox: the shipped example, Anomstack's
//! conventions, tracebacks, the environment allowlist, isolation between
//! runs and deterministic seeds.

use sandstack::config::IngestSource;
use sandstack::sandbox::ExecRequest;
use sandstack::store::Store;

use crate::support::{python_batch, repo, run_ingest, TestSandbox};
use sandstack::jobs::ingest::SandboxSource;

#[test]
fn the_shipped_random_example_stores_its_rows() {
    let folder = sandstack::config::load(&repo().join("metrics"), &Default::default());
    let spec = folder.batch("example_random").expect("example_random");
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(spec, &mut store, &[]).expect("ingest");
    assert_eq!(r.stored, 3);
    let stats = &r.sandbox.as_ref().expect("sandbox details").stats;
    assert!(stats.fuel_used > 0 && stats.peak_memory_bytes > 0);
    assert_eq!(stats.http_requests, 0);
}

const CONVENTIONS: &str = r#"import pandas as pd
from dagster import get_dagster_logger


def ingest():
    import datetime
    import numpy as np

    logger = get_dagster_logger()
    logger.info("hello from the guest")
    print("printed line")
    df = pd.DataFrame({"metric_name": ["a", "b", "c", "d"], "metric_value": [1, 2.5, np.float64(3), 4]})
    df["metric_timestamp"] = [
        pd.Timestamp.utcnow(),
        datetime.datetime.now(),
        "2026-01-01T00:00:00Z",
        datetime.datetime(2026, 1, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    ]
    return df
"#;

#[test]
fn anomstack_conventions_work_unmodified() {
    let (_f, spec) = python_batch("conv", CONVENTIONS, "");
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&spec, &mut store, &[])
        .unwrap_or_else(|e| panic!("{}\n{:?}", e.error, e.sandbox));
    assert_eq!(r.stored, 4);
    let details = r.sandbox.expect("details");
    assert!(
        details
            .logs
            .iter()
            .any(|l| l.message == "hello from the guest" && l.level == "info"),
        "{:?}",
        details.logs
    );
    assert!(
        details.output.contains("printed line"),
        "{}",
        details.output
    );
    let (batches, types, same_instant): (String, String, i64) = crate::support::duck(&store)
        .query_row(
            "select string_agg(distinct metric_batch, ','), string_agg(distinct metric_type, ','), \
             count(*) filter (where metric_timestamp = timestamp '2026-01-01 00:00:00') from metrics",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("query");
    assert_eq!((batches.as_str(), types.as_str()), ("conv", "metric"));
    assert_eq!(
        same_instant, 2,
        "a Z string and a +02:00 datetime name the same UTC instant"
    );
}

#[test]
fn scalar_utcnow_timestamps_and_integer_values() {
    let code = "import pandas as pd\n\ndef ingest():\n    df = pd.DataFrame([['x', 1], ['y', 2]], columns=['metric_name', 'metric_value'])\n    df['metric_timestamp'] = pd.Timestamp.utcnow()\n    return df\n";
    let (_f, spec) = python_batch("scalar", code, "");
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&spec, &mut store, &[])
        .unwrap_or_else(|e| panic!("{}\n{:?}", e.error, e.sandbox));
    assert_eq!(r.stored, 2);
}

#[test]
fn exceptions_come_back_with_the_users_file_and_line() {
    let code = "import pandas as pd\n\n\ndef ingest():\n    raise ValueError('boom')\n";
    let (_f, spec) = python_batch("tb", code, "");
    let mut store = Store::in_memory().expect("store");
    let err = run_ingest(&spec, &mut store, &[])
        .expect_err("raises")
        .to_string();
    assert!(
        err.starts_with("batch tb: ValueError: boom\n  Traceback (most recent call last):"),
        "{err}"
    );
    assert!(err.contains("File \"b/tb.py\", line 5, in ingest"), "{err}");
    assert!(
        err.contains("raise ValueError('boom')"),
        "the source line is shown: {err}"
    );
    assert!(
        !err.contains("_sandstack_driver"),
        "driver frames are hidden: {err}"
    );
}

#[test]
fn only_allowlisted_environment_variables_are_visible() {
    let code = r#"import os
import pandas as pd

def ingest():
    assert os.environ.get("SANDSTACK_TEST_VISIBLE") == "yes", dict(os.environ)
    leaked = [k for k in ("SANDSTACK_TEST_SECRET", "HOME", "PATH") if k in os.environ]
    assert not leaked, leaked
    return pd.DataFrame({"metric_name": ["ok"], "metric_value": [1.0], "metric_timestamp": [pd.Timestamp.now(tz="UTC")]})
"#;
    let (_f, spec) = python_batch("envs", code, "ingest_env: [SANDSTACK_TEST_VISIBLE]");
    let mut store = Store::in_memory().expect("store");
    let env = [
        ("SANDSTACK_TEST_VISIBLE", "yes"),
        ("SANDSTACK_TEST_SECRET", "s3cret"),
        ("HOME", "/root"),
    ];
    let r = run_ingest(&spec, &mut store, &env).unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(r.stored, 1);
}

#[test]
fn every_run_starts_from_a_fresh_instance() {
    let code = "import sys\nimport pandas as pd\n\ndef ingest():\n    sys.sandstack_counter = getattr(sys, 'sandstack_counter', 0) + 1\n    return pd.DataFrame({'metric_name': ['n'], 'metric_value': [sys.sandstack_counter], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})\n";
    let (_f, spec) = python_batch("fresh", code, "");
    let mut store = Store::in_memory().expect("store");
    for _ in 0..2 {
        run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{}", e.error));
    }
    let max: f64 = crate::support::duck(&store)
        .query_row("select max(metric_value) from metrics", [], |r| r.get(0))
        .expect("max");
    assert_eq!(max, 1.0, "state leaked from one run to the next");
}

const RANDOMNESS: &str = r#"import random, time, uuid, datetime
import numpy as np
import pandas as pd

def ingest():
    values = [random.random(), float(np.random.rand()), float(np.random.default_rng().random()),
              uuid.uuid4().int % 1000003, time.time() // 1, datetime.datetime.now().timestamp() // 1]
    return pd.DataFrame({"metric_name": [f"v{i}" for i in range(len(values))], "metric_value": values,
                         "metric_timestamp": pd.Timestamp("2026-01-01", tz="UTC")})
"#;

#[test]
fn seed_and_clock_fix_every_source_of_randomness() {
    let (_f, spec) = python_batch("rand", RANDOMNESS, "ingest_metric_rounding: -1");
    let IngestSource::Python(src) = &spec.ingest else {
        panic!()
    };
    let sandbox = TestSandbox.sandbox().expect("sandbox");
    let run = |seed: [u8; 32]| {
        let mut req = ExecRequest::new("rand", src.clone(), spec.limits.clone(), spec.http.clone());
        req.seed = Some(seed);
        req.clock_start_us = Some(1_767_225_600_000_000);
        sandbox.execute(req).outcome.expect("runs")
    };
    let (a, b, c) = (run([7; 32]), run([7; 32]), run([8; 32]));
    assert_eq!(a, b, "the same seed and clock give the same values");
    assert_ne!(a, c, "another seed gives other values");
}

/// The user's code tries to hand the host other code for its own source,
/// in the run that compiles it and in one that was given it: neither is
/// kept, and every run still runs the batch's real code.
const POISON: &str = r#"import marshal
import pandas as pd
import _sandstack_door as door

def ingest():
    other = compile("def ingest():\n    raise RuntimeError('poisoned')\n", "<poison>", "exec")
    door.call("compiled", None, marshal.dumps(other))
    return pd.DataFrame({"metric_name": ["m"], "metric_value": [1.0],
                         "metric_timestamp": pd.Timestamp("2026-01-01", tz="UTC")})
"#;

#[test]
fn compiled_code_is_kept_for_the_same_source_and_user_code_cannot_replace_it() {
    let (_f, spec) = python_batch("poison", POISON, "");
    let IngestSource::Python(src) = &spec.ingest else {
        panic!()
    };
    let sandbox = TestSandbox.sandbox().expect("sandbox");
    let run = |source: sandstack::config::PythonSource| {
        let req = ExecRequest::new("poison", source, spec.limits.clone(), spec.http.clone());
        let report = sandbox.execute(req);
        let rows = report.outcome.unwrap_or_else(|e| panic!("{e}")).num_rows();
        (rows, report.stats.code_cached)
    };
    assert_eq!(run(src.clone()), (1, false), "the first run compiles");
    assert_eq!(
        run(src.clone()),
        (1, true),
        "the next gets the driver's code"
    );
    assert_eq!(run(src.clone()), (1, true));
    let mut edited = src.clone();
    edited.code.push_str("\n# edited\n");
    assert_eq!(run(edited), (1, false), "another source compiles again");
}

#[test]
fn code_too_big_to_keep_is_compiled_every_run_and_user_code_cannot_fill_the_gap() {
    // Over 1 KiB marshalled, with a 1 KiB frame limit: the driver keeps nothing.
    let padding = format!("\nNOTES = {:?}\n", "n".repeat(4000));
    let code = format!("{POISON}{padding}");
    let (_f, spec) = python_batch("poison_big", &code, "ingest_max_result_kb: 1");
    let IngestSource::Python(src) = &spec.ingest else {
        panic!()
    };
    let sandbox = TestSandbox.sandbox().expect("sandbox");
    for _ in 0..3 {
        let req = ExecRequest::new(
            "poison_big",
            src.clone(),
            spec.limits.clone(),
            spec.http.clone(),
        );
        let report = sandbox.execute(req);
        let rows = report.outcome.unwrap_or_else(|e| panic!("{e}")).num_rows();
        assert_eq!((rows, report.stats.code_cached), (1, false));
    }
}

#[test]
fn the_result_frame_carries_every_column_type() {
    let code = "import pandas as pd\nimport numpy as np\n\ndef ingest():\n    df = pd.DataFrame({'metric_name': ['a', 'b', 'c', 'a'], 'metric_value': [1, 2.5, np.nan, 4], 'metadata': ['{}', None, 'x', 'y']})\n    df['metric_timestamp'] = pd.Timestamp('2026-01-01T00:00:00Z')\n    df['flag'] = [True, False, True, False]\n    return df\n";
    let (_f, spec) = python_batch("formats", code, "");
    let IngestSource::Python(src) = &spec.ingest else {
        panic!()
    };
    let sandbox = TestSandbox.sandbox().expect("sandbox");
    let req = ExecRequest::new(
        "formats",
        src.clone(),
        spec.limits.clone(),
        spec.http.clone(),
    );
    let raw = sandbox
        .execute(req)
        .outcome
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.num_columns(), 5);
    let rows = sandstack::jobs::ingest::normalize::normalize(&[raw], "formats", &spec.limits, 4)
        .expect("valid")
        .rows;
    assert_eq!(rows.num_rows(), 3, "the NaN row is dropped");
    let text = sandstack::jobs::ingest::describe_rows(&rows, 10);
    for expected in ["2026-01-01T00:00:00", "| a ", "| 2.5 ", "| 4.0 ", "| {} "] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
}

/// Where `scripts/install-deps --test-servers` put pandas for the host's
/// python3.
fn host_pandas_dir() -> std::path::PathBuf {
    crate::support::installed_dir(
        "SANDSTACK_HOST_PANDAS_DIR",
        "host-pandas",
        &["pandas"],
        "pandas for the host's python3 is",
    )
}

/// `sandstack bench sandbox` runs the batch at the concurrency asked and
/// prints the sandbox's figures beside the warm python3 anchor's.
#[test]
fn the_sandbox_bench_prints_its_figures_beside_the_anchor() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args([
            "bench",
            "sandbox",
            "--runs",
            "6",
            "--native-runs",
            "1",
            "--concurrency",
            "2",
            "--store",
        ])
        .arg("--metrics")
        .arg(repo().join("metrics"))
        .env("PYTHONPATH", host_pandas_dir())
        .output()
        .expect("run sandstack bench sandbox");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    assert!(
        text.contains(&format!(
            "batch example_random, 3 rows per run, 2 run(s) at a time, {profile} build"
        )),
        "{text}"
    );
    // Every step of a run has its line, with figures (the store's too, as asked).
    for step in [
        "instantiate",
        "driver start",
        "user code",
        "encode (guest)",
        "door + decode (host)",
        "drop instance",
        "normalize",
        "store (DuckDB)",
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(step))
            .unwrap_or_else(|| panic!("no line for {step}:\n{text}"));
        let figures: Vec<f64> = line.trim_start()[step.len()..]
            .split_whitespace()
            .filter_map(|w| w.trim_end_matches('%').parse().ok())
            .collect();
        assert_eq!(figures.len(), 4, "{line}");
    }
    let faults = text
        .lines()
        .find(|l| l.trim_start().starts_with("page faults"))
        .unwrap_or_default();
    assert!(faults.contains("(the run's thread"), "{text}");
    assert!(
        text.contains("sandbox (fresh instance)   runs    6  p50 "),
        "{text}"
    );
    let anchor = text
        .lines()
        .find(|l| l.starts_with("python3, warm, exec + call"))
        .unwrap_or_default();
    assert!(anchor.contains("runs    6  p50 "), "{text}");
    assert!(text.contains("sandbox / warm python3"), "{text}");
}

//! The benchmarks run end to end at toy sizes: every figure they promise is
//! printed, and nothing is written outside their scratch database. Their
//! real sizes stay out of the test suite's timing.

use crate::support::repo;

fn bench(args: &[&str]) -> String {
    bench_with(&[], args)
}

/// `sandstack GLOBAL... bench ARGS...` in an empty working directory.
fn bench_with(global: &[&std::ffi::OsStr], args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .arg("--metrics")
        .arg(repo().join("metrics"))
        .args(global)
        .arg("bench")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run sandstack bench");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
    assert!(left.is_empty(), "the bench wrote to its working directory");
    text
}

/// The number right after `label` on its line.
fn figure(text: &str, label: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in\n{text}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no figure after {label:?}: {line}"))
}

/// The figure leading each column's cell on `label`'s line (cells are
/// separated by two spaces or more).
fn figures(text: &str, label: &str) -> Vec<f64> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in\n{text}"));
    line.trim_start()[label.len()..]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// `bench store` at toy sizes: 20,000 rows over 7 names, 50 ticks.
const STORE_TOY: &[&str] = &[
    "store",
    "--rows",
    "20000",
    "--per-append",
    "5000",
    "--names",
    "7",
    "--ticks",
    "50",
];

#[test]
fn bench_store_prints_append_and_reference_rates_and_the_reads() {
    let text = bench(STORE_TOY);
    assert!(
        text.contains(
            "sandstack bench store: 20000 rows over 7 metrics, 5000 per append; 50 ticks"
        ),
        "{text}"
    );
    assert!(figure(&text, "append, 1 writer") > 0.0, "{text}");
    assert!(figure(&text, "append, 3 writers at once") > 0.0, "{text}");
    assert!(
        figure(&text, "reference: INSERT ... SELECT") > 0.0,
        "{text}"
    );
    assert!(figure(&text, "ticks/s, 1 worker") > 0.0, "{text}");
    assert!(
        text.contains("(40000 rows)"),
        "every row was appended, by one writer and by three:\n{text}"
    );
    assert!(text.contains("(7 metrics)"), "{text}");
    assert!(text.contains("(p50 of 7)"), "{text}");
    assert!(text.contains("7 groups)"), "{text}");
    assert!(text.contains("PostgreSQL not measured"), "{text}");
}

#[test]
fn bench_store_puts_postgresql_beside_duckdb() {
    let text = bench(&[STORE_TOY, &["--temp-postgres"]].concat());
    assert!(
        text.contains("PostgreSQL (throwaway, loopback, fsync on)"),
        "{text}"
    );
    assert!(
        text.contains("claims kept over 50 ticks a second apart")
            && text.contains("at most 50, 50 at the end"),
        "{text}"
    );
    for label in [
        "append, 1 writer",
        "append, 3 writers at once",
        "reference: INSERT ... SELECT",
        "ticks/s, 1 worker",
    ] {
        let both = figures(&text, label);
        assert_eq!(both.len(), 2, "{label}: {text}");
        assert!(both.iter().all(|f| *f > 0.0), "{label}: {both:?}\n{text}");
    }
    let claims = figures(&text, "claim latency (p50 / p99)");
    assert!(claims[1] > 0.0, "PostgreSQL claims: {text}");
    assert!(text.contains("(50 of 50 ticks run, each once)"), "{text}");
    let counts = text.lines().filter(|l| l.contains("(40000 rows)")).count();
    assert_eq!(counts, 1, "{text}");
    assert_eq!(figures(&text, "count rows").len(), 2, "{text}");
}

#[test]
fn bench_detect_prints_core_seconds_per_model_and_as_configured() {
    let text = bench(&[
        "detect",
        "--names",
        "20",
        "--points",
        "60",
        "--backtest-points",
        "600",
    ]);
    assert!(
        text.contains("20 metrics x 60 points, batch example_random's SQL, preprocess and models"),
        "{text}"
    );
    assert!(figure(&text, "reading train_sql alone") >= 0.0, "{text}");
    for label in [
        "pca_default",
        "knn_default",
        "iforest (defaults)",
        "as configured (pca_default + knn_default)",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no line for {label}:\n{text}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let figures: Vec<f64> = words[words.len().saturating_sub(5)..]
            .iter()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(figures.len(), 5, "{line}");
        assert!(
            figures[3] > 0.0,
            "a model costs something per metric: {line}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("as configured") && l.contains(", one thread")),
        "the one-thread reference: {text}"
    );
    let bt = text
        .lines()
        .find(|l| l.starts_with("backtest of 1 metric x 600 points, retrained every 20"))
        .unwrap_or_else(|| panic!("no backtest line:\n{text}"));
    assert!(bt.contains("trainings alone"), "{bt}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("KNN training scores, 20 metrics x ")
                && l.contains("every pair (the previous way)")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("model files: 2 (")
            && l.contains("a JSON file per metric and model: 40 (")),
        "{text}"
    );
}

#[test]
fn bench_sandbox_times_the_built_in_frame_from_guest_to_stored_rows() {
    let text = bench(&[
        "sandbox",
        "--rows",
        "2000",
        "--store",
        "--runs",
        "3",
        "--native-runs",
        "0",
    ]);
    assert!(
        text.contains("the built-in frame, 2000 rows per run"),
        "{text}"
    );
    assert!(figure(&text, "store (DuckDB)") > 0.0, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("frame in guest → stored"))
        .unwrap_or_else(|| panic!("no guest → stored line:\n{text}"));
    assert!(
        line.contains("(encode + door + normalize + store)"),
        "{line}"
    );
}

#[test]
fn bench_detect_shows_a_hostile_model_tag_as_text() {
    let f = crate::support::Folder::with_defaults();
    f.write(
        "b/bd.yaml",
        "metric_batch: bd\n\
         ingest_sql: \"SELECT 1\"\n\
         model_configs: [{model_name: PCA, model_tag: \"t\\e]52;c;ZXZpbA==\\a\\r\\nerror: batch victim: forged\"}]\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .arg("--metrics")
        .arg(f.path())
        .args([
            "bench",
            "detect",
            "--batch",
            "bd",
            "--names",
            "3",
            "--points",
            "60",
            "--backtest-points",
            "0",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run sandstack bench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("t\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{d}\\nerror: batch victim: forged"),
        "{text}"
    );
    for line in text.lines() {
        assert!(!line.starts_with("error:"), "forged: {line}");
        assert!(!line.contains(['\x1b', '\x07', '\r']), "raw: {line:?}");
    }
}

/// Against a database that is in use, `bench store` leaves its rows
/// nowhere: its scratch schema, its claims and its runs go at the end, and
/// the database's own claims and runs stay.
#[test]
fn bench_store_leaves_a_used_postgresql_as_it_found_it() {
    use sandstack::store::pg::cluster::TempCluster;
    let cluster = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    let store = sandstack::store::Store::open(std::path::Path::new(&cluster.url)).expect("open");
    let mine = chrono::Utc::now().timestamp_micros();
    assert_eq!(
        store
            .claim_tick(
                "w",
                "sandstack_bench_mine",
                "ingest",
                mine,
                std::time::Duration::from_secs(60)
            )
            .expect("claim"),
        sandstack::store::Claim::Mine
    );
    drop(store);
    let count = |sql: &str| -> i64 {
        let mut pg = postgres::Client::connect(&cluster.url, postgres::NoTls).expect("connect");
        pg.query_one(sql, &[]).expect("count").get(0)
    };
    let (ticks, runs) = (
        count("SELECT count(*) FROM sandstack_ticks"),
        count("SELECT count(*) FROM sandstack_runs"),
    );
    assert_eq!(ticks, 1);
    let db = std::ffi::OsString::from(&cluster.url);
    let text = bench_with(&["--db".as_ref(), db.as_os_str()], STORE_TOY);
    assert!(text.contains("claims kept over 50 ticks"), "{text}");
    assert_eq!(
        count("SELECT count(*) FROM sandstack_ticks"),
        ticks,
        "claims left"
    );
    assert_eq!(
        count("SELECT count(*) FROM sandstack_runs"),
        runs,
        "runs left"
    );
    assert_eq!(
        count("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'sandstack_bench'"),
        0
    );
}

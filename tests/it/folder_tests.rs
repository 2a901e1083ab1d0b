//! `sandstack test` and `sandstack record` through the real binary: the
//! shipped examples' tests, a batch author's loop (record, change the code,
//! fail with a diff, update, pass), a template change caught by a fixture
//! history, and test files a hostile author could write.

use std::path::Path;
use std::process::Command;

use crate::support::{repo, Folder};

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `sandstack ARGS --metrics folder`, run in `cwd`.
fn sandstack(folder: &Path, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(args)
        .arg("--metrics")
        .arg(folder)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .env_remove("SANDSTACK_METRICS")
        .env_remove("SANDSTACK_POLICY")
        .output()
        .expect("run sandstack");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = crate::support::files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_shipped_examples_pass_their_tests_offline_and_report_junit() {
    let cwd = tempfile::tempdir().expect("tmp");
    let before = snapshot(&repo().join("metrics"));
    let junit = cwd.path().join("report.xml");
    let ran = sandstack(
        &repo().join("metrics"),
        cwd.path(),
        &["test", "--junit", junit.to_str().expect("utf-8")],
        // Any live request would go nowhere.
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ("HTTP_PROXY", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    for id in [
        "example_random/seeded",
        "example_sql/noise_spike",
        "hn_top_stories_scores/front_page",
    ] {
        assert!(
            ran.stdout
                .lines()
                .any(|l| l.starts_with("ok ") && l.contains(id)),
            "{id} did not pass:\n{}",
            ran.all()
        );
    }
    assert!(ran.stdout.contains("3 tests: 3 passed"), "{}", ran.all());
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("<testsuites name=\"sandstack test\" tests=\"3\" failures=\"0\" errors=\"0\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase classname=\"example_sql\" name=\"noise_spike\""),
        "{xml}"
    );
    // The run wrote nothing but the report: not into the folder, not
    // into the working directory (no models, plots or database).
    assert_eq!(snapshot(&repo().join("metrics")), before);
    let left: Vec<_> = crate::support::files_under(cwd.path());
    assert_eq!(
        left,
        vec![junit.clone()],
        "files left in the working directory"
    );
}

#[test]
fn a_fixture_history_is_judged_with_scores_alerts_and_changes() {
    let expected =
        std::fs::read_to_string(repo().join("metrics/examples/sql/tests/noise_spike.expected.csv"))
            .expect("expected file");
    // The spike at 23:30 is alerted on; the file holds scores too.
    assert!(
        expected.contains("2026-11-21T23:30:00Z,sql_noise,alert,1.0"),
        "{expected}"
    );
    assert!(
        expected.contains("2026-11-21T23:30:00Z,sql_noise,change,1.0"),
        "{expected}"
    );
    assert!(expected.contains(",sql_noise,score,"), "{expected}");
}

#[test]
fn an_authors_loop_record_change_fail_update_pass() {
    let f = Folder::with_defaults();
    f.copy(&repo().join("metrics/examples/random"), "examples/random");
    std::fs::remove_dir_all(f.path().join("examples/random/tests")).expect("no shipped tests");
    let cwd = tempfile::tempdir().expect("tmp");
    let recorded = sandstack(
        f.path(),
        cwd.path(),
        &["record", "example_random", "--name", "today"],
        &[],
    );
    assert_eq!(recorded.code, Some(0), "{}", recorded.all());
    assert!(
        recorded
            .stdout
            .contains("the replay gives the live run's values"),
        "{}",
        recorded.all()
    );
    let recording = f.path().join("examples/random/tests/today.yaml");
    let expected = f.path().join("examples/random/tests/today.expected.csv");
    let recorded_bytes = std::fs::read(&recording).expect("recording");
    assert!(std::fs::read_to_string(&expected)
        .expect("expected")
        .contains(",random_0,metric,"));
    // Recording again under the same name needs --force.
    let again = sandstack(
        f.path(),
        cwd.path(),
        &["record", "example_random", "--name", "today"],
        &[],
    );
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("exists: pass --force"),
        "{}",
        again.all()
    );

    let passed = sandstack(f.path(), cwd.path(), &["test"], &[]);
    assert_eq!(passed.code, Some(0), "{}", passed.all());
    assert!(
        passed.stdout.contains("1 tests: 1 passed"),
        "{}",
        passed.all()
    );

    // One value changes.
    let code = f.path().join("examples/random/random_metrics.py");
    let text = std::fs::read_to_string(&code).expect("code");
    let changed = text.replace(
        "    if rng.random() < 0.05:",
        "    values[0] += 1\n    if rng.random() < 0.05:",
    );
    assert_ne!(changed, text);
    std::fs::write(&code, changed).expect("write");
    let failed = sandstack(f.path(), cwd.path(), &["test"], &[]);
    assert_eq!(failed.code, Some(1), "{}", failed.all());
    let diff_line = failed
        .stdout
        .lines()
        .find(|l| l.contains("(random_0, metric,"))
        .unwrap_or_else(|| panic!("no line names the row:\n{}", failed.all()));
    assert!(
        diff_line.contains("metric_value expected ") && diff_line.contains(", got "),
        "{diff_line}"
    );
    assert!(
        failed.stdout.contains("FAILED  example_random/today"),
        "{}",
        failed.all()
    );
    assert!(failed.stdout.contains("1 row differs"), "{}", failed.all());
    assert!(
        failed
            .stdout
            .contains("note: recorded from other ingest code"),
        "{}",
        failed.all()
    );
    // Only random_0 moved.
    assert!(!failed.stdout.contains("(random_1,"), "{}", failed.all());

    let updated = sandstack(f.path(), cwd.path(), &["test", "--update"], &[]);
    assert_eq!(updated.code, Some(0), "{}", updated.all());
    assert!(updated.stdout.contains("updated "), "{}", updated.all());
    assert_eq!(
        std::fs::read(&recording).expect("recording"),
        recorded_bytes,
        "--update changed the recording"
    );
    let passed = sandstack(f.path(), cwd.path(), &["test"], &[]);
    assert_eq!(passed.code, Some(0), "{}", passed.all());
    assert!(crate::support::files_under(cwd.path()).is_empty());
}

#[test]
fn a_template_change_that_moves_an_alert_fails_the_fixture_test() {
    let f = Folder::with_defaults();
    f.copy(&repo().join("metrics/examples/sql"), "examples/sql");
    let cwd = tempfile::tempdir().expect("tmp");
    let passed = sandstack(f.path(), cwd.path(), &["test"], &[]);
    assert_eq!(passed.code, Some(0), "{}", passed.all());

    // The batch's own alert template, with a threshold ten times higher.
    let shipped = std::fs::read_to_string(repo().join("metrics/defaults/sql/alerts.sql"))
        .expect("alerts.sql");
    let strict = shipped.replace(
        "metric_score_smooth >= {{ alert_threshold }}",
        "metric_score_smooth >= {{ alert_threshold }} * 10",
    );
    assert_ne!(strict, shipped);
    f.write("examples/sql/strict_alerts.sql", &strict);
    let yaml = f.path().join("examples/sql/sql_metrics.yaml");
    let mut text = std::fs::read_to_string(&yaml).expect("yaml");
    text.push_str("alert_sql: >\n  {% include \"./examples/sql/strict_alerts.sql\" %}\n");
    std::fs::write(&yaml, text).expect("write");

    let failed = sandstack(f.path(), cwd.path(), &["test"], &[]);
    assert_eq!(failed.code, Some(1), "{}", failed.all());
    assert!(
        failed.stdout.contains(
            "(sql_noise, alert, 2026-11-21T23:30:00Z): expected (metric_value 1.0), not produced"
        ),
        "{}",
        failed.all()
    );
    assert!(
        failed.stdout.contains("FAILED  example_sql/noise_spike"),
        "{}",
        failed.all()
    );
    let updated = sandstack(f.path(), cwd.path(), &["test", "--update"], &[]);
    assert_eq!(updated.code, Some(0), "{}", updated.all());
    let passed = sandstack(f.path(), cwd.path(), &["test", "example_sql"], &[]);
    assert_eq!(passed.code, Some(0), "{}", passed.all());
}

#[test]
fn hostile_test_files_are_refused_and_nothing_outside_the_folder_is_touched() {
    let outside = tempfile::tempdir().expect("tmp");
    let secret = outside.path().join("secret.txt");
    std::fs::write(
        &secret,
        "metric_timestamp,metric_name,metric_type,metric_value\nthe operator's\n",
    )
    .expect("write");
    let f = Folder::with_defaults();
    f.copy(&repo().join("metrics/examples/random"), "examples/random");
    f.copy(&repo().join("metrics/examples/sql"), "examples/sql");
    let t = f.path().join("examples/random/tests");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, t.join(name)).expect("symlink")
    };
    link(&secret, "outside_recording.yaml");
    link(&secret, "outside.history.csv");
    // An expected file that points at the operator's file: --update must
    // not write through it.
    std::fs::copy(t.join("seeded.yaml"), t.join("linked.yaml")).expect("copy");
    link(&secret, "linked.expected.csv");
    std::fs::write(t.join("huge.yaml"), "x".repeat(2 << 20)).expect("write");
    // One large value aliased: few YAML events (the parser's own alias
    // limit lets it through), 38 MB once expanded (sandstack's budget does not).
    let laughs = format!(
        "version: 1\nbig: &big \"{}\"\nmany: [{}]\n",
        "x".repeat(600_000),
        vec!["*big"; 64].join(",")
    );
    std::fs::write(t.join("laughs.yaml"), laughs).expect("write");
    std::fs::write(t.join("malformed.yaml"), "version: 1\nbatch: [unclosed\n").expect("write");
    let seeded = std::fs::read_to_string(t.join("seeded.yaml")).expect("seeded");
    std::fs::write(
        t.join("elsewhere.yaml"),
        seeded.replace("batch: example_random", "batch: example_sql"),
    )
    .expect("write");
    // A hash that is not one (multibyte, an escape): refused, not sliced.
    let hash_line = seeded
        .lines()
        .find(|l| l.starts_with("function_sha256:"))
        .expect("hash line")
        .to_string();
    std::fs::write(
        t.join("badhash.yaml"),
        seeded.replace(
            &hash_line,
            "function_sha256: \"aaaaaaaaaaa\\u00e9\\e[31mred\"",
        ),
    )
    .expect("write");
    std::fs::copy(t.join("seeded.yaml"), t.join("bad.yaml")).expect("copy");
    std::fs::write(
        t.join("bad.expected.csv"),
        "metric_timestamp,metric_name,metric_type,metric_value\n2026-01-01T00:00:00Z,random_0,metric,lots\n",
    )
    .expect("write");
    std::fs::write(t.join("orphan.expected.csv"), "").expect("write");
    std::fs::write(t.join("bad$name.yaml"), &seeded).expect("write");
    // A tests folder that is a link to another one.
    std::fs::remove_dir_all(f.path().join("examples/sql/tests")).expect("rm");
    std::os::unix::fs::symlink(outside.path(), f.path().join("examples/sql/tests"))
        .expect("symlink");
    let outside_before = snapshot(outside.path());

    let cwd = tempfile::tempdir().expect("tmp");
    let env = [("SANDSTACK_CASSETTE_MAX_MB", "1")];
    let ran = sandstack(f.path(), cwd.path(), &["test", "--update"], &env);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let line_of = |start: &str, file: &str| -> String {
        ran.stdout
            .lines()
            .find(|l| l.starts_with(start) && l.contains(file))
            .unwrap_or_else(|| panic!("no {start} line for {file}:\n{}", ran.all()))
            .to_string()
    };
    let has = |start: &str, file: &str, text: &str| {
        let line = line_of(start, file);
        assert!(
            line.contains(text),
            "{line}\ndoes not say {text:?}; all:\n{}",
            ran.all()
        );
    };
    has("ERROR", "outside_recording.yaml", "it is a symlink");
    has("ERROR", "outside.history.csv", "it is a symlink");
    has("ERROR", "linked", "linked.expected.csv: it is a symlink");
    has(
        "ERROR",
        "huge.yaml",
        "it is 2048 KiB, over the 1024 KiB a recording may have (the operator sets SANDSTACK_CASSETTE_MAX_MB)",
    );
    has(
        "ERROR",
        "laughs.yaml",
        "it expands to more than 32 MiB parsed",
    );
    has(
        "ERROR",
        "malformed.yaml",
        "malformed.yaml: did not find expected ',' or ']'",
    );
    has(
        "ERROR",
        "elsewhere.yaml",
        "records batch `example_sql`, not `example_random`, the batch of its folder",
    );
    // An expected file that does not read fails its test, and --update
    // writes it again.
    has(
        "FAILED",
        "example_random/bad",
        "bad.expected.csv, line 2, column metric_value: `lots` is not a number",
    );
    assert!(std::fs::read_to_string(t.join("bad.expected.csv"))
        .expect("rewritten")
        .contains(",random_0,metric,"));
    assert!(
        std::fs::symlink_metadata(t.join("linked.expected.csv"))
            .expect("link")
            .file_type()
            .is_symlink(),
        "the linked expected file was replaced"
    );
    has("ERROR", "orphan.expected.csv", "no recording (orphan.yaml)");
    has(
        "ERROR",
        "badhash.yaml",
        "is not a SHA-256 in hex: record the run again",
    );
    assert!(
        !ran.all().contains('\u{1b}'),
        "an escape reached the terminal"
    );
    has("ERROR", "bad$name.yaml", "cannot name a test");
    has("ERROR", "sql/tests", "is not a folder (a symlink?)");
    // The good test still ran and passed.
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("ok ") && l.contains("example_random/seeded")),
        "{}",
        ran.all()
    );
    assert_eq!(
        snapshot(outside.path()),
        outside_before,
        "a file outside the folder changed"
    );
    assert!(crate::support::files_under(cwd.path()).is_empty());
}

#[test]
fn a_database_not_read_over_http_is_never_queried_by_a_replay() {
    // The database's address: a listener that counts who connects.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port().to_string();
    let f = Folder::with_defaults();
    f.write(
        "pg/pg.yaml",
        "metric_batch: pg_batch\ndb: postgres\ningest_sql: select now() as metric_timestamp, 'x' as metric_name, 1.0 as metric_value\n",
    );
    let seeded = std::fs::read_to_string(repo().join("metrics/examples/random/tests/seeded.yaml"))
        .expect("seeded");
    f.write(
        "pg/tests/run.yaml",
        &seeded.replace("batch: example_random", "batch: pg_batch"),
    );
    let env = [
        ("ANOMSTACK_POSTGRES_HOST", "127.0.0.1"),
        ("ANOMSTACK_POSTGRES_PORT", port.as_str()),
        // No user: the refusal comes before the settings are read.
    ];
    let cwd = tempfile::tempdir().expect("tmp");
    let ran = sandstack(f.path(), cwd.path(), &["test"], &env);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stdout.contains("ERROR   pg_batch/run: ")
            && ran.stdout.contains(
                "db: postgres is not read over HTTP, so a run of it cannot be recorded or replayed"
            ),
        "{}",
        ran.all()
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the database was connected to"
    );
}

#[test]
fn a_new_test_fails_until_accepted_and_fail_fast_stops_the_rest() {
    let f = Folder::with_defaults();
    f.copy(&repo().join("metrics/examples/random"), "examples/random");
    f.copy(&repo().join("metrics/examples/sql"), "examples/sql");
    std::fs::remove_file(f.path().join("examples/random/tests/seeded.expected.csv")).expect("rm");
    let cwd = tempfile::tempdir().expect("tmp");
    let ran = sandstack(f.path(), cwd.path(), &["test"], &[]);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stdout.contains("NEW     example_random/seeded (3 rows"),
        "{}",
        ran.all()
    );
    assert!(
        ran.stdout.contains("2 tests: 1 passed, 1 failed"),
        "{}",
        ran.all()
    );

    // One thread, in name order: the first fails, the second never starts.
    let ran = sandstack(
        f.path(),
        cwd.path(),
        &["test", "--fail-fast", "-j", "1"],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stdout
            .contains("skipped example_sql/noise_spike (--fail-fast)"),
        "{}",
        ran.all()
    );
    assert!(
        ran.stdout
            .contains("2 tests: 0 passed, 1 failed, 1 not run"),
        "{}",
        ran.all()
    );

    let ran = sandstack(
        f.path(),
        cwd.path(),
        &["test", "--filter", "no_such_test"],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(ran.stderr.contains("no tests found"), "{}", ran.all());

    // record keeps to the layout's names.
    f.write("examples/random/tests/clash.history.csv", "");
    let ran = sandstack(
        f.path(),
        cwd.path(),
        &["record", "example_random", "--name", "clash"],
        &[],
    );
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(
        ran.stderr
            .contains("clash.history.csv is test `clash` already"),
        "{}",
        ran.all()
    );
    assert!(!f.path().join("examples/random/tests/clash.yaml").exists());
}

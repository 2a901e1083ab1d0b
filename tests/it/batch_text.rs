//! Text from a batch on the operator's terminal, through the real binary:
//! a YAML key, a file name, a `summary_sql` result, DuckDB's echo of a
//! failing statement in an error, a run's stored error and a log line, each
//! holding an OSC 52 clipboard write, a title change, a carriage return and
//! a newline that would forge `error: batch victim: ...`. Each test reads
//! the raw bytes written and asserts the exact escaped line.

use std::path::Path;
use std::process::Output;

use sandstack::store::{RunRecord, RunStatus, Store};

use crate::support::{key, run_sandstack, Folder};

/// A clipboard write, a title change and a forged line, as a YAML
/// double-quoted string writes them.
const KEY_IN_YAML: &str = "\\u001b]52;c;ZXZpbA==\\u0007title\\nerror: batch victim: forged";

/// The same text once escaped for a terminal line.
const KEY_SHOWN: &str = "\\u{1b}]52;c;ZXZpbA==\\u{7}title\\nerror: batch victim: forged";

/// SQL that makes the same text (DuckDB's `chr`).
const SQL_TEXT: &str =
    "chr(27) || ']52;c;ZXZpbA==' || chr(7) || 'title' || chr(10) || 'error: batch victim: forged'";

/// stdout and stderr as text, after checking that no byte of either acts
/// on a terminal and no line passes for an error about another batch.
fn inert(out: &Output) -> (String, String) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let raw = String::from_utf8_lossy(bytes);
        assert!(
            !bytes
                .iter()
                .any(|b| matches!(b, 0x1b | 0x07 | b'\r' | 0x9b)),
            "{name} holds a control byte: {raw:?}"
        );
        assert!(
            !raw.lines().any(|l| l.starts_with("error: batch victim")),
            "{name} has a forged line: {raw}"
        );
    }
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real binary, its output piped as a test or a service reads it.
fn sandstack(args: &[&str], f: &Folder, db: &Path) -> Output {
    run_sandstack(args, f, db, &[])
}

#[test]
fn validate_shows_a_hostile_key_and_file_name_on_one_line() {
    let f = Folder::with_defaults();
    f.write(
        "b/author.yaml",
        &format!("metric_batch: \"author\"\ningest_sql: \"SELECT 1\"\n\"{KEY_IN_YAML}\": 1\n"),
    );
    let file = "b/evil\u{1b}]0;t\u{7}\nerror: batch victim: forged.yaml";
    f.write(file, "metric_batch: \"evil\"\ningest_sql: \"SELECT 1\"\n");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = sandstack(&["validate"], &f, &tmp.path().join("d.duckdb"));
    let (stdout, stderr) = inert(&out);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "warning: {}: unknown key `{KEY_SHOWN}` is ignored",
            f.shown("b/author.yaml")
        )],
        "{stderr}"
    );
    let evil = stdout
        .lines()
        .find(|l| l.starts_with("evil "))
        .unwrap_or_else(|| panic!("no line for batch evil: {stdout}"));
    let shown_file = format!(
        "{}/b/evil\\u{{1b}}]0;t\\u{{7}}\\nerror: batch victim: forged.yaml",
        f.path().display()
    );
    assert!(
        evil.starts_with(&format!("evil (sql, table metrics, {shown_file}): ")),
        "{evil}"
    );
}

#[test]
fn summary_shows_what_its_sql_returned_escaped_cell_by_cell() {
    let f = Folder::with_defaults();
    f.write(
        "b/author.yaml",
        &format!(
            "metric_batch: \"author\"\ningest_sql: \"SELECT 1\"\nsummary_sql: \"SELECT {SQL_TEXT} AS note, 7 AS n\"\n"
        ),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let out = sandstack(&["summary", "author"], &f, &tmp.path().join("d.duckdb"));
    assert!(out.status.success(), "{out:?}");
    let (stdout, _) = inert(&out);
    let width = KEY_SHOWN.len();
    let rule = format!("+{}+---+", "-".repeat(width + 2));
    assert_eq!(
        stdout,
        format!(
            "{rule}\n| {:<width$} | n |\n{rule}\n| {KEY_SHOWN} | 7 |\n{rule}\n",
            "note"
        )
    );
}

#[test]
fn an_error_that_echoes_the_batch_sql_is_one_record() {
    let f = Folder::with_defaults();
    f.write(
        "b/author.yaml",
        &format!(
            "metric_batch: \"author\"\ningest_sql: \"SELECT 1\"\nsummary_sql: \"SELECT CAST({SQL_TEXT} AS INTEGER) AS n\"\n"
        ),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let out = sandstack(&["summary", "author"], &f, &tmp.path().join("d.duckdb"));
    assert_eq!(out.status.code(), Some(1));
    let (_, stderr) = inert(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error: {stderr}"));
    // DuckDB's words, the value's newline starting an indented line, then
    // its echo of the statement, indented too.
    assert_eq!(
        lines[at..at + 4],
        [
            "error: batch author: summary_sql: Conversion Error: Could not convert string '\\u{1b}]52;c;ZXZpbA==\\u{7}title",
            "  error: batch victim: forged' to INT32",
            "  ",
            "  LINE 1: SELECT CAST(chr(27) || ']52;c;ZXZpbA==' || chr(7) || 'title' |...",
        ],
        "{stderr}"
    );
    assert!(
        lines[at + 1..].iter().all(|l| l.starts_with("  ")),
        "{stderr}"
    );
}

/// A run's error as DuckDB words a failed cast of the batch's text, with a
/// carriage return and a screen clear after it, and its echo of the
/// statement.
const RUN_ERROR: &str = "batch author: ingest_sql: Conversion Error: Could not convert string '\u{1b}]52;c;ZXZpbA==\u{7}title\nerror: batch victim: forged' to INT32\r\u{1b}[2J\n\nLINE 1: SELECT CAST(chr(27) || ']52;c;ZXZpbA==' ...\n               ^";

/// A database holding one failed run of batch `author` with [`RUN_ERROR`],
/// and a log holding controls.
fn failed_run(db: &Path) {
    let store = Store::open(db).expect("db");
    let at = 1_767_225_600_000_000;
    store
        .record_run(&RunRecord {
            run_id: 0,
            batch: "author".into(),
            job: "ingest".into(),
            scheduled_us: at,
            started_us: at,
            ended_us: at + 1_000_000,
            status: RunStatus::Failed,
            error: Some(RUN_ERROR.into()),
            rows: 0,
            fuel: 0,
            wall_ms: 900.0,
            cassette: None,
            log: Some("printed \u{1b}]0;title\u{7}\u{202e}gnp.exe\nover\rwritten\n".into()),
            attempt: 1,
            worker: None,
        })
        .expect("record");
}

#[test]
fn runs_show_a_stored_error_escaped_and_indented() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("d.duckdb");
    failed_run(&db);
    let f = Folder::with_defaults();
    let head = format!(
        "{:>7}  {:<23}  {:<24} {:<8} {:<11} {:>7} {:>9} {:>12}\n{:>7}  {:<23}  {:<24} {:<8} {:<11} {:>7} {:>9.1} {:>12}\n",
        "run", "started (UTC)", "batch", "job", "status", "rows", "wall ms", "fuel",
        1, "2026-01-01 00:00:00.000", "author", "ingest", "failed", 0, 900.0, 0
    );
    let indent = " ".repeat(11);
    let first = "batch author: ingest_sql: Conversion Error: Could not convert string '\\u{1b}]52;c;ZXZpbA==\\u{7}title";

    let out = sandstack(&["runs", "--failed"], &f, &db);
    let (stdout, _) = inert(&out);
    assert_eq!(
        stdout,
        format!(
            "{head}{indent}{first}\n\
             {indent}error: batch victim: forged' to INT32\\u{{d}}\\u{{1b}}[2J\n\
             {indent}\n\
             {indent}LINE 1: SELECT CAST(chr(27) || ']52;c;ZXZpbA==' ...\n\
             {indent}               ^\n"
        )
    );

    let out = sandstack(&["runs"], &f, &db);
    let (stdout, _) = inert(&out);
    assert_eq!(stdout, format!("{head}{indent}{first}\n"));

    let out = sandstack(&["runs", "--show", "1"], &f, &db);
    let (stdout, _) = inert(&out);
    assert_eq!(
        stdout,
        format!(
            "run 1: batch author, job ingest, failed\n\
             \x20 scheduled 2026-01-01 00:00:00.000\n\
             \x20 started   2026-01-01 00:00:00.000\n\
             \x20 ended     2026-01-01 00:00:01.000 (900.0 ms)\n\
             \x20 rows 0, fuel 0\n\
             --- error ---\n\
             \x20 {first}\n\
             \x20 error: batch victim: forged' to INT32\\u{{d}}\\u{{1b}}[2J\n\
             \x20 \n\
             \x20 LINE 1: SELECT CAST(chr(27) || ']52;c;ZXZpbA==' ...\n\
             \x20                ^\n\
             --- log ---\n\
             \x20 printed \\u{{1b}}]0;title\\u{{7}}\\u{{202e}}gnp.exe\n\
             \x20 over\\u{{d}}written\n"
        )
    );
}

#[test]
fn a_log_line_holding_the_batch_text_stays_one_line() {
    let f = Folder::with_defaults();
    f.write(
        "b/author.yaml",
        &format!(
            "metric_batch: \"author\"\n\
             ingest_sql: \"SELECT 1\"\n\
             tholdalert_methods: \"log\"\n\
             tholdalert_thresholds:\n  m: {{upper: 1}}\n\
             plot_sql: \"SELECT CAST({SQL_TEXT} AS INTEGER) AS n\"\n"
        ),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("d.duckdb");
    {
        let store = Store::open(&db).expect("db");
        store.ensure_metrics_table(&key("metrics")).expect("table");
        crate::support::duck(&store)
            .execute_batch(
                "INSERT INTO metrics VALUES (now()::TIMESTAMP, 'author', 'm', 'metric', 5.0, NULL)",
            )
            .expect("insert");
    }
    let out = sandstack(&["alert", "author"], &f, &db);
    assert!(out.status.success(), "{out:?}");
    let (_, stderr) = inert(&out);
    let line = stderr
        .lines()
        .find(|l| l.contains("no plots for the alerts"))
        .unwrap_or_else(|| panic!("no warning about the plot: {stderr}"));
    // After the time and level: DuckDB's words and its echo of the
    // statement, all on this one line.
    let (_, said) = line
        .split_once("  WARN ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        said.starts_with(
            "no plots for the alerts batch=author error=batch author: plot_sql: Conversion Error: \
             Could not convert string '\\u{1b}]52;c;ZXZpbA==\\u{7}title\\nerror: batch victim: forged' \
             to INT32\\n\\nLINE 1: SELECT CAST("
        ),
        "{line}"
    );
}

#[test]
fn a_dry_run_shows_the_rows_metadata_escaped_in_its_cell() {
    let f = Folder::with_defaults();
    f.write(
        "b/author.yaml",
        &format!(
            "metric_batch: \"author\"\n\
             ingest_sql: \"SELECT TIMESTAMP '2026-01-01 00:00:00' AS metric_timestamp, 'm' AS metric_name, \
             1.0 AS metric_value, {SQL_TEXT} AS metadata\"\n"
        ),
    );
    let tmp = tempfile::tempdir().expect("tmp");
    let out = sandstack(
        &["ingest", "author", "--dry-run"],
        &f,
        &tmp.path().join("d.duckdb"),
    );
    assert!(out.status.success(), "{out:?}");
    let (stdout, _) = inert(&out);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| 2026-01-01"))
        .unwrap_or_else(|| panic!("no row: {stdout}"));
    assert!(row.ends_with(&format!(" | {KEY_SHOWN} |")), "{stdout}");
}

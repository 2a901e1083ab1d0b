//! `sandstack import` end to end: the command, its summary, and files it
//! must refuse without storing anything.

use crate::support::{key, run_sandstack, Folder};
use sandstack::store::Store;

fn folder() -> Folder {
    let f = Folder::with_defaults();
    f.write(
        "hist/hist.yaml",
        "metric_batch: hist\ningest_sql: SELECT 1\n",
    );
    f
}

fn rows(db: &std::path::Path) -> u64 {
    if !db.exists() {
        return 0;
    }
    Store::open(db)
        .expect("open")
        .count_rows(&key("metrics"))
        .expect("count")
}

#[test]
fn a_csv_history_imports_once_and_says_what_it_did() {
    let f = folder();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("s.duckdb");
    let csv = dir.path().join("cpu.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..500 {
        text.push_str(&format!("{},{}\n", 1_704_067_200 + i * 600, (i % 7) as f64));
    }
    std::fs::write(&csv, text).expect("write");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "import".to_string(),
            "hist".into(),
            csv.display().to_string(),
        ];
        a.extend(["--metric", "cpu", "--timestamp-format", "epoch_s"].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_sandstack(&a, &f, &db, &[])
    };
    let out = run(&["--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("batch hist: would store 500 rows of 1 metric, 2024-01-01 00:00:00 to 2024-01-04 11:10:00 UTC in metrics"), "{stdout}");
    assert!(!db.exists(), "a dry run creates no database");
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&db), 500);
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nothing new to store"), "{stdout}");
    assert!(
        stdout.contains("500 rows the batch already had"),
        "{stdout}"
    );
    assert_eq!(rows(&db), 500);
}

#[test]
fn files_that_do_not_fit_are_refused_and_nothing_is_stored() {
    let f = folder();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("s.duckdb");
    let write = |name: &str, text: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let good = write("good.csv", b"time,m\n2024-01-01,1\n");
    let big = write("big.csv", &[b'1'; 2 << 20]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                good.clone(),
                write("bad.csv", b"time,m\n2024-01-01,1\n2024-01-02,oops\n"),
            ],
            "bad.csv: row 2, column `m`: \"oops\" is not a number",
        ),
        (
            vec![write("cols.csv", b"a,b\n1,2\n")],
            "no time column: found a, b",
        ),
        (
            vec![write("far.csv", b"time,m\n3024-01-01,1\n")],
            "outside the batch's allowed times",
        ),
        (
            vec![write("x.parquet", b"PAR1 not really")],
            "not a Parquet file",
        ),
        (vec![write("x.xlsx", b"")], "cannot tell the format"),
        (
            vec![big, "--max-file-mb".into(), "1".into()],
            "over the limit of 1048576 (--max-file-mb)",
        ),
        (
            vec![good.clone(), "--max-rows".into(), "0".into()],
            "over 0 rows (--max-rows)",
        ),
        (
            vec![write("nul.csv", b"time,m\n2024-01-01,\x00\x01\n")],
            "is not a number",
        ),
        (
            vec![good.clone(), "--timezone".into(), "Mars/Olympus".into()],
            "--timezone",
        ),
        (
            vec![dir.path().join("missing.csv").display().to_string()],
            "no such file",
        ),
    ];
    for (files, expected) in cases {
        let mut args = vec!["import", "hist"];
        args.extend(files.iter().map(String::as_str));
        let out = run_sandstack(&args, &f, &db, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{files:?} should fail");
        assert!(stderr.contains(expected), "{files:?}: {stderr}");
        assert!(!stderr.contains('\u{0}'), "escaped: {stderr}");
        assert_eq!(rows(&db), 0, "{files:?}: nothing stored");
    }
}

#[test]
fn old_history_is_trained_on_at_its_own_time() {
    let f = folder();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("s.duckdb");
    let csv = dir.path().join("old.csv");
    let mut text = String::from("time,load\n");
    for i in 0..400 {
        let v = 10.0 + ((i as f64) / 24.0 * std::f64::consts::TAU).sin();
        text.push_str(&format!("{},{v:.3}\n", 1_577_836_800 + i * 3600));
    }
    std::fs::write(&csv, text).expect("write");
    let run = |args: &[&str]| run_sandstack(args, &f, &db, &[]);
    let csv = csv.display().to_string();
    let out = run(&["import", "hist", &csv, "--timestamp-format", "epoch_s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2020's rows are outside the shipped train_sql's window today...
    let out = run(&["train", "hist"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 0 models"));
    // ...and inside it at the time of the newest one.
    let out = run(&["train", "hist", "--at", "latest"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("load: "), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("running at 2020-01-17 15:00:00 UTC"));
    let out = run(&["score", "hist", "--at", "2020-01-17 15:00"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stored"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["train", "hist", "--at", "soon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`soon` is not a time"));
}

#[test]
fn a_batch_of_imported_history_only_needs_no_ingest_and_says_so_if_asked() {
    let f = Folder::with_defaults();
    f.write("old/old.yaml", "metric_batch: old\ndisable_ingest: true\n");
    f.write("bad/bad.yaml", "metric_batch: bad\n");
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("s.duckdb");
    let folder = f.load(&[]);
    assert!(folder.batch("old").is_some(), "{:?}", folder.errors);
    let refused = folder
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        refused.contains(
            "or disable_ingest: true when its history only comes from `sandstack import`"
        ),
        "{refused}"
    );
    f.write("bad/bad.yaml", "metric_batch: bad\ningest_sql: SELECT 1\n");
    let csv = dir.path().join("cpu.csv");
    std::fs::write(&csv, "timestamp,value\n2024-01-01,1\n2024-01-02,2\n").expect("write");
    let out = run_sandstack(
        &[
            "import",
            "old",
            csv.to_str().expect("path"),
            "--metric",
            "cpu",
        ],
        &f,
        &db,
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&db), 2);
    let out = run_sandstack(&["ingest", "old"], &f, &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("its history comes from `sandstack import`"),
        "{stderr}"
    );
}

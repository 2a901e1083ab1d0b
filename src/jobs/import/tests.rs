use super::*;

struct Quiet;
impl Progress for Quiet {
    fn read(&self, _: u64) {}
    fn phase(&self, _: &str) {}
}

fn spec() -> BatchSpec {
    crate::config::test_spec("metric_batch: hist\ningest_sql: SELECT 1\n")
}

fn opts() -> ImportOptions {
    ImportOptions {
        format: None,
        timestamp_column: None,
        name_column: "metric_name".into(),
        value_column: None,
        metric: None,
        columns: Vec::new(),
        time: TimeReader {
            format: cells::TimeFormat::Auto,
            zone: chrono_tz::UTC,
        },
        caps: ReadCaps {
            max_file_bytes: 1 << 20,
            max_rows: 10_000,
        },
        dry_run: false,
    }
}

fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn stored(store: &Store) -> Vec<(String, f64)> {
    let rows = store
        .read_rows(&spec().table_key, Some("hist"))
        .expect("read");
    let mut out = Vec::new();
    for b in rows {
        let n = b
            .column_by_name("metric_name")
            .expect("name")
            .as_string::<i32>()
            .clone();
        let v = b
            .column_by_name("metric_value")
            .expect("value")
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone();
        for i in 0..b.num_rows() {
            out.push((n.value(i).to_string(), v.value(i)));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    out
}

#[test]
fn long_wide_and_single_series_files_import() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let long = file(
        &d,
        "long.csv",
        "metric_timestamp,metric_name,metric_value\n2024-01-01 00:00,cpu,1\n2024-01-01 00:10,cpu,2\n",
    );
    let wide = file(
        &d,
        "wide.csv",
        "time,mem,disk\n2024-01-01 00:00,10,\n2024-01-01 00:10,11,5\n",
    );
    let r = run(&spec(), &mut store, &[long, wide], &opts(), &Quiet).expect("import");
    assert_eq!(r.stored, 5);
    assert_eq!(r.empty_values, 1, "disk's empty cell");
    assert_eq!(r.metrics.len(), 3);
    assert_eq!(r.first_us, Some(1_704_067_200_000_000));
    let single = file(&d, "one.csv", "timestamp,value\n2024-01-02 00:00,7\n");
    let o = ImportOptions {
        metric: Some("latency".into()),
        ..opts()
    };
    run(&spec(), &mut store, &[single], &o, &Quiet).expect("single");
    assert_eq!(stored(&store).len(), 6);
    assert!(stored(&store).contains(&("latency".to_string(), 7.0)));
}

#[test]
fn a_second_import_of_the_same_rows_stores_nothing_new() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let f = file(
        &d,
        "a.csv",
        "time,m\n2024-01-01,1\n2024-01-02,2\n2024-01-02,3\n",
    );
    let r = run(
        &spec(),
        &mut store,
        std::slice::from_ref(&f),
        &opts(),
        &Quiet,
    )
    .expect("first");
    assert_eq!((r.stored, r.repeated), (2, 1));
    let r = run(&spec(), &mut store, &[f], &opts(), &Quiet).expect("again");
    assert_eq!((r.stored, r.already_stored), (0, 2));
    assert_eq!(stored(&store), vec![("m".into(), 1.0), ("m".into(), 2.0)]);
}

#[test]
fn a_bad_cell_stops_everything_and_names_row_and_column() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let good = file(&d, "good.csv", "time,m\n2024-01-01,1\n");
    let bad = file(&d, "bad.csv", "time,m\n2024-01-01,1\n2024-01-02,12abc\n");
    let e = run(&spec(), &mut store, &[good, bad], &opts(), &Quiet).expect_err("bad");
    let text = e.to_string();
    assert!(
        text.contains("bad.csv: row 2, column `m`: \"12abc\" is not a number"),
        "{text}"
    );
    assert!(stored(&store).is_empty(), "nothing stored");
}

#[test]
fn absurd_times_and_bad_names_are_refused() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let far = file(&d, "far.csv", "time,m\n2024-01-01,1\n9999-01-01,2\n");
    let e = run(&spec(), &mut store, &[far], &opts(), &Quiet).expect_err("far");
    assert!(e.to_string().contains("row 2, column `time`"), "{e}");
    assert!(e.to_string().contains("ingest_timestamp_max"), "{e}");
    let names = file(
        &d,
        "n.csv",
        "time,metric_name,metric_value\n2024-01-01,\"a\u{1b}[2J\",1\n",
    );
    let e = run(&spec(), &mut store, &[names], &opts(), &Quiet).expect_err("name");
    assert!(e.to_string().contains("control character"), "{e}");
    assert!(!e.to_string().contains('\u{1b}'), "escaped: {e}");
    let header = file(&d, "h.csv", "time,\"x\u{7}\"\n2024-01-01,1\n");
    let e = run(&spec(), &mut store, &[header], &opts(), &Quiet).expect_err("header");
    assert!(e.to_string().contains("control character"), "{e}");
    assert!(stored(&store).is_empty());
}

#[test]
fn columns_that_do_not_fit_say_what_was_found() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let f = file(&d, "a.csv", "when,a,b\n2024-01-01,1,2\n");
    let e = run(
        &spec(),
        &mut store,
        std::slice::from_ref(&f),
        &opts(),
        &Quiet,
    )
    .expect_err("no time");
    assert!(e.to_string().contains("found when, a, b"), "{e}");
    let o = ImportOptions {
        timestamp_column: Some("when".into()),
        metric: Some("x".into()),
        ..opts()
    };
    let e = run(&spec(), &mut store, &[f], &o, &Quiet).expect_err("two values");
    assert!(e.to_string().contains("--value-column"), "{e}");
}

#[test]
fn a_dry_run_stores_nothing() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let f = file(&d, "a.csv", "time,m\n2024-01-01,1\n");
    let o = ImportOptions {
        dry_run: true,
        ..opts()
    };
    assert_eq!(
        run(&spec(), &mut store, &[f], &o, &Quiet)
            .expect("dry")
            .stored,
        1
    );
    assert!(stored(&store).is_empty());
}

#[test]
fn ndjson_and_parquet_read_like_csv() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let json = file(
        &d,
        "a.ndjson",
        "{\"timestamp\": \"2024-01-01T00:00:00Z\", \"cpu\": 1.5}\n{\"timestamp\": \"2024-01-01T00:10:00Z\", \"cpu\": 2}\n",
    );
    // A Parquet file with native types: a zoned timestamp and floats.
    let pq = d.path().join("b.parquet");
    let t = arrow::array::TimestampMicrosecondArray::from(vec![1_704_070_800_000_000i64])
        .with_timezone("UTC");
    let batch = RecordBatch::try_from_iter(vec![
        ("ts", Arc::new(t) as ArrayRef),
        ("mem", Arc::new(Float64Array::from(vec![3.0])) as ArrayRef),
    ])
    .expect("batch");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&pq).expect("create"),
        batch.schema(),
        None,
    )
    .expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let r = run(&spec(), &mut store, &[json, pq], &opts(), &Quiet).expect("import");
    assert_eq!(r.stored, 3);
    assert_eq!(
        stored(&store),
        vec![
            ("cpu".into(), 1.5),
            ("cpu".into(), 2.0),
            ("mem".into(), 3.0)
        ]
    );
}

#[test]
fn garbage_files_are_refused_clearly() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let pq = file(&d, "x.parquet", "this is not parquet");
    let e = run(&spec(), &mut store, &[pq], &opts(), &Quiet).expect_err("pq");
    assert!(e.to_string().contains("not a Parquet file"), "{e}");
    let ragged = file(&d, "r.csv", "time,m\n2024-01-01,1,9\n");
    let e = run(&spec(), &mut store, &[ragged], &opts(), &Quiet).expect_err("ragged");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:", d.path().join("r.csv").display())),
        "{e}"
    );
    let json = file(&d, "j.ndjson", "[1, 2, 3]\n");
    assert!(run(&spec(), &mut store, &[json], &opts(), &Quiet).is_err());
    let empty = file(&d, "e.csv", "");
    assert!(run(&spec(), &mut store, &[empty], &opts(), &Quiet).is_err());
    assert!(stored(&store).is_empty());
}

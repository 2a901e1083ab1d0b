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
    let e = run(&spec(), &mut store, &[json], &opts(), &Quiet).expect_err("not objects");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: not newline-delimited JSON objects: Json error: Expected JSON record to be an object, found Array [Number(1), Number(2), Number(3)]",
            d.path().join("j.ndjson").display()
        )
    );
    let empty = file(&d, "e.csv", "");
    let e = run(&spec(), &mut store, &[empty], &opts(), &Quiet).expect_err("empty");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the file is empty: the first line must name the columns",
            d.path().join("e.csv").display()
        )
    );
    assert!(stored(&store).is_empty());
}

/// Written compressed, as most Parquet files are.
fn parquet(path: &Path, batch: &RecordBatch) {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let out = std::fs::File::create(path).expect("create");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(out, batch.schema(), Some(props)).expect("writer");
    w.write(batch).expect("write");
    w.close().expect("close");
}

#[test]
fn times_that_overflow_a_cast_are_refused_not_stored_at_1970() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let pq = d.path().join("far.parquet");
    let t = arrow::array::TimestampMillisecondArray::from(vec![1i64 << 62]);
    let batch = RecordBatch::try_from_iter(vec![
        ("timestamp", Arc::new(t) as ArrayRef),
        ("v", Arc::new(Float64Array::from(vec![42.0])) as ArrayRef),
    ])
    .expect("batch");
    parquet(&pq, &batch);
    let e = run(&spec(), &mut store, &[pq], &opts(), &Quiet).expect_err("overflow");
    assert!(e.to_string().contains("row 1, column `timestamp`"), "{e}");
    assert!(stored(&store).is_empty());
}

#[test]
fn reading_is_bounded_whatever_the_file_claims() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    // Too many columns, refused from the header.
    let header: Vec<String> = (0..read::MAX_COLUMNS + 1)
        .map(|i| format!("c{i}"))
        .collect();
    let wide = file(&d, "wide.csv", &format!("time,{}\n", header.join(",")));
    let e = run(&spec(), &mut store, &[wide], &opts(), &Quiet).expect_err("columns");
    assert!(e.to_string().contains("at most 10000"), "{e}");
    // --max-rows counts values, not lines.
    let f = file(
        &d,
        "v.csv",
        "time,a,b,c\n2024-01-01,1,2,3\n2024-01-02,1,2,3\n",
    );
    let o = ImportOptions {
        caps: ReadCaps {
            max_file_bytes: 1 << 20,
            max_rows: 5,
        },
        ..opts()
    };
    let e = run(&spec(), &mut store, &[f], &o, &Quiet).expect_err("values");
    assert!(e.to_string().contains("over 5 values"), "{e}");
    // A FIFO would block an open: it is not a regular file.
    let fifo = d.path().join("pipe.csv");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = run(&spec(), &mut store, &[fifo], &opts(), &Quiet).expect_err("fifo");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    // A Parquet file whose pages unpack past the cap.
    let pq = d.path().join("bomb.parquet");
    let big = "1".repeat(2 << 20);
    let batch = RecordBatch::try_from_iter(vec![
        (
            "timestamp",
            Arc::new(StringArray::from(vec!["2024-01-01"])) as ArrayRef,
        ),
        (
            "v",
            Arc::new(StringArray::from(vec![big.as_str()])) as ArrayRef,
        ),
    ])
    .expect("batch");
    parquet(&pq, &batch);
    assert!(
        std::fs::metadata(&pq).expect("size").len() < 1 << 20,
        "compressed small"
    );
    let e = run(&spec(), &mut store, &[pq], &opts(), &Quiet).expect_err("bomb");
    assert!(e.to_string().contains("--max-file-mb"), "{e}");
    assert!(stored(&store).is_empty());
}

#[test]
fn ndjson_is_flat_and_every_key_counts() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let deep = format!(
        "{{\"timestamp\": \"2024-01-01\", \"v\": {}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let f = file(&d, "deep.ndjson", &deep);
    let e = run(&spec(), &mut store, &[f], &opts(), &Quiet).expect_err("nested");
    assert!(
        e.to_string()
            .contains("line 1: a value is an object or array"),
        "{e}"
    );
    let mut late = String::new();
    for i in 0..1200 {
        late.push_str(&format!(
            "{{\"timestamp\": \"2024-01-01T00:{:02}:{:02}Z\", \"v\": 1}}\n",
            i / 60 % 60,
            i % 60
        ));
    }
    late.push_str("{\"timestamp\": \"2024-01-02\", \"late\": 42}\n");
    let f = file(&d, "late.ndjson", &late);
    let r = run(&spec(), &mut store, &[f], &opts(), &Quiet).expect("late keys");
    assert!(r.metrics.contains("late"), "{:?}", r.metrics);
}

#[test]
fn large_numbers_are_kept_or_refused_never_dropped() {
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let f = file(&d, "big.csv", "time,v\n2024-01-01,1e306\n2024-01-02,inf\n");
    let r = run(&spec(), &mut store, &[f], &opts(), &Quiet).expect("big");
    assert_eq!((r.stored, r.empty_values), (1, 1));
    assert_eq!(stored(&store), vec![("v".into(), 1e306)]);
    let f = file(&d, "huge.csv", "time,v\n2024-01-03,1e309\n");
    let e = run(&spec(), &mut store, &[f], &opts(), &Quiet).expect_err("huge");
    assert!(e.to_string().contains("too large for a number"), "{e}");
}

#[test]
fn options_that_cannot_apply_say_so() {
    assert!("%Y-%m-%d %H:%M %Z".parse::<cells::TimeFormat>().is_err());
    let d = tempfile::tempdir().expect("dir");
    let mut store = Store::in_memory().expect("db");
    let f = file(
        &d,
        "long.csv",
        "time,metric_name,metric_value\n2024-01-01,a,1\n",
    );
    let o = ImportOptions {
        columns: vec!["a".into()],
        ..opts()
    };
    let e = run(&spec(), &mut store, &[f], &o, &Quiet).expect_err("long");
    assert!(e.to_string().contains("this file is long"), "{e}");
    let header = file(&d, "h.csv", "time,v\n");
    let e = run(&spec(), &mut store, &[header], &opts(), &Quiet).expect_err("no rows");
    assert!(e.to_string().contains("no rows"), "{e}");
    let names = file(&d, "n.csv", "\"ti\nme\",v\n2024-01-01,1\n");
    let e = run(&spec(), &mut store, &[names], &opts(), &Quiet).expect_err("names");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

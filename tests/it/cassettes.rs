//! Record and replay: the committed cassettes of the shipped examples,
//! byte-identical replays, scrubbed secrets, record modes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;

use sandstack::cassette::RecordMode;
use sandstack::config::BatchSpec;
use sandstack::jobs::ingest::IngestReport;
use sandstack::store::Store;

use crate::support::{python_batch, repo, with_cassette, TestServer};

/// Every stored row, as text, in a stable order.
fn dump(store: &Store, table: &sandstack::store::TableKey) -> Vec<String> {
    let mut stmt = crate::support::duck(store)
        .prepare(&format!(
            "select metric_timestamp::varchar || '|' || metric_batch || '|' || metric_name || '|' || metric_type || '|' || metric_value::varchar from {table} order by metric_name"
        ))
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn replay_twice(spec: &BatchSpec, cassette: &Path) -> Vec<String> {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut store = Store::in_memory().expect("store");
        with_cassette(spec, &mut store, cassette, RecordMode::None, &[])
            .unwrap_or_else(|e| panic!("{}", e.error));
        runs.push(dump(&store, &spec.table_key));
    }
    assert_eq!(runs[0], runs[1], "two replays stored different rows");
    runs.remove(0)
}

#[test]
fn the_hackernews_cassette_replays_the_same_four_values_with_no_network() {
    // Point the API at a port nothing listens on: any live request would fail.
    let env = [(
        "SANDSTACK__HN_TOP_STORIES_SCORES__HTTP_REWRITE",
        "{\"https://hacker-news.firebaseio.com\": \"http://127.0.0.1:9\"}",
    )];
    let env_map = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let folder = sandstack::config::load(&repo().join("metrics"), &env_map);
    let spec = folder.batch("hn_top_stories_scores").expect("hn").clone();
    let rows = replay_twice(
        &spec,
        &repo().join("metrics/examples/hackernews/tests/front_page.yaml"),
    );
    let values: Vec<&str> = rows
        .iter()
        .map(|r| r.rsplit('|').next().unwrap_or(""))
        .collect();
    assert_eq!(values, ["216.5", "601.0", "23.0", "2165.0"], "{rows:?}");
}

#[test]
fn the_random_example_cassette_replays_identically() {
    let folder = sandstack::config::load(&repo().join("metrics"), &Default::default());
    let spec = folder
        .batch("example_random")
        .expect("example_random")
        .clone();
    let rows = replay_twice(
        &spec,
        &repo().join("metrics/examples/random/tests/seeded.yaml"),
    );
    assert_eq!(rows.len(), 3);
}

const NONDETERMINISTIC: &str = r#"import random, time, uuid, datetime
import numpy as np
import pandas as pd

def ingest():
    values = [random.random(), float(np.random.rand()), float(np.random.default_rng().normal()),
              float(uuid.uuid4().int % 1000003), time.time(), datetime.datetime.now().timestamp()]
    df = pd.DataFrame({"metric_name": [f"v{i}" for i in range(len(values))], "metric_value": values})
    df["metric_timestamp"] = pd.Timestamp.now(tz="UTC")
    return df
"#;

#[test]
fn replays_are_byte_identical_and_fresh_recordings_differ() {
    let (_f, spec) = python_batch("nondet", NONDETERMINISTIC, "ingest_metric_rounding: -1");
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    let mut store = Store::in_memory().expect("store");
    let ra = with_cassette(&spec, &mut store, &a, RecordMode::All, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    let rb = with_cassette(&spec, &mut store, &b, RecordMode::All, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    let values = |r: &IngestReport| {
        use arrow::array::AsArray;
        r.rows
            .column(4)
            .as_primitive::<arrow::datatypes::Float64Type>()
            .values()
            .to_vec()
    };
    assert_ne!(
        values(&ra),
        values(&rb),
        "two fresh recordings gave the same values"
    );

    let replay = || {
        let mut s = Store::in_memory().expect("store");
        let r = with_cassette(&spec, &mut s, &a, RecordMode::None, &[])
            .unwrap_or_else(|e| panic!("{}", e.error));
        (r.rows, dump(&s, &crate::support::key("metrics")))
    };
    let (rows1, stored1) = replay();
    let (rows2, stored2) = replay();
    assert_eq!(rows1, rows2, "two replays gave different Arrow results");
    assert_eq!(
        ipc_bytes(&rows1),
        ipc_bytes(&rows2),
        "Arrow IPC bytes differ"
    );
    assert_eq!(stored1, stored2);
}

fn ipc_bytes(batch: &arrow::record_batch::RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w =
        arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).expect("writer");
    w.write(batch).expect("write");
    w.finish().expect("finish");
    drop(w);
    buf
}

fn echo_server(hits: Arc<AtomicUsize>) -> TestServer {
    TestServer::start(
        Router::new()
            .route(
                "/echo",
                get(
                    |State(hits): State<Arc<AtomicUsize>>,
                     headers: HeaderMap,
                     Query(q): Query<Vec<(String, String)>>| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let h: Vec<(String, String)> = headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        axum::Json(serde_json::json!({"headers": h, "query": q}))
                    },
                ),
            )
            .with_state(hits),
    )
}

fn routed(s: &TestServer) -> String {
    format!(
        "http_rewrite:\n  \"http://api.test\": \"http://{}\"\ningest_env: [API_TOKEN, REGION]",
        s.addr
    )
}

#[test]
fn no_secret_from_headers_or_environment_reaches_the_cassette() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = echo_server(hits.clone());
    let code = r#"import os
import pandas as pd
import requests

def ingest():
    token = os.environ["API_TOKEN"]
    r = requests.get("http://api.test/echo", params={"api_key": token, "region": os.environ["REGION"]},
                     headers={"Authorization": "Bearer " + token, "X-Api-Key": token, "X-Plain": "visible"},
                     auth=None)
    return pd.DataFrame({"metric_name": ["n"], "metric_value": [len(r.text)], "metric_timestamp": [pd.Timestamp.now(tz="UTC")]})
"#;
    let (_f, spec) = python_batch("secrets", code, &routed(&server));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.yaml");
    let env = [("API_TOKEN", "tok-9f8e7d6c5b4a"), ("REGION", "eu-west")];
    let mut store = Store::in_memory().expect("store");
    with_cassette(&spec, &mut store, &path, RecordMode::All, &env)
        .unwrap_or_else(|e| panic!("{}", e.error));
    let text = std::fs::read_to_string(&path).expect("cassette");
    assert!(
        !text.contains("tok-9f8e7d6c5b4a"),
        "the secret leaked into the cassette:\n{text}"
    );
    assert!(
        text.contains("<scrubbed>") && text.contains("visible") && text.contains("eu-west"),
        "{text}"
    );

    // The scrubbed cassette still replays (the secret comes from the environment).
    let before = hits.load(Ordering::SeqCst);
    with_cassette(&spec, &mut store, &path, RecordMode::None, &env)
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "a replay reached the server"
    );
}

fn fetch(query: &str) -> String {
    format!(
        "import pandas as pd\nimport requests\n\ndef ingest():\n    for q in {query}:\n        requests.get('http://api.test/echo', params={{'n': q}})\n    return pd.DataFrame({{'metric_name': ['m'], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]}})\n"
    )
}

#[test]
fn record_modes_behave_like_vcr() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = echo_server(hits.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("modes.yaml");
    let mut store = Store::in_memory().expect("store");

    let (_f, one) = python_batch("modes", &fetch("[1]"), &routed(&server));
    with_cassette(&one, &mut store, &path, RecordMode::Once, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "once: records when the cassette is missing"
    );
    with_cassette(&one, &mut store, &path, RecordMode::Once, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "once: replays when it exists"
    );

    let (_g, two) = python_batch("modes", &fetch("[1, 2]"), &routed(&server));
    let err = with_cassette(&two, &mut store, &path, RecordMode::None, &[])
        .expect_err("unrecorded request");
    assert_eq!(
        err.to_string(),
        format!(
            "batch modes: replay: no recorded response for GET http://api.test/echo?n=2 (matching on method, url, body); the closest recorded request is GET http://api.test/echo?n=1. Record it with --record-mode new_episodes or all"
        )
    );
    with_cassette(&two, &mut store, &path, RecordMode::NewEpisodes, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "new_episodes: only the new request goes out"
    );
    let c = sandstack::cassette::Cassette::load(&path).expect("cassette");
    assert_eq!(c.interactions.len(), 2);
    with_cassette(&two, &mut store, &path, RecordMode::None, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    with_cassette(&one, &mut store, &path, RecordMode::All, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(hits.load(Ordering::SeqCst), 3, "all: always records");

    let missing = dir.path().join("missing.yaml");
    let err =
        with_cassette(&one, &mut store, &missing, RecordMode::None, &[]).expect_err("no cassette");
    assert_eq!(
        err.to_string(),
        format!(
            "batch modes: cassette {} does not exist: record one with --record {}",
            missing.display(),
            missing.display()
        )
    );
}

#[test]
fn a_cassette_from_changed_code_still_replays() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = echo_server(hits.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("changed.yaml");
    let mut store = Store::in_memory().expect("store");
    let (_f, spec) = python_batch("changed", &fetch("[1]"), &routed(&server));
    with_cassette(&spec, &mut store, &path, RecordMode::All, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    let (_g, edited) = python_batch(
        "changed",
        &format!("# edited\n{}", fetch("[1]")),
        &routed(&server),
    );
    with_cassette(&edited, &mut store, &path, RecordMode::None, &[])
        .unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

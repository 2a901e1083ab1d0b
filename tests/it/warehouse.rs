//! `db:` warehouses as `ingest_sql` sources: each against a server the test
//! starts (a real PostgreSQL cluster and SQLite file; loopback servers
//! speaking BigQuery's, Snowflake's and ClickHouse's documented HTTP
//! formats), recorded and replayed with no network and no credentials, and
//! each held to one read-only query.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use sandstack::cassette::RecordMode;
use sandstack::store::Store;

use crate::support::{duck, repo, run_ingest, with_cassette, Folder, TestServer};

const KEY: &str = include_str!("../fixtures/test_rsa_key.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/test_rsa_key.pub.pem");
const FINGERPRINT: &str = include_str!("../fixtures/test_rsa_key.fingerprint");

fn batch(name: &str, db: &str, sql: &str) -> (Folder, sandstack::config::BatchSpec) {
    let f = Folder::with_defaults();
    f.write(
        &format!("{name}/{name}.yaml"),
        &format!(
            "metric_batch: {name}\ndb: {db}\nmodel_path: \"gs://bucket/models\"\ningest_sql: >\n  {}\n",
            sql.replace('\n', "\n  ")
        ),
    );
    let spec = f.spec(name, &[]);
    (f, spec)
}

fn values(store: &Store, spec: &sandstack::config::BatchSpec) -> Vec<(String, f64)> {
    let sql = format!(
        "select metric_name, metric_value from {} where metric_batch = ? order by metric_name",
        spec.table_key.quoted()
    );
    let conn = duck(store);
    let mut stmt = conn.prepare(&sql).expect("prepare");
    stmt.query_map([&spec.metric_batch], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("values")
}

// ---------------------------------------------------------------- BigQuery

#[derive(Default)]
struct Hits {
    token: AtomicUsize,
    api: AtomicUsize,
}

fn bigquery_server(hits: Arc<Hits>) -> TestServer {
    async fn token(State(h): State<Arc<Hits>>, body: String) -> impl IntoResponse {
        h.token.fetch_add(1, Ordering::SeqCst);
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let assertion = form
            .iter()
            .find(|(k, _)| k == "assertion")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_aud = false;
        match jsonwebtoken::decode::<Value>(&assertion, &key, &v) {
            Ok(t)
                if t.claims["iss"] == "reader@proj.iam.gserviceaccount.com"
                    && t.claims["aud"]
                        .as_str()
                        .is_some_and(|a| a.ends_with("/token"))
                    && t.claims["scope"] == "https://www.googleapis.com/auth/bigquery" =>
            {
                Json(json!({"access_token": "tok-live-123", "expires_in": 3600})).into_response()
            }
            _ => (StatusCode::UNAUTHORIZED, "bad assertion").into_response(),
        }
    }
    fn authorized(h: &HeaderMap) -> bool {
        h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some("Bearer tok-live-123")
    }
    async fn jobs(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        Json(body): Json<Value>,
    ) -> impl IntoResponse {
        hits.api.fetch_add(1, Ordering::SeqCst);
        if !authorized(&h) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"message": "no token"}})),
            )
                .into_response();
        }
        assert_eq!(body["configuration"]["dryRun"], true);
        let q = body["configuration"]["query"]["query"]
            .as_str()
            .unwrap_or("")
            .to_lowercase();
        let kind = if q.contains("delete") {
            "DELETE"
        } else if q.contains(';') {
            "SCRIPT"
        } else {
            "SELECT"
        };
        Json(json!({"statistics": {"query": {"statementType": kind, "totalBytesProcessed": "1000"}}}))
            .into_response()
    }
    async fn queries(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        Json(body): Json<Value>,
    ) -> impl IntoResponse {
        hits.api.fetch_add(1, Ordering::SeqCst);
        assert!(authorized(&h));
        assert_eq!(body["useLegacySql"], false);
        assert_eq!(body["formatOptions"]["useInt64Timestamp"], true);
        assert_eq!(body["maximumBytesBilled"], "10737418240");
        assert_eq!(body["jobTimeoutMs"], 30000);
        Json(
            json!({"kind": "bigquery#queryResponse", "jobComplete": false,
            "jobReference": {"projectId": "proj", "jobId": "job_1", "location": "US"}}),
        )
    }
    async fn results(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        UrlPath((_, job)): UrlPath<(String, String)>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> impl IntoResponse {
        hits.api.fetch_add(1, Ordering::SeqCst);
        assert!(authorized(&h));
        assert_eq!(job, "job_1");
        assert_eq!(q.get("location").map(String::as_str), Some("US"));
        let schema = json!({"fields": [
            {"name": "metric_timestamp", "type": "TIMESTAMP", "mode": "NULLABLE"},
            {"name": "metric_name", "type": "STRING", "mode": "NULLABLE"},
            {"name": "metric_value", "type": "FLOAT", "mode": "NULLABLE"}]});
        let row =
            |name: &str, v: &str| json!({"f": [{"v": "1767225600000000"}, {"v": name}, {"v": v}]});
        Json(match q.get("pageToken").map(String::as_str) {
            None => json!({"jobComplete": true, "schema": schema, "totalRows": "3",
                "rows": [row("random_1", "0.25"), row("random_2", "1.5")], "pageToken": "page2",
                "jobReference": {"projectId": "proj", "jobId": "job_1", "location": "US"}}),
            Some("page2") => json!({"jobComplete": true, "schema": schema, "totalRows": "3",
                "rows": [row("random_3", "-2")],
                "jobReference": {"projectId": "proj", "jobId": "job_1", "location": "US"}}),
            Some(other) => panic!("unknown page {other}"),
        })
    }
    TestServer::start(
        Router::new()
            .route("/token", post(token))
            .route("/bigquery/v2/projects/{p}/jobs", post(jobs))
            .route("/bigquery/v2/projects/{p}/queries", post(queries))
            .route("/bigquery/v2/projects/{p}/queries/{job}", get(results))
            .with_state(hits),
    )
}

fn key_json(server: &TestServer) -> String {
    json!({
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "kid-1",
        "private_key": KEY,
        "client_email": "reader@proj.iam.gserviceaccount.com",
        "token_uri": server.url("/token"),
    })
    .to_string()
}

#[test]
fn bigquery_pages_are_read_recorded_without_secrets_and_replayed_with_no_key_or_network() {
    let hits = Arc::new(Hits::default());
    let server = bigquery_server(hits.clone());
    let key = key_json(&server);
    let endpoint = server.url("");
    let env = [
        (
            "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON",
            key.as_str(),
        ),
        ("SANDSTACK_BIGQUERY_ENDPOINT", endpoint.as_str()),
    ];
    let (_f, spec) = batch("bq", "bigquery", "select current_timestamp() as metric_timestamp, 'random_1' as metric_name, rand() as metric_value");
    let dir = tempfile::tempdir().expect("dir");
    let cassette = dir.path().join("bq.yaml");
    let mut store = Store::in_memory().expect("store");
    let report = with_cassette(&spec, &mut store, &cassette, RecordMode::All, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 3);
    let recorded = values(&store, &spec);
    assert_eq!(
        recorded,
        [
            ("random_1".into(), 0.25),
            ("random_2".into(), 1.5),
            ("random_3".into(), -2.0)
        ]
    );
    assert_eq!(hits.token.load(Ordering::SeqCst), 1);
    let api_calls = hits.api.load(Ordering::SeqCst);
    assert_eq!(api_calls, 4, "dry run, query, two pages");
    let text = std::fs::read_to_string(&cassette).expect("cassette");
    for secret in ["tok-live-123", "PRIVATE KEY", "assertion", "reader@proj"] {
        assert!(
            !text.contains(secret),
            "the cassette holds {secret}:\n{text}"
        );
    }
    assert!(text.contains("SANDSTACK_BIGQUERY_ENDPOINT"), "{text}");
    // Replayed: no key, no server calls, the same rows.
    let mut again = Store::in_memory().expect("store");
    let report = with_cassette(&spec, &mut again, &cassette, RecordMode::None, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 3);
    assert_eq!(values(&again, &spec), recorded);
    assert_eq!(hits.api.load(Ordering::SeqCst), api_calls);
    assert_eq!(hits.token.load(Ordering::SeqCst), 1);
}

#[test]
fn bigquery_runs_only_what_its_dry_run_calls_a_select() {
    let hits = Arc::new(Hits::default());
    let server = bigquery_server(hits.clone());
    let key = key_json(&server);
    let endpoint = server.url("");
    let env = [
        (
            "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON",
            key.as_str(),
        ),
        ("SANDSTACK_BIGQUERY_ENDPOINT", endpoint.as_str()),
    ];
    for (sql, kind) in [
        ("delete from d.t where true", "DELETE"),
        ("select 1; drop table d.t", "SCRIPT"),
    ] {
        let (_f, spec) = batch("bq", "bigquery", sql);
        let mut store = Store::in_memory().expect("store");
        let e = run_ingest(&spec, &mut store, &env)
            .expect_err(sql)
            .to_string();
        assert!(
            e.contains(&format!("a {kind} statement (BigQuery's dry run)"))
                && e.contains("may only read"),
            "{e}"
        );
    }
    // A query that would scan more than the operator lets one bill.
    let (_f, spec) = batch("bq", "bigquery", "select 1 as metric_value");
    let mut store = Store::in_memory().expect("store");
    let mut capped = env.to_vec();
    capped.push(("SANDSTACK_BIGQUERY_MAX_BYTES_BILLED", "999"));
    let e = run_ingest(&spec, &mut store, &capped)
        .expect_err("over the bill")
        .to_string();
    assert!(e.contains("would scan 1000 bytes, over the 999"), "{e}");
    // Only the dry runs were asked: nothing else ran.
    assert_eq!(hits.api.load(Ordering::SeqCst), 3);
}

#[test]
fn bigquery_without_a_key_says_which_variable_to_set() {
    let (_f, spec) = batch("bq", "bigquery", "select 1");
    let mut store = Store::in_memory().expect("store");
    let e = run_ingest(&spec, &mut store, &[])
        .expect_err("no key")
        .to_string();
    assert!(
        e.contains("ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS is not set"),
        "{e}"
    );
    let e = run_ingest(
        &spec,
        &mut store,
        &[(
            "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON",
            "{\"private_key\": \"-----BEGIN",
        )],
    )
    .expect_err("bad key")
    .to_string();
    assert!(
        e.contains("not a service account's JSON key") && !e.contains("BEGIN"),
        "{e}"
    );
}

// --------------------------------------------------------------- Snowflake

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).expect("gzip");
    z.finish().expect("gzip")
}

fn snowflake_server(hits: Arc<Hits>) -> TestServer {
    fn check_jwt(h: &HeaderMap) {
        assert_eq!(
            h.get("x-snowflake-authorization-token-type")
                .and_then(|v| v.to_str().ok()),
            Some("KEYPAIR_JWT")
        );
        let token = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("bearer");
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).expect("key");
        let t = jsonwebtoken::decode::<Value>(
            token,
            &key,
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
        )
        .expect("a JWT signed by the user's key");
        assert_eq!(
            t.claims["iss"],
            format!("XY12345.READER.SHA256:{}", FINGERPRINT.trim())
        );
        assert_eq!(t.claims["sub"], "XY12345.READER");
    }
    async fn submit(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        Json(body): Json<Value>,
    ) -> impl IntoResponse {
        hits.api.fetch_add(1, Ordering::SeqCst);
        check_jwt(&h);
        assert_eq!(body["parameters"]["MULTI_STATEMENT_COUNT"], "1");
        assert_eq!(body["warehouse"], "WH");
        (
            StatusCode::ACCEPTED,
            Json(
                json!({"code": "333334", "message": "Asynchronous execution in progress.",
            "statementHandle": "h-1", "statementStatusUrl": "/api/v2/statements/h-1"}),
            ),
        )
    }
    async fn status(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        hits.api.fetch_add(1, Ordering::SeqCst);
        check_jwt(&h);
        match q.get("partition").map(String::as_str) {
            None => Json(json!({
                "resultSetMetaData": {"numRows": 3, "format": "jsonv2",
                    "rowType": [
                        {"name": "METRIC_TIMESTAMP", "type": "timestamp_ltz", "scale": 9},
                        {"name": "METRIC_NAME", "type": "text"},
                        {"name": "METRIC_VALUE", "type": "fixed", "scale": 2}],
                    "partitionInfo": [{"rowCount": 2}, {"rowCount": 1}]},
                "data": [["1767225600.000000000", "metric_1", "0.50"], ["1767225600.000000000", "metric_2", "12.25"]],
                "code": "090001", "statementHandle": "h-1"}))
            .into_response(),
            Some("1") => (
                [(header::CONTENT_ENCODING, "gzip"), (header::CONTENT_TYPE, "application/json")],
                gzip(json!({"data": [["1767225600.000000000", "metric_3", "-1.00"]]}).to_string().as_bytes()),
            )
                .into_response(),
            Some(other) => panic!("no partition {other}"),
        }
    }
    TestServer::start(
        Router::new()
            .route("/api/v2/statements", post(submit))
            .route("/api/v2/statements/{h}", get(status))
            .with_state(hits),
    )
}

#[test]
fn snowflake_signs_in_with_a_key_pair_waits_and_reads_every_partition_then_replays() {
    let hits = Arc::new(Hits::default());
    let server = snowflake_server(hits.clone());
    let dir = tempfile::tempdir().expect("dir");
    let key_path = dir.path().join("rsa_key.p8");
    std::fs::write(&key_path, KEY).expect("key");
    let endpoint = server.url("");
    let key_path = key_path.display().to_string();
    let env = [
        ("ANOMSTACK_SNOWFLAKE_ACCOUNT", "xy12345.us-east-2.aws"),
        ("ANOMSTACK_SNOWFLAKE_USER", "reader"),
        ("ANOMSTACK_SNOWFLAKE_WAREHOUSE", "WH"),
        ("ANOMSTACK_SNOWFLAKE_PRIVATE_KEY_PATH", key_path.as_str()),
        ("SANDSTACK_SNOWFLAKE_ENDPOINT", endpoint.as_str()),
    ];
    let (_f, spec) = batch("sf", "snowflake", "select current_timestamp() as metric_timestamp, 'metric_1' as metric_name, uniform(0::float, 1::float, random()) as metric_value");
    let cassette = dir.path().join("sf.yaml");
    let mut store = Store::in_memory().expect("store");
    let report = with_cassette(&spec, &mut store, &cassette, RecordMode::All, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 3);
    let recorded = values(&store, &spec);
    assert_eq!(
        recorded,
        [
            ("metric_1".into(), 0.5),
            ("metric_2".into(), 12.25),
            ("metric_3".into(), -1.0)
        ]
    );
    let calls = hits.api.load(Ordering::SeqCst);
    assert_eq!(calls, 3, "submit, status, partition 1");
    let text = std::fs::read_to_string(&cassette).expect("cassette");
    // A JWT's header ({"typ":"JWT","alg":"RS256"}, base64url) or the key.
    for secret in ["eyJ0eXAi", "Bearer", "PRIVATE KEY"] {
        assert!(
            !text.contains(secret),
            "the cassette holds {secret}:\n{text}"
        );
    }
    let mut again = Store::in_memory().expect("store");
    let report = with_cassette(&spec, &mut again, &cassette, RecordMode::None, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 3);
    assert_eq!(values(&again, &spec), recorded);
    assert_eq!(hits.api.load(Ordering::SeqCst), calls);
}

#[test]
fn snowflake_refuses_writes_before_sending_and_passwords_saying_what_works() {
    let hits = Arc::new(Hits::default());
    let server = snowflake_server(hits.clone());
    let endpoint = server.url("");
    let base = [
        ("ANOMSTACK_SNOWFLAKE_ACCOUNT", "xy12345"),
        ("ANOMSTACK_SNOWFLAKE_USER", "reader"),
        ("SANDSTACK_SNOWFLAKE_ENDPOINT", endpoint.as_str()),
    ];
    let mut env = base.to_vec();
    env.push(("ANOMSTACK_SNOWFLAKE_PRIVATE_KEY", KEY));
    for sql in [
        "delete from t",
        "/* select */ drop table t",
        "call proc()",
        "with p as procedure() returns int language sql as $$ begin delete from t; return 1; end $$ call p()",
        "WITH p AS PROCEDURE() RETURNS INT AS 'begin delete from t; end' CALL p()",
    ] {
        let (_f, spec) = batch("sf", "snowflake", sql);
        let mut store = Store::in_memory().expect("store");
        let e = run_ingest(&spec, &mut store, &env)
            .expect_err(sql)
            .to_string();
        assert!(e.contains("must be one read-only query"), "{e}");
    }
    assert_eq!(hits.api.load(Ordering::SeqCst), 0);
    let mut env = base.to_vec();
    env.push(("ANOMSTACK_SNOWFLAKE_PASSWORD", "hunter2"));
    let (_f, spec) = batch("sf", "snowflake", "select 1");
    let mut store = Store::in_memory().expect("store");
    let e = run_ingest(&spec, &mut store, &env)
        .expect_err("password")
        .to_string();
    assert!(
        e.contains("takes no password")
            && e.contains("ANOMSTACK_SNOWFLAKE_PRIVATE_KEY_PATH")
            && !e.contains("hunter2"),
        "{e}"
    );
}

// -------------------------------------------------------------- ClickHouse

#[test]
fn clickhouse_reads_json_compact_in_read_only_mode_and_names_a_refused_write() {
    let hits = Arc::new(Hits::default());
    async fn query(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        Query(q): Query<std::collections::HashMap<String, String>>,
        body: Bytes,
    ) -> axum::response::Response {
        hits.api.fetch_add(1, Ordering::SeqCst);
        assert_eq!(q.get("readonly").map(String::as_str), Some("2"));
        assert_eq!(
            q.get("default_format").map(String::as_str),
            Some("JSONCompact")
        );
        assert_eq!(q.get("max_result_rows").map(String::as_str), Some("100000"));
        assert_eq!(q.get("database").map(String::as_str), Some("metrics"));
        assert_eq!(
            h.get("x-clickhouse-user").and_then(|v| v.to_str().ok()),
            Some("anomstack")
        );
        assert_eq!(
            h.get("x-clickhouse-key").and_then(|v| v.to_str().ok()),
            Some("pw")
        );
        let sql = String::from_utf8_lossy(&body).to_lowercase();
        if sql.contains("insert") {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [("x-clickhouse-exception-code", "164")],
                "Code: 164. DB::Exception: anomstack: Cannot execute query in readonly mode. (READONLY)",
            )
                .into_response();
        }
        Json(json!({
            "meta": [{"name": "metric_timestamp", "type": "DateTime('UTC')"},
                     {"name": "metric_name", "type": "LowCardinality(String)"},
                     {"name": "metric_value", "type": "Nullable(Float64)"},
                     {"name": "n", "type": "UInt64"}],
            "data": [["2026-01-01T00:00:00Z", "a", 1.5, "7"], ["2026-01-01T00:00:00Z", "b", null, "8"]],
            "rows": 2}))
        .into_response()
    }
    let server = TestServer::start(
        Router::new()
            .route("/", post(query))
            .with_state(hits.clone()),
    );
    let port = server.addr.port().to_string();
    let env = [
        ("ANOMSTACK_CLICKHOUSE_HOST", "127.0.0.1"),
        ("ANOMSTACK_CLICKHOUSE_PORT", port.as_str()),
        ("ANOMSTACK_CLICKHOUSE_USER", "anomstack"),
        ("ANOMSTACK_CLICKHOUSE_PASSWORD", "pw"),
        ("ANOMSTACK_CLICKHOUSE_DATABASE", "metrics"),
    ];
    let (_f, spec) = batch(
        "ch",
        "clickhouse",
        "select now() as metric_timestamp, 'a' as metric_name, 1.5 as metric_value",
    );
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(&spec, &mut store, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (report.stored, report.dropped_nan),
        (1, 1),
        "the null value is dropped as NaN"
    );
    let (_f, spec) = batch("ch", "clickhouse", "insert into t values (1)");
    let e = run_ingest(&spec, &mut store, &env)
        .expect_err("write")
        .to_string();
    assert!(
        e.contains("must be one read-only query") && e.contains("readonly mode"),
        "{e}"
    );
}

// ------------------------------------------------------ SQLite, PostgreSQL

#[test]
fn sqlite_runs_sqlites_own_dialect_read_only() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("anomstack-sqlite.db");
    let conn = rusqlite::Connection::open(&path).expect("create");
    conn.execute_batch("create table readings (name text, v real); insert into readings values ('a', 1), ('b', 2);")
        .expect("rows");
    let path_text = path.display().to_string();
    let env = [("ANOMSTACK_SQLITE_PATH", path_text.as_str())];
    let (_f, spec) = batch(
        "lite",
        "sqlite",
        "select datetime('now') as metric_timestamp, name as metric_name, v * 10 as metric_value from readings",
    );
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(&spec, &mut store, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 2);
    assert_eq!(
        values(&store, &spec),
        [("a".into(), 10.0), ("b".into(), 20.0)]
    );
    let (_f, spec) = batch(
        "lite",
        "sqlite",
        "delete from readings returning name, v, v",
    );
    let e = run_ingest(&spec, &mut store, &env)
        .expect_err("write")
        .to_string();
    assert!(e.contains("a statement that does more than read"), "{e}");
    let n: i64 = conn
        .query_row("select count(*) from readings", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 2);
}

#[test]
fn postgres_queries_any_server_read_only_within_its_time() {
    use sandstack::store::pg::cluster::TempCluster;
    let cluster = TempCluster::start().expect("a PostgreSQL cluster (scripts/install-deps)");
    let mut client = postgres::Client::connect(&cluster.url, postgres::NoTls).expect("connect");
    client
        .batch_execute(
            "create table readings (at timestamptz, name text, v numeric);
             insert into readings values ('2026-01-01T00:00:00Z', 'a', 1.25), ('2026-01-01T00:00:00Z', 'b', 2);",
        )
        .expect("rows");
    let port = url::Url::parse(&cluster.url)
        .expect("url")
        .port()
        .expect("port")
        .to_string();
    let env = [
        ("ANOMSTACK_POSTGRES_HOST", "127.0.0.1"),
        ("ANOMSTACK_POSTGRES_PORT", port.as_str()),
        ("ANOMSTACK_POSTGRES_USER", "sandstack"),
        ("ANOMSTACK_POSTGRES_PASSWORD", "sandstack"),
        ("ANOMSTACK_POSTGRES_DB", "sandstack"),
    ];
    let (_f, spec) = batch(
        "pg",
        "postgres",
        "select at as metric_timestamp, name as metric_name, v as metric_value from readings",
    );
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(&spec, &mut store, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 2);
    assert_eq!(
        values(&store, &spec),
        [("a".into(), 1.25), ("b".into(), 2.0)]
    );
    for (sql, expected) in [
        (
            "delete from readings returning at, name, v",
            "a statement that writes",
        ),
        (
            "select 1; delete from readings",
            "cannot insert multiple commands",
        ),
        ("copy (select 1) to stdout", "not a query"),
        ("set statement_timeout = 0", "not a query"),
    ] {
        let (_f, spec) = batch("pg", "postgres", sql);
        let e = run_ingest(&spec, &mut store, &env)
            .expect_err(sql)
            .to_string();
        assert!(e.contains(expected), "{sql}: {e}");
    }
    let n: i64 = client
        .query_one("select count(*) from readings", &[])
        .expect("count")
        .get(0);
    assert_eq!(n, 2);
    let f = Folder::with_defaults();
    f.write(
        "slow/slow.yaml",
        "metric_batch: slow\ndb: postgres\ningest_timeout_s: 1\ningest_sql: select now() as metric_timestamp, 'x' as metric_name, 1 as metric_value from pg_sleep(30)\n",
    );
    f.write(
        "wide/wide.yaml",
        "metric_batch: wide\ndb: postgres\ningest_max_result_kb: 4\ningest_sql: select now() as metric_timestamp, 'x' as metric_name, 1 as metric_value, repeat('x', 3000) as pad from generate_series(1, 100000)\n",
    );
    let e = run_ingest(&f.spec("wide", &[]), &mut store, &env)
        .expect_err("over the size")
        .to_string();
    assert!(e.contains("over 4 KiB (ingest_max_result_kb)"), "{e}");
    let spec = f.spec("slow", &[]);
    let started = std::time::Instant::now();
    let e = run_ingest(&spec, &mut store, &env).expect_err("slow");
    assert!(e.error.is_timeout(), "{e}");
    crate::support::assert_stopped_in_time(
        started,
        std::time::Duration::from_secs(1),
        "pg_sleep(30)",
    );
}

// ------------------------------------------- hand-written recordings, CLI

#[test]
fn anomstack_shaped_warehouse_batches_ingest_from_hand_written_recordings() {
    // Batches as Anomstack writes them (its warehouse examples' shape:
    // `db`, a `gs://` model_path, one query per metric), replayed through
    // the binary from cassettes written by hand from each API's reference,
    // with no credentials in the environment.
    let f = Folder::with_defaults();
    for (name, db) in [
        ("bigquery_random", "bigquery"),
        ("snowflake_random", "snowflake"),
    ] {
        let sql =
            std::fs::read_to_string(repo().join(format!("tests/cassettes/warehouse/{name}.sql")))
                .expect("sql");
        f.write(
            &format!("{name}/{name}.yaml"),
            &format!(
                "metric_batch: {name}\ndb: {db}\ntable_key: metrics\nmodel_path: \"gs://bucket/models\"\n\
                 disable_dashboard: True\ningest_sql: \"{}\"\n",
                sql.trim_end()
            ),
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("m.duckdb");
    for name in ["bigquery_random", "snowflake_random"] {
        let cassette = repo().join(format!("tests/cassettes/warehouse/{name}.yaml"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"));
        cmd.args(["ingest", name, "--replay"])
            .arg(&cassette)
            .arg("--metrics")
            .arg(f.path())
            .arg("--db")
            .arg(&db);
        for (k, _) in std::env::vars() {
            if k.starts_with("ANOMSTACK_")
                || k.starts_with("SANDSTACK_BIGQUERY")
                || k.starts_with("SANDSTACK_SNOWFLAKE")
            {
                cmd.env_remove(k);
            }
        }
        let out = cmd.output().expect("sandstack");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("batch {name}: stored 3 rows")),
            "{name}: {stdout}"
        );
    }
    let store = Store::open(&db).expect("open");
    let rows: Vec<(String, i64, String)> = duck(&store)
        .prepare(
            "select metric_batch, count(*), strftime(min(metric_timestamp), '%Y-%m-%dT%H:%M:%S.%g') \
             from metrics group by 1 order by 1",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        [
            (
                "bigquery_random".to_string(),
                3,
                "2026-01-01T00:00:00.123".to_string()
            ),
            (
                "snowflake_random".to_string(),
                3,
                "2026-01-01T00:00:00.123".to_string()
            ),
        ]
    );
}

#[test]
fn a_cassette_cannot_point_a_replay_at_another_file_or_server() {
    // A hand-edited cassette names another SQLite file and a PostgreSQL
    // host: a replay of a batch on a SQLite file is refused before either
    // file is read (a local file cannot be replayed), so neither is.
    let dir = tempfile::tempdir().expect("dir");
    let mine = dir.path().join("mine.db");
    let theirs = dir.path().join("theirs.db");
    for (path, name) in [(&mine, "mine"), (&theirs, "theirs")] {
        let conn = rusqlite::Connection::open(path).expect("create");
        conn.execute_batch(&format!(
            "create table r (name text); insert into r values ('{name}');"
        ))
        .expect("rows");
    }
    let cassette = dir.path().join("c.yaml");
    std::fs::write(
        &cassette,
        format!(
            "version: 1\nbatch: lite\nfunction_sha256: ''\nclock_start_us: 0\nseed: ''\nenv:\n\
             - name: ANOMSTACK_SQLITE_PATH\n  value: {}\n- name: ANOMSTACK_POSTGRES_HOST\n  value: evil.test\n\
             interactions: []\n",
            theirs.display()
        ),
    )
    .expect("cassette");
    let (_f, spec) = batch(
        "lite",
        "sqlite",
        "select datetime('now') as metric_timestamp, name as metric_name, 1 as metric_value from r",
    );
    let mine_text = mine.display().to_string();
    let mut store = Store::in_memory().expect("store");
    let refused = with_cassette(
        &spec,
        &mut store,
        &cassette,
        RecordMode::None,
        &[("ANOMSTACK_SQLITE_PATH", mine_text.as_str())],
    )
    .expect_err("a replay of a local SQLite file");
    assert!(
        refused.to_string().contains(
            "db: sqlite is not read over HTTP, so a run of it cannot be recorded or replayed: nothing was asked of it"
        ),
        "{refused}"
    );
    assert_eq!(store.count_rows(&spec.table_key).expect("count"), 0);
}

// ------------------------------------------------------------------ Turso

#[test]
fn turso_describes_before_it_executes_and_replays_without_its_token() {
    let hits = Arc::new(Hits::default());
    async fn pipeline(
        State(hits): State<Arc<Hits>>,
        h: HeaderMap,
        Json(body): Json<Value>,
    ) -> axum::response::Response {
        hits.api.fetch_add(1, Ordering::SeqCst);
        if h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some("Bearer turso-secret")
        {
            return (StatusCode::UNAUTHORIZED, "no").into_response();
        }
        let first = &body["requests"][0];
        assert_eq!(body["requests"][1]["type"], "close");
        let result = match first["type"].as_str() {
            Some("describe") => {
                let sql = first["sql"].as_str().unwrap_or("").to_lowercase();
                json!({"type": "describe", "result": {"params": [], "is_explain": false,
                    "cols": if sql.contains("delete") { json!([]) } else { json!([{"name": "metric_timestamp"}, {"name": "metric_name"}, {"name": "metric_value"}]) },
                    "is_readonly": !sql.contains("delete")}})
            }
            Some("execute") => {
                hits.token.fetch_add(1, Ordering::SeqCst);
                json!({"type": "execute", "result": {
                    "cols": [{"name": "metric_timestamp", "decltype": "TEXT"}, {"name": "metric_name", "decltype": "TEXT"}, {"name": "metric_value", "decltype": "REAL"}],
                    "rows": [
                        [{"type": "text", "value": "2026-01-01 00:00:00"}, {"type": "text", "value": "a"}, {"type": "float", "value": 1.5}],
                        [{"type": "text", "value": "2026-01-01 00:00:00"}, {"type": "text", "value": "b"}, {"type": "integer", "value": "2"}]],
                    "affected_row_count": 0}})
            }
            other => panic!("unexpected request {other:?}"),
        };
        Json(json!({"baton": null, "base_url": null,
            "results": [{"type": "ok", "response": result}, {"type": "ok", "response": {"type": "close"}}]}))
        .into_response()
    }
    let server = TestServer::start(
        Router::new()
            .route("/v2/pipeline", post(pipeline))
            .with_state(hits.clone()),
    );
    let url = server.url("");
    let env = [
        ("ANOMSTACK_TURSO_DATABASE_URL", url.as_str()),
        ("ANOMSTACK_TURSO_AUTH_TOKEN", "turso-secret"),
    ];
    let (_f, spec) = batch(
        "lite",
        "turso",
        "select ts as metric_timestamp, name as metric_name, v as metric_value from readings",
    );
    let dir = tempfile::tempdir().expect("dir");
    let cassette = dir.path().join("turso.yaml");
    let mut store = Store::in_memory().expect("store");
    let report = with_cassette(&spec, &mut store, &cassette, RecordMode::All, &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 2);
    let recorded = values(&store, &spec);
    assert_eq!(recorded, [("a".into(), 1.5), ("b".into(), 2.0)]);
    let text = std::fs::read_to_string(&cassette).expect("cassette");
    assert!(!text.contains("turso-secret"), "{text}");
    let calls = hits.api.load(Ordering::SeqCst);
    assert_eq!(calls, 2, "describe, then execute");
    let mut again = Store::in_memory().expect("store");
    with_cassette(&spec, &mut again, &cassette, RecordMode::None, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(values(&again, &spec), recorded);
    assert_eq!(hits.api.load(Ordering::SeqCst), calls, "replayed offline");
    // A write is refused on describe's word: nothing is executed.
    let (_f, spec) = batch("lite", "turso", "delete from readings");
    let e = run_ingest(&spec, &mut store, &env)
        .expect_err("write")
        .to_string();
    assert!(
        e.contains("a statement that writes (Turso's describe)"),
        "{e}"
    );
    assert_eq!(
        hits.token.load(Ordering::SeqCst),
        1,
        "only the first query executed"
    );
}

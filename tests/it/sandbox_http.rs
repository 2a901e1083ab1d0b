//! HTTP from the sandbox: the requests API over the door, and the policy
//! (no private addresses by default, redirects re-checked, caps on size,
//! count and time), against a real server on loopback.

use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use sandstack::store::Store;

use crate::support::{expect_failure, python_batch, run_ingest, TestServer};

fn server() -> TestServer {
    let router = Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route(
            "/echo",
            any(|method: axum::http::Method, headers: HeaderMap, body: String| async move {
                let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                axum::Json(serde_json::json!({"method": method.as_str(), "auth": auth, "ctype": ctype, "body": body}))
            }),
        )
        .route("/status/404", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/to-loopback",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "http://127.0.0.1:9/secret")]).into_response() }),
        )
        .route(
            "/big",
            get(|| async { Response::new(axum::body::Body::from(vec![b'x'; 20 * 1024 * 1024])) }),
        )
        .route(
            "/hang",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        );
    TestServer::start(router)
}

/// YAML that routes `http://api.test` to the loopback server (an explicit,
/// operator-configured allowance for that server only).
fn routed(s: &TestServer, extra: &str) -> String {
    format!(
        "http_rewrite:\n  \"http://api.test\": \"http://{}\"\n{extra}",
        s.addr
    )
}

const FRAME: &str = "pd.DataFrame({'metric_name': ['m'], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})";

fn fetch(url: &str) -> String {
    format!("import pandas as pd\nimport requests\n\ndef ingest():\n    requests.get({url:?}, timeout=30)\n    return {FRAME}\n")
}

#[test]
fn requests_api_round_trips_through_the_host() {
    let s = server();
    let code = format!(
        r#"import pandas as pd
import requests

def ingest():
    r = requests.post("http://api.test/echo", json={{"a": 1}}, auth=("user", "pw"), params={{"q": "x y"}})
    r.raise_for_status()
    assert r.ok and r.status_code == 200, r.status_code
    echo = r.json()
    assert echo == {{"method": "POST", "auth": "Basic dXNlcjpwdw==", "ctype": "application/json", "body": '{{"a": 1}}'}}, echo
    assert r.headers["Content-Type"] == "application/json"
    assert r.url == "http://api.test/echo?q=x+y", r.url
    with requests.Session() as session:
        session.headers.update({{"X-Test": "1"}})
        assert session.get("http://api.test/ok").text == "hello"
    missing = requests.get("http://api.test/status/404")
    assert missing.status_code == 404 and not missing.ok
    try:
        missing.raise_for_status()
    except requests.exceptions.HTTPError as e:
        assert "404 Client Error" in str(e), str(e)
    else:
        raise AssertionError("no HTTPError")
    return {FRAME}
"#
    );
    let (_f, spec) = python_batch("api", &code, &routed(&s, ""));
    let mut store = Store::in_memory().expect("store");
    let r = run_ingest(&spec, &mut store, &[])
        .unwrap_or_else(|e| panic!("{}\n{:?}", e.error, e.sandbox));
    assert_eq!(r.sandbox.expect("details").stats.http_requests, 3);
}

#[test]
fn loopback_is_refused_by_default() {
    let s = server();
    let (_f, spec) = python_batch("lo", &fetch(&s.url("/ok")), "");
    assert_eq!(
        expect_failure(&spec),
        format!(
            "batch lo: HTTP to {} refused: 127.0.0.1 is a loopback address (set http_allow_private: true to allow it)",
            s.url("/ok")
        )
    );
}

#[test]
fn localhost_by_name_is_refused_after_resolution() {
    let s = server();
    let (_f, spec) = python_batch(
        "lo_name",
        &fetch(&format!("http://localhost:{}/ok", s.addr.port())),
        "",
    );
    let err = expect_failure(&spec);
    assert!(
        err.starts_with(&format!(
            "batch lo_name: HTTP to http://localhost:{}/ok -> localhost (",
            s.addr.port()
        )),
        "{err}"
    );
    assert!(
        err.contains("refused: it resolves to a loopback address"),
        "{err}"
    );
}

#[test]
fn private_and_metadata_addresses_are_refused() {
    let (_f, spec) = python_batch("private", &fetch("http://10.0.0.1/"), "");
    assert_eq!(
        expect_failure(&spec),
        "batch private: HTTP to http://10.0.0.1/ refused: 10.0.0.1 is a private address (set http_allow_private: true to allow it)"
    );
    let (_f, spec) = python_batch(
        "metadata",
        &fetch("http://169.254.169.254/latest/meta-data/"),
        "",
    );
    assert_eq!(
        expect_failure(&spec),
        "batch metadata: HTTP to http://169.254.169.254/latest/meta-data/ refused: 169.254.169.254 is a cloud metadata address (set http_allow_private: true to allow it)"
    );
}

#[test]
fn a_redirect_to_loopback_is_refused() {
    let s = server();
    let (_f, spec) = python_batch(
        "redir",
        &fetch("http://api.test/to-loopback"),
        &routed(&s, ""),
    );
    assert_eq!(
        expect_failure(&spec),
        "batch redir: HTTP to http://127.0.0.1:9/secret refused: 127.0.0.1 is a loopback address (set http_allow_private: true to allow it)"
    );
}

#[test]
fn hosts_outside_the_allowlist_are_refused() {
    let s = server();
    let (_f, spec) = python_batch(
        "allow",
        &fetch("http://api.test/ok"),
        &routed(&s, "http_allow_hosts: [api.example.com]"),
    );
    assert_eq!(
        expect_failure(&spec),
        "batch allow: HTTP to http://api.test/ok refused: host `api.test` is not in http_allow_hosts (allowed: api.example.com)"
    );
}

#[test]
fn a_twenty_megabyte_response_hits_the_size_cap() {
    let s = server();
    let (_f, spec) = python_batch("big", &fetch("http://api.test/big"), &routed(&s, ""));
    assert_eq!(
        expect_failure(&spec),
        "batch big: ingest exceeded http_max_response_kb=10240 (response from http://api.test/big is over 20480 KiB)"
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let s = server();
    let code = "import pandas as pd\nimport requests\n\ndef ingest():\n    requests.get('http://api.test/hang')\n";
    let (_f, spec) = python_batch("hang", code, &routed(&s, "http_timeout_s: 1"));
    let err = expect_failure(&spec);
    assert!(
        err.starts_with(
            "batch hang: ReadTimeout: GET http://api.test/hang timed out after 1.0s (http_timeout_s=1)"
        ),
        "{err}"
    );
    // With a generous HTTP timeout the run's own wall clock still ends it.
    let (_g, spec) = python_batch(
        "hang_wall",
        code,
        &routed(&s, "http_timeout_s: 600\ningest_timeout_s: 2"),
    );
    let err = expect_failure(&spec);
    assert_eq!(
        err,
        "batch hang_wall: ingest exceeded ingest_timeout_s=2 (waiting for http://api.test/hang)"
    );
}

#[test]
fn the_request_count_is_capped() {
    let s = server();
    let code = "import pandas as pd\nimport requests\n\ndef ingest():\n    for _ in range(5):\n        requests.get('http://api.test/ok')\n";
    let (_f, spec) = python_batch("count", code, &routed(&s, "http_max_requests: 3"));
    assert_eq!(
        expect_failure(&spec),
        "batch count: ingest exceeded http_max_requests=3 (request to http://api.test/ok)"
    );
}

//! Ingest code written for Anomstack runs unchanged: pandas-2 spellings, the
//! `requests` surface real examples use (cookies and a crumb, retries through
//! an adapter), the standard library's own HTTP clients, all recorded and
//! replayed; and the errors such code meets say what to do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;

use sandstack::cassette::RecordMode;
use sandstack::store::Store;

use crate::support::{expect_failure, python_batch, run_ingest, with_cassette, TestServer};

const FRAME: &str = "pd.DataFrame({'metric_name': names, 'metric_value': values, 'metric_timestamp': pd.Timestamp.now(tz='UTC')})";

fn warnings(report: &sandstack::jobs::ingest::IngestReport) -> Vec<String> {
    report
        .sandbox
        .as_ref()
        .expect("a Python batch")
        .logs
        .iter()
        .filter(|l| l.level == "warning")
        .map(|l| l.message.clone())
        .collect()
}

#[test]
fn pandas_2_code_runs_and_each_removed_spelling_is_named_once() {
    let code = format!(
        r#"import pandas as pd

def ingest():
    ts = pd.Timestamp("2026-01-01 10:11:12.5").floor("S")
    assert str(ts) == "2026-01-01 10:11:12", ts
    assert str(pd.Timestamp("2026-01-01 10:11:12").floor("5T")) == "2026-01-01 10:10:00"
    hourly = pd.Series(range(48), index=pd.date_range("2026-01-01", periods=48, freq="H"))
    monthly = hourly.resample("M").sum()
    assert str(monthly.index[0].date()) == "2026-01-31", monthly
    assert str(hourly.index.to_period("M")[0]) == "2026-01"
    filled = pd.Series([1.0, None, 3.0]).fillna(method="ffill").tolist()
    assert filled == [1.0, 1.0, 3.0], filled
    pd.Timestamp("2026-01-01").floor("S")
    names, values = ["sum"], [float(monthly.iloc[0])]
    return {FRAME}
"#
    );
    let (_f, spec) = python_batch("pandas2", &code, "");
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.stored, 1);
    let warned = warnings(&report);
    for (old, new) in [
        ("'S'", "'s'"),
        ("'T'", "'min'"),
        ("'H'", "'h'"),
        ("'M'", "'ME'"),
        ("fillna(method='ffill')", ".ffill()"),
    ] {
        let hits: Vec<&String> = warned
            .iter()
            .filter(|w| {
                w.contains(&format!("removed {old}")) || w.contains(&format!("alias {old}"))
            })
            .collect();
        assert_eq!(hits.len(), 1, "{old}: {warned:#?}");
        assert!(hits[0].contains(new), "{}", hits[0]);
    }
}

#[test]
fn pandas_3_period_code_is_left_alone() {
    let code = format!(
        r#"import pandas as pd

def ingest():
    p = pd.Period("2026-03", freq="M")
    q = pd.date_range("2026-01-01", periods=3, freq="D").to_period("Q")
    assert str(p) == "2026-03" and str(q[0]) == "2026Q1", (p, q)
    names, values = ["m"], [1.0]
    return {FRAME}
"#
    );
    let (_f, spec) = python_batch("periods", &code, "");
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(warnings(&report).is_empty(), "{:?}", warnings(&report));
}

#[test]
fn errors_such_code_meets_say_what_to_do() {
    let (_f, spec) = python_batch(
        "swap",
        "import pandas as pd\n\ndef ingest():\n    return pd.DataFrame({'a': [1]}).swapaxes(0, 1)\n",
        "",
    );
    let err = expect_failure(&spec);
    assert!(err.contains("pandas 3 removed swapaxes(); use .T"), "{err}");

    let (_f, spec) = python_batch("tz", "import pytz\n\ndef ingest():\n    pass\n", "");
    let err = expect_failure(&spec);
    assert!(
        err.contains("No module named 'pytz'")
            && err.contains("scikit-learn")
            && !err.contains("site-packages"),
        "{err}"
    );

    // A secret set on the host but not allowlisted for the batch.
    let code = "import os\n\ndef ingest():\n    return os.environ['SANDSTACK_TEST_API_KEY']\n";
    let (_f, spec) = python_batch("secret", code, "");
    let mut store = Store::in_memory().expect("store");
    let err = run_ingest(
        &spec,
        &mut store,
        &[("SANDSTACK_TEST_API_KEY", "s3cret-value")],
    )
    .expect_err("not allowlisted")
    .to_string();
    assert!(
        err.contains(
            "SANDSTACK_TEST_API_KEY is set on the host but not allowed for batch `secret`"
        ) && err.contains("ingest_env: [SANDSTACK_TEST_API_KEY]")
            && err.contains("ANOMSTACK__SECRET__INGEST_ENV=SANDSTACK_TEST_API_KEY"),
        "{err}"
    );
    assert!(!err.contains("s3cret-value"), "the value leaked: {err}");

    // A failed request's message (logged, kept in the run history) does not
    // repeat a secret from its query.
    let code = "import requests\n\ndef ingest():\n    requests.get('http://api.test/v1?api_key=s3cret-value&q=1', timeout=5)\n";
    let (_f, spec) = python_batch(
        "leak",
        code,
        "http_rewrite:\n  \"http://api.test\": \"http://127.0.0.1:9\"",
    );
    let err = expect_failure(&spec);
    // The traceback quotes the user's own line; the message is sandstack's.
    let message = err.lines().next().unwrap_or_default();
    assert!(
        message.contains("ConnectionError") && message.contains("q=1"),
        "{err}"
    );
    assert!(!message.contains("s3cret-value"), "the key leaked: {err}");
}

/// A service in the style of Yahoo's quote API: a cookie from one host, a
/// crumb that needs the cookie, quotes that need both; a flaky endpoint; an
/// echo.
fn has_cookie(h: &HeaderMap) -> bool {
    h.get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.split("; ").any(|p| p == "B=abc123"))
}

fn count(hits: &Arc<AtomicUsize>) -> usize {
    hits.fetch_add(1, Ordering::SeqCst)
}

fn quote_server(hits: Arc<AtomicUsize>) -> TestServer {
    let flaky = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/cookie",
            get(|State(hits): State<Arc<AtomicUsize>>| async move {
                count(&hits);
                (
                    StatusCode::NOT_FOUND,
                    [(
                        header::SET_COOKIE,
                        "B=abc123; Path=/; Domain=.api.test; Max-Age=3600",
                    )],
                    "no such page",
                )
            }),
        )
        .route(
            "/v1/test/getcrumb",
            get(
                |State(hits): State<Arc<AtomicUsize>>, h: HeaderMap| async move {
                    count(&hits);
                    if has_cookie(&h) {
                        (StatusCode::OK, "crumb-42").into_response()
                    } else {
                        (StatusCode::UNAUTHORIZED, "no cookie").into_response()
                    }
                },
            ),
        )
        .route(
            "/v7/quote",
            get(
                |State(hits): State<Arc<AtomicUsize>>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    count(&hits);
                    if !has_cookie(&h) || q.get("crumb").map(String::as_str) != Some("crumb-42") {
                        return (StatusCode::UNAUTHORIZED, "cookie and crumb needed")
                            .into_response();
                    }
                    let symbols = q.get("symbols").cloned().unwrap_or_default();
                    let rows: Vec<serde_json::Value> = symbols
                        .split(',')
                        .enumerate()
                        .map(|(i, s)| serde_json::json!({"symbol": s, "price": 100.0 + i as f64}))
                        .collect();
                    axum::Json(serde_json::json!({"quoteResponse": {"result": rows}}))
                        .into_response()
                },
            ),
        )
        .route(
            "/flaky",
            get(move |State(hits): State<Arc<AtomicUsize>>| async move {
                count(&hits);
                // Every third call succeeds.
                if count(&flaky) % 3 == 2 {
                    (StatusCode::OK, "steady").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
                }
            }),
        )
        .route(
            "/echo",
            any(
                |State(hits): State<Arc<AtomicUsize>>,
                 method: axum::http::Method,
                 h: HeaderMap,
                 body: String| async move {
                    count(&hits);
                    let x = h
                        .get("x-app")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    axum::Json(
                        serde_json::json!({"method": method.as_str(), "x_app": x, "body": body}),
                    )
                },
            ),
        )
        .route(
            "/missing",
            get(|State(hits): State<Arc<AtomicUsize>>| async move {
                count(&hits);
                StatusCode::NOT_FOUND
            }),
        )
        .with_state(hits);
    TestServer::start(router)
}

/// Ingest code in the style of Anomstack's examples, using every HTTP client
/// the guest offers.
const CLIENTS: &str = r#"import http.client
import json
import urllib.error
import urllib.request

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

API = "http://api.test"


def ingest():
    names, values = [], []

    # Anomstack's yfinance example: cookie, then crumb, then quotes.
    cookie = requests.get(API + "/cookie", timeout=30).cookies
    # Recorded cookies are scrubbed: a replay has the cookie, not its value.
    assert set(requests.utils.dict_from_cookiejar(cookie)) == {"B"}, cookie
    crumb = requests.get(API + "/v1/test/getcrumb", cookies=cookie, timeout=30).text
    r = requests.get(API + "/v7/quote", params={"symbols": ",".join(["AAPL", "MSFT"]), "crumb": crumb},
                     cookies=cookie, timeout=30)
    r.raise_for_status()
    for q in r.json()["quoteResponse"]["result"]:
        names.append(q["symbol"].lower())
        values.append(q["price"])

    # A Session keeps the cookie by itself.
    with requests.Session() as s:
        s.get(API + "/cookie")
        assert "B" in s.cookies and s.cookies.get("B", domain=".api.test")
        assert s.get(API + "/v1/test/getcrumb").text == "crumb-42"
        s.mount("http://", HTTPAdapter(max_retries=Retry(total=3, backoff_factor=0, status_forcelist=[503])))
        steady = s.get(API + "/flaky")
        assert steady.status_code == 200 and steady.text == "steady", steady.status_code
    h = requests.structures.CaseInsensitiveDict({"X-A": "1"})
    assert h["x-a"] == "1"

    # The standard library's clients.
    req = urllib.request.Request(API + "/echo", data=b"k=v", headers={"X-App": "urllib"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        echo = json.loads(resp.read())
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
    assert echo == {"method": "POST", "x_app": "urllib", "body": "k=v"}, echo
    try:
        urllib.request.urlopen(API + "/missing")
        raise AssertionError("a 404 must raise")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    conn = http.client.HTTPConnection("api.test", timeout=10)
    conn.request("GET", "/echo", headers={"X-App": "http.client"})
    raw = conn.getresponse()
    assert raw.status == 200 and raw.getheader("content-type") == "application/json"
    assert json.loads(raw.read())["x_app"] == "http.client"
    names.append("clients_ok")
    values.append(1.0)
    return pd.DataFrame({"metric_name": names, "metric_value": values, "metric_timestamp": pd.Timestamp.now(tz="UTC")})
"#;

#[test]
fn requests_cookies_retries_and_the_stdlib_clients_record_and_replay() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = quote_server(hits.clone());
    let routing = format!(
        "http_rewrite:\n  \"http://api.test\": \"http://{}\"\nhttp_max_requests: 50",
        server.addr
    );
    let (_f, spec) = python_batch("clients", CLIENTS, &routing);
    let dir = tempfile::tempdir().expect("tempdir");
    let cassette = dir.path().join("clients.yaml");
    let mut store = Store::in_memory().expect("store");

    let recorded = with_cassette(&spec, &mut store, &cassette, RecordMode::Once, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let live_hits = hits.load(Ordering::SeqCst);
    // cookie, crumb, quote; cookie, crumb, 3 x flaky; echo, missing, echo.
    assert_eq!(live_hits, 11);
    let replayed = with_cassette(&spec, &mut store, &cassette, RecordMode::None, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        live_hits,
        "the replay reached the server"
    );
    let names = |r: &sandstack::jobs::ingest::IngestReport| {
        let c = r.rows.column_by_name("metric_name").expect("names");
        arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
            .map(|f| {
                (0..c.len())
                    .map(|i| f.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .expect("format")
    };
    assert_eq!(names(&recorded), ["aapl", "msft", "clients_ok"]);
    assert_eq!(names(&replayed), names(&recorded));
}

#[test]
fn anomstack_duckdb_path_names_the_database_unless_sandstack_is_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let anomstack_db = dir.path().join("anomstack.duckdb");
    let explicit = dir.path().join("explicit.duckdb");
    let ingest = |extra: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
            .current_dir(dir.path())
            .env_remove("SANDSTACK_DB")
            .env("ANOMSTACK_DUCKDB_PATH", &anomstack_db)
            .arg("ingest")
            .arg("example_sql")
            .arg("--metrics")
            .arg(crate::support::repo().join("metrics"))
            .args(extra)
            .output()
            .expect("run sandstack");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ingest(&[]);
    assert!(anomstack_db.is_file(), "ANOMSTACK_DUCKDB_PATH was not used");
    ingest(&["--db".as_ref(), explicit.as_os_str()]);
    assert!(explicit.is_file(), "--db wins over ANOMSTACK_DUCKDB_PATH");
    assert!(!dir.path().join("sandstack.duckdb").exists());
}

#[test]
fn setup_check_lists_the_guests_packages_and_prepares_nothing() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .env("SANDSTACK_HOME", home.path())
        .args(["setup", "--check"])
        .output()
        .expect("run sandstack");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "an unprepared sandbox: {text}");
    assert!(
        text.contains("not prepared") && text.contains("scikit-learn") && text.contains("urllib3"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(home.path()).expect("home").count(),
        0,
        "--check wrote to the cache"
    );
}

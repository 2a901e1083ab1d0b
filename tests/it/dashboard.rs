//! The dashboard: every page escapes what comes from data (metric names,
//! errors, search text), and an end-to-end run of `sandstack run` driven by
//! Debian's headless Chromium through ChromeDriver: the home page lists the
//! batches, a batch page shows its charts, a thumbs-up click stores a row.
//! Screenshots go to the test's output folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use sandstack::store::{RunRecord, RunStatus, Store};
use serde_json::{json, Value};

use crate::support::{http_get as get, key, start_sandstack, Folder, TestServer};

/// A metric name that runs script if it is not escaped.
const HOSTILE: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";

/// A folder with batch `api` and a database holding an hour of its data
/// (a normal metric with one anomaly, and the hostile metric with one),
/// plus a failed run whose error holds HTML and which recorded a cassette.
fn setup(db: &Path) -> Folder {
    let f = Folder::with_defaults();
    f.write(
        "b/api.yaml",
        "metric_batch: \"api\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'x' AS metric_name, 1.0 AS metric_value\"\n",
    );
    let store = Store::open(db).expect("db");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let hostile_sql = HOSTILE.replace('\'', "''");
    let mut sql = String::from("INSERT INTO metrics VALUES ");
    for i in 0..60 {
        let ts = format!(
            "make_timestamp(epoch_us(now())) - INTERVAL '{} minutes'",
            60 - i
        );
        for (name, base) in [("latency_ms", 10.0), (hostile_sql.as_str(), 100.0)] {
            let (v, s) = if i == 55 {
                (base * 4.0, 0.97)
            } else {
                (
                    base + ((i * 7) % 5) as f64 * 0.3,
                    0.1 + ((i * 3) % 4) as f64 * 0.05,
                )
            };
            sql.push_str(&format!("({ts}, 'api', '{name}', 'metric', {v}, NULL), ({ts}, 'api', '{name}', 'score', {s}, NULL),"));
            if i == 55 {
                let meta = format!(
                    "{{\"value\": {v}, \"score\": {s}, \"score_smooth\": {s}, \"threshold\": 0.8}}"
                );
                sql.push_str(&format!("({ts}, 'api', '{name}', 'alert', 1, '{meta}'),"));
            }
        }
    }
    sql.pop();
    crate::support::duck(&store)
        .execute_batch(&sql)
        .expect("insert");
    let cassettes = db.with_extension("cassettes").join("api");
    std::fs::create_dir_all(&cassettes).expect("mkdir");
    let cassette = cassettes.join("run.yaml");
    std::fs::write(&cassette, "format: 1\ninteractions: []\n").expect("cassette");
    let now = chrono::Utc::now().timestamp_micros();
    store
        .record_run(&RunRecord {
            run_id: 0,
            batch: "api".into(),
            job: "ingest".into(),
            scheduled_us: now - 2_000_000,
            started_us: now - 1_900_000,
            ended_us: now - 1_000_000,
            status: RunStatus::Failed,
            error: Some(format!(
                "batch api: ingest_sql failed: <b>boom</b> {HOSTILE}"
            )),
            rows: 0,
            fuel: 0,
            wall_ms: 900.0,
            cassette: Some(cassette.display().to_string()),
            log: Some(format!("printed {HOSTILE}")),
            attempt: 1,
            worker: None,
        })
        .expect("run");
    f
}

fn post_empty(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = reqwest::Client::new().post(url).send().await.expect("post");
        (r.status().as_u16(), r.text().await.expect("text"))
    })
}

/// The dashboard's router on loopback, over `folder` and the database `db`
/// (no scheduler behind it).
fn serve(folder: &Folder, db: &Path) -> TestServer {
    let store = Store::open(db).expect("db");
    let dir = folder.path().to_path_buf();
    let loader: sandstack::scheduler::watch::Loader =
        Arc::new(move || sandstack::config::load(&dir, &Default::default()));
    let state = sandstack::web::WebState::new(
        store,
        loader,
        None,
        db.with_extension("cassettes"),
        Vec::new(),
        None,
    );
    TestServer::start(sandstack::web::router(state))
}

#[test]
fn every_page_escapes_what_comes_from_data() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("d.duckdb");
    let f = setup(&db);
    let server = serve(&f, &db);
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pages = [
        "/".to_string(),
        "/batch/api".into(),
        format!("/batch/api?q={}", enc("<img")),
        format!("/batch/api?window={}", enc(HOSTILE)),
        "/anomalies".into(),
        "/runs".into(),
        format!("/runs?batch={}", enc(HOSTILE)),
        format!("/batch/{}", enc(HOSTILE)),
    ];
    for p in &pages {
        let (status, body) = get(&server.url(p));
        assert!(status == 200 || status == 404, "{p}: {status}");
        assert!(
            !body.contains("<img src=x"),
            "{p} has raw HTML from data:\n{body}"
        );
        assert!(
            !body.contains("<script>window"),
            "{p} has a raw script from data"
        );
        assert!(!body.contains("<b>boom"), "{p} has raw HTML from an error");
    }
    let (_, batch) = get(&server.url("/batch/api"));
    assert!(
        batch.contains("&lt;img src=x onerror="),
        "the hostile metric is shown, as text"
    );
    assert!(
        !batch.contains("now</button>"),
        "no scheduler behind this dashboard: no run-now buttons"
    );
    let (status, _) = post_empty(&server.url("/api/batches/api/pause"));
    assert_eq!(status, 503, "nothing to pause without `sandstack run`");
    assert_eq!(batch.matches("<svg class=\"chart\"").count(), 2);
    let (_, runs) = get(&server.url("/runs"));
    assert!(runs.contains("&lt;b&gt;boom&lt;&#x2f;b&gt;"), "{runs}");
    let (status, cassette) = get(&server.url("/runs/1/cassette"));
    assert_eq!(
        (status, cassette.as_str()),
        (200, "format: 1\ninteractions: []\n")
    );
    let (status, _) = get(&server.url("/runs/999/cassette"));
    assert_eq!(status, 404);
}

/// `disable_dashboard: true` (Anomstack's key) leaves a batch out of the
/// pages: not on the home page, its page a 404 that says why, its anomalies
/// not listed. Its jobs are not touched.
#[test]
fn a_batch_with_disable_dashboard_is_left_out_of_the_pages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("d.duckdb");
    let f = setup(&db);
    let batch = |name: &str, extra: &str| {
        f.write(
            &format!("b/{name}.yaml"),
            &format!(
                "metric_batch: {name}\n{extra}ingest_sql: \"SELECT now() AS metric_timestamp, 'x' AS metric_name, 1.0 AS metric_value\"\n"
            ),
        );
    };
    batch("api", "disable_dashboard: true\n");
    batch("shown", "");
    let server = serve(&f, &db);
    let (status, home) = get(&server.url("/"));
    assert_eq!(status, 200);
    assert!(home.contains("/batch/shown"), "{home}");
    assert!(!home.contains("/batch/api"), "{home}");
    let (status, page) = get(&server.url("/batch/api"));
    assert_eq!(status, 404);
    assert!(page.contains("sets disable_dashboard"), "{page}");
    let (status, anomalies) = get(&server.url("/anomalies"));
    assert_eq!(status, 200);
    assert!(!anomalies.contains("latency_ms"), "{anomalies}");
    drop(server);
    // The same folder without the key shows the batch and its anomaly.
    batch("api", "");
    let server = serve(&f, &db);
    let (_, home) = get(&server.url("/"));
    assert!(home.contains("/batch/api"), "{home}");
    let (_, anomalies) = get(&server.url("/anomalies"));
    assert!(anomalies.contains("latency_ms"), "{anomalies}");
}

#[test]
fn feedback_needs_the_token_when_one_is_set() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("d.duckdb");
    let f = setup(&db);
    let store = Store::open(&db).expect("db");
    let ts: i64 = crate::support::duck(&store)
        .query_row("SELECT epoch_us(metric_timestamp) FROM metrics WHERE metric_type = 'alert' AND metric_name = 'latency_ms'", [], |r| r.get(0))
        .expect("alert ts");
    let check = store.try_clone().expect("conn");
    let dir = f.path().to_path_buf();
    let loader: sandstack::scheduler::watch::Loader =
        Arc::new(move || sandstack::config::load(&dir, &Default::default()));
    let state = sandstack::web::WebState::new(
        store,
        loader,
        Some("s3cret".into()),
        tmp.path().join("c"),
        Vec::new(),
        None,
    );
    let server = TestServer::start(sandstack::web::router(state));
    let post = |form: &[(&str, String)]| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(server.url("/feedback"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            (r.status().as_u16(), r.text().await.expect("text"))
        })
    };
    let base = |token: &str, ts: i64| {
        vec![
            ("batch", "api".to_string()),
            ("metric", "latency_ms".to_string()),
            ("timestamp_us", ts.to_string()),
            ("vote", "up".to_string()),
            ("token", token.to_string()),
        ]
    };
    let (status, body) = post(&base("", ts));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("SANDSTACK_DASHBOARD_TOKEN"));
    let (status, _) = post(&base("wrong!", ts));
    assert_eq!(status, 401);
    let (status, body) = post(&base("s3cret", ts + 1));
    assert_eq!(status, 404, "no anomaly at that instant: {body}");
    let (status, body) = post(&base("s3cret", ts));
    assert_eq!((status, body.as_str()), (200, "{\"count\":1}"));
    let ups: i64 = crate::support::duck(&check)
        .query_row(
            "SELECT count(*) FROM metrics WHERE metric_type = 'thumbsup'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        ups, 1,
        "only the authorised vote on a real anomaly is stored"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A WebDriver session in headless Chromium.
struct Browser {
    driver: crate::support::Daemon,
    base: String,
    session: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Browser {
    fn start() -> Browser {
        for tool in ["chromium", "chromedriver"] {
            assert!(
                Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()),
                "{tool} is missing: run scripts/install-deps (it installs Debian's chromium and chromium-driver)"
            );
        }
        let port = free_port();
        let driver = crate::support::Daemon::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null()),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while rt
            .block_on(client.get(format!("{base}/status")).send())
            .is_err()
        {
            assert!(
                started.elapsed() < crate::support::START_TIMEOUT,
                "chromedriver did not start: {}",
                driver.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile").keep();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--no-first-run", "--window-size=1280,1400",
                     format!("--user-data-dir={}", profile.display())]
        }}}});
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            client,
            rt,
        };
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("a session").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}/session", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let req = req.timeout(crate::support::START_TIMEOUT);
        let text = self
            .rt
            .block_on(async { req.send().await?.text().await })
            .unwrap_or_else(|e| panic!("webdriver {path}: {e}"));
        let v: Value = serde_json::from_str(&text).expect("webdriver JSON");
        assert!(v["value"].get("error").is_none(), "webdriver {path}: {v}");
        v.get("value").cloned().unwrap_or(v)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn screenshot(&self, to: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64"))
            .expect("png");
        std::fs::write(to, png).expect("write screenshot");
        println!("screenshot: {}", to.display());
    }

    /// Poll `js` (a `return` of a boolean) until true, for at most 60 s.
    fn wait_for(&self, js: &str) {
        let started = Instant::now();
        while self.script(js) != json!(true) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "waited 60 s for: {js}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Real pointer input: `steps` of (x, y in the viewport, button down?).
    fn pointer(&self, steps: &[(f64, f64, bool)]) {
        let mut actions = Vec::new();
        let mut down = false;
        for &(x, y, press) in steps {
            actions.push(json!({"type": "pointerMove", "duration": 50, "x": x.round() as i64, "y": y.round() as i64, "origin": "viewport"}));
            if press != down {
                actions.push(
                    json!({"type": if press { "pointerDown" } else { "pointerUp" }, "button": 0}),
                );
                down = press;
            }
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]})),
        );
    }

    fn click(&self, css: &str) {
        let el = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .expect("element id")
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), None);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // The request is made inside the runtime: its timeout needs
            // the runtime's timer.
            let req = self
                .client
                .delete(format!("{}/session/{}", self.base, self.session))
                .timeout(Duration::from_secs(10));
            let _ = self.rt.block_on(async { req.send().await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn chromium_browses_the_dashboard_and_a_thumbs_up_is_stored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("e2e.duckdb");
    let f = setup(&db);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-e2e");
    std::fs::create_dir_all(&shots).expect("mkdir");
    let (mut daemon, url) = start_sandstack(f.path(), &db);
    let browser = Browser::start();

    browser.open(&format!("{url}/"));
    let cards = browser
        .script("return Array.from(document.querySelectorAll('.card h2')).map(e => e.textContent)");
    assert_eq!(cards, json!(["api"]), "the home page lists the batch");
    let alerts = browser.script("return document.querySelector('.card .alerts').textContent");
    assert_eq!(alerts, json!("2"));
    browser.screenshot(&shots.join("home.png"));

    // Without scripts the page holds an SVG chart per metric; with them,
    // each becomes a uPlot chart as it scrolls into view.
    let (status, html) = get(&format!("{url}/batch/api"));
    assert_eq!(status, 200);
    assert_eq!(
        html.matches("<polyline class=\"value\"").count(),
        2,
        "one SVG chart per metric"
    );
    assert_eq!(
        html.matches("<circle class=\"alert\"").count(),
        2,
        "an SVG mark per alert"
    );
    browser.open(&format!("{url}/batch/api"));
    browser.wait_for("return window.__sandstack && window.__sandstack.plots.size === 2");
    let names = browser.script(
        "return Array.from(document.querySelectorAll('figcaption .name')).map(e => e.textContent)",
    );
    assert!(
        names
            .as_array()
            .is_some_and(|n| n.iter().any(|v| v == HOSTILE)),
        "shown as text: {names}"
    );
    assert_eq!(
        browser.script("return window.__xss === undefined"),
        json!(true),
        "no script ran"
    );
    let marks = browser.script(
        "return Array.from(window.__sandstack.data.values()).map(d => d.marks.filter(m => m.kind === 'alert').length).reduce((a, b) => a + b, 0)",
    );
    assert_eq!(marks, json!(2));
    browser.screenshot(&shots.join("batch.png"));

    browser.open(&format!("{url}/anomalies"));
    assert_eq!(
        browser.script("return window.__xss === undefined"),
        json!(true)
    );
    let first_metric =
        browser.script("return document.querySelector('tbody tr td.metric').textContent");
    browser.click("tbody tr:first-child button.thumbs-up");
    let started = Instant::now();
    while browser.script(
        "return document.querySelector('tbody tr:first-child button.thumbs-up span').textContent",
    ) != json!("1")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the vote was not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.screenshot(&shots.join("anomalies.png"));

    browser.open(&format!("{url}/runs"));
    let err = browser.script("return document.querySelector('tr.detail pre').textContent");
    assert!(err.as_str().unwrap_or("").contains("<b>boom</b>"), "{err}");
    let link = browser.script("return document.querySelector('tr.detail a').getAttribute('href')");
    assert_eq!(link, json!("/runs/1/cassette"));
    browser.screenshot(&shots.join("runs.png"));
    drop(browser);

    // Stop the daemon, then read what the click stored.
    crate::support::terminate(&daemon);
    let status = daemon.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    let store = Store::open(&db).expect("db");
    let stored: Vec<(String, String)> = {
        let mut stmt = crate::support::duck(&store)
            .prepare("SELECT metric_name, metric_type FROM metrics WHERE metric_type IN ('thumbsup', 'thumbsdown')")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(
        stored,
        vec![(
            first_metric.as_str().unwrap_or("").to_string(),
            "thumbsup".to_string()
        )]
    );
}

/// A metric named as a Slack mention and a disguised link, and a run whose
/// error and log hold terminal escapes and a bidirectional override: the
/// pages show them as text, and `/metrics` quotes a hostile label value.
#[test]
fn pages_show_slack_syntax_and_control_characters_as_text() {
    const MENTION: &str = "<!channel> <https://evil.example/login|Sign in again>";
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("d.duckdb");
    let f = Folder::with_defaults();
    f.write(
        "b/api.yaml",
        "metric_batch: \"api\"\ningest_sql: \"SELECT 1\"\n",
    );
    let store = Store::open(&db).expect("db");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let mut sql = String::from("INSERT INTO metrics VALUES ");
    for i in 0..10 {
        sql.push_str(&format!(
            "(make_timestamp(epoch_us(now())) - INTERVAL '{i} minutes', 'api', '{MENTION}', 'metric', {i}, NULL),"
        ));
    }
    sql.pop();
    crate::support::duck(&store)
        .execute_batch(&sql)
        .expect("insert");
    let now = chrono::Utc::now().timestamp_micros();
    store
        .record_run(&RunRecord {
            run_id: 0,
            batch: "api".into(),
            job: "ingest".into(),
            scheduled_us: now,
            started_us: now,
            ended_us: now,
            status: RunStatus::Failed,
            error: Some("batch api: \u{1b}]52;c;ZXZpbA==\u{7}<b>\u{202e}x".into()),
            rows: 0,
            fuel: 0,
            wall_ms: 1.0,
            cassette: None,
            log: Some("printed \u{1b}[2J\r\nline two".into()),
            attempt: 1,
            worker: None,
        })
        .expect("run");
    let dir = f.path().to_path_buf();
    let loader: sandstack::scheduler::watch::Loader =
        Arc::new(move || sandstack::config::load(&dir, &Default::default()));
    let state =
        sandstack::web::WebState::new(store, loader, None, tmp.path().join("c"), Vec::new(), None);
    let server = TestServer::start(sandstack::web::router(state));

    let (_, batch) = get(&server.url("/batch/api"));
    assert!(
        batch.contains(
            "data-metric=\"&lt;!channel&gt; &lt;https:&#x2f;&#x2f;evil.example&#x2f;login|Sign in again&gt;\""
        ),
        "{batch}"
    );
    assert!(!batch.contains("<!channel>") && !batch.contains("<https:"));
    let (_, runs) = get(&server.url("/runs"));
    assert!(
        runs.contains("<pre>batch api: \\u{1b}]52;c;ZXZpbA==\\u{7}&lt;b&gt;\\u{202e}x</pre>"),
        "{runs}"
    );
    assert!(
        runs.contains("<pre>printed \\u{1b}[2J\\u{d}\nline two</pre>"),
        "{runs}"
    );
    for page in [&batch, &runs] {
        assert!(
            !page.contains(['\u{1b}', '\u{7}', '\r', '\u{202e}']),
            "a control character reached the page"
        );
    }

    sandstack::telemetry::global().run_recorded(&sandstack::telemetry::RecordedRun {
        batch: "api\"} 1\n# EOF\n\u{1b}[2J",
        job: "ingest",
        status: "failed",
        worked: false,
        seconds: 0.0,
        lag_seconds: 0.0,
        rows: 0,
        fuel: 0,
    });
    let (_, metrics) = get(&server.url("/metrics"));
    assert!(
        metrics.lines().any(|l| l
            == r#"sandstack_runs_total{batch="api\"} 1\\n# EOF\\n\\u{1b}[2J",job="ingest",status="failed"} 1"#),
        "{metrics}"
    );
    assert_eq!(metrics.matches("# EOF").count(), 2, "one real, one quoted");
    assert!(!metrics.contains('\u{1b}'));
}

/// `api`'s history with a threshold and an LLM alert on `latency_ms` (the
/// LLM's reason to show on hover), and a batch of 300 metrics.
fn setup_judgements_and_many(db: &Path, f: &Folder) {
    f.write(
        "b/many.yaml",
        "metric_batch: \"many\"\ningest_sql: \"SELECT now() AS metric_timestamp, 'x' AS metric_name, 1.0 AS metric_value\"\n",
    );
    let store = Store::open(db).expect("db");
    let mut sql = String::from("INSERT INTO metrics VALUES ");
    let at = |minutes_ago: i64| {
        format!("make_timestamp(epoch_us(now())) - INTERVAL '{minutes_ago} minutes'")
    };
    sql.push_str(&format!(
        "({}, 'api', 'latency_ms', 'llmalert', 1, '{{\"reason\": \"a jump to four times the usual latency\", \"model\": \"test-model\"}}'),",
        at(60 - 55)
    ));
    sql.push_str(&format!(
        "({}, 'api', 'latency_ms', 'tholdalert', 1, '{{\"value\": 40, \"threshold\": 30, \"bound\": \"upper\"}}'),",
        at(60 - 55)
    ));
    sql.pop();
    // 300 metrics of 100 points, made by DuckDB (30,000 literal rows would
    // take the test process's memory to parse).
    sql.push_str(
        ";\nINSERT INTO metrics SELECT make_timestamp(epoch_us(now())) - to_minutes((100 - i)::BIGINT), 'many', \
         printf('metric_%03d', m), 'metric', m + ((i * 13 + m) % 17) * 0.5, NULL FROM range(300) a(m), range(100) b(i)",
    );
    crate::support::duck(&store)
        .execute_batch(&sql)
        .expect("insert");
}

#[test]
fn chromium_draws_charts_with_hover_zoom_toggles_marks_and_a_dark_theme() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("charts.duckdb");
    let f = setup(&db);
    setup_judgements_and_many(&db, &f);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-e2e");
    std::fs::create_dir_all(&shots).expect("mkdir");
    // Stopped however the test ends (a failed assertion included).
    let (_daemon, url) = start_sandstack(f.path(), &db);
    let browser = Browser::start();

    // Every page, light then dark, for a developer to look at.
    for theme in ["light", "dark"] {
        browser.open(&format!("{url}/"));
        browser.script(&format!(
            "localStorage.setItem('sandstack-theme', '{theme}'); return true"
        ));
        for (page, path) in [
            ("home", "/"),
            ("batch", "/batch/api"),
            ("anomalies", "/anomalies"),
            ("runs", "/runs"),
        ] {
            browser.open(&format!("{url}{path}"));
            if page == "batch" {
                browser.wait_for("return window.__sandstack.plots.size === 2 && document.querySelectorAll('.spark canvas').length > 0");
            }
            assert_eq!(
                browser.script("return document.documentElement.getAttribute('data-theme')"),
                json!(theme)
            );
            browser.screenshot(&shots.join(format!("{page}-{theme}.png")));
        }
    }
    browser.script("localStorage.clear(); return true");

    browser.open(&format!("{url}/batch/api"));
    browser.wait_for("return window.__sandstack.plots.size === 2");
    // Marks of every kind on latency_ms, the LLM's with its reason.
    let kinds = browser
        .script("return window.__sandstack.data.get('latency_ms').marks.map(m => m.kind).sort()");
    assert_eq!(kinds, json!(["alert", "llm", "threshold"]));

    // Hover: the pointer over the marked point shows the values in the
    // legend and the judgements' words beside it.
    let at = browser.script(
        "const fig = document.querySelector('figure.chart[data-metric=\"latency_ms\"]');
         const u = window.__sandstack.plots.get(fig);
         const d = window.__sandstack.data.get('latency_ms');
         const m = d.marks.find(m => m.kind === 'llm');
         const r = u.over.getBoundingClientRect();
         fig.scrollIntoView({block: 'center'});
         const r2 = u.over.getBoundingClientRect();
         const i = d.t.reduce((best, t, j) => Math.abs(t - m.t) < Math.abs(d.t[best] - m.t) ? j : best, 0);
         return [r2.left + u.valToPos(d.t[i], 'x'), r2.top + u.valToPos(d.v[i], 'y'), r.width];",
    );
    let (x, y) = (at[0].as_f64().expect("x"), at[1].as_f64().expect("y"));
    browser.pointer(&[(x, y, false)]);
    browser.wait_for("return !document.getElementById('mark-tip').hidden");
    let tip = browser.script("return document.getElementById('mark-tip').textContent");
    let tip = tip.as_str().unwrap_or_default();
    assert!(
        tip.contains("LLM")
            && tip.contains("a jump to four times the usual latency (test-model)")
            && tip.contains("threshold")
            && tip.contains("upper threshold 30 crossed"),
        "{tip}"
    );
    let legend = browser.script(
        "return Array.from(document.querySelectorAll('figure.chart[data-metric=\"latency_ms\"] .u-legend .u-value')).map(e => e.textContent)",
    );
    assert!(
        legend
            .as_array()
            .is_some_and(|v| v.len() >= 3 && v[1] == json!("40")),
        "the legend shows the value under the cursor: {legend}"
    );
    browser.screenshot(&shots.join("batch-hover.png"));

    // Zoom: a drag across the chart narrows its time axis; a double-click
    // would widen it again.
    let before = browser.script(
        "const u = window.__sandstack.plots.get(document.querySelector('figure.chart[data-metric=\"latency_ms\"]'));
         return [u.scales.x.min, u.scales.x.max]",
    );
    let w = at[2].as_f64().expect("width");
    browser.pointer(&[
        (x - w * 0.4, y, false),
        (x - w * 0.4, y, true),
        (x - w * 0.1, y, true),
        (x - w * 0.1, y, false),
    ]);
    let after = browser.script(
        "const u = window.__sandstack.plots.get(document.querySelector('figure.chart[data-metric=\"latency_ms\"]'));
         return [u.scales.x.min, u.scales.x.max]",
    );
    let span = |v: &Value| v[1].as_f64().unwrap_or(0.0) - v[0].as_f64().unwrap_or(0.0);
    assert!(
        span(&after) < span(&before) * 0.5,
        "zoomed: {before} -> {after}"
    );

    // The larger view.
    browser.click("figure.chart[data-metric=\"latency_ms\"] button.expand");
    browser.wait_for(
        "return document.getElementById('expanded').open && !!window.__sandstack.expanded",
    );
    browser.screenshot(&shots.join("batch-expanded.png"));
    browser.script("document.querySelector('#expanded .close').click(); return true");

    // Display toggles: one column, no markers, no legend, thick lines; kept
    // across a reload.
    browser.script(
        "const set = (k, v) => { const el = document.querySelector(`#display [data-setting=${k}]`);
           if (el.type === 'checkbox') { el.checked = v; } else { el.value = v; }
           el.dispatchEvent(new Event('change')); };
         set('columns', '1'); set('markers', false); set('legend', false); set('line', '3'); set('size', 'l'); return true",
    );
    browser.open(&format!("{url}/batch/api"));
    browser.wait_for("return window.__sandstack.plots.size === 2");
    let state = browser.script(
        "const g = document.getElementById('charts');
         const u = window.__sandstack.plots.get(document.querySelector('figure.chart'));
         return [g.classList.contains('cols-1'), g.classList.contains('no-legend'), u.series[3].show, u.series[1].width, u.height]",
    );
    assert_eq!(
        state,
        json!([true, true, false, 3, 290]),
        "settings kept: {state}"
    );

    // The theme button: the system's, then dark (charts redrawn), light, the system's.
    let bg = |b: &Browser| b.script("return getComputedStyle(document.body).backgroundColor");
    browser.click("#theme-toggle");
    assert_eq!(
        browser.script("return document.documentElement.getAttribute('data-theme')"),
        json!("dark")
    );
    assert_eq!(bg(&browser), json!("rgb(17, 20, 24)"));
    browser.click("#theme-toggle");
    assert_eq!(bg(&browser), json!("rgb(245, 246, 248)"));
    browser.click("#theme-toggle");
    assert_eq!(
        browser.script("return document.documentElement.getAttribute('data-theme')"),
        Value::Null
    );
    browser.script("localStorage.clear(); return true");

    // 300 metrics: the first page of charts is drawn from the data the
    // page carries; the rest come page by page as the page is scrolled.
    // The time to the first chart is printed, the first load beside a
    // second that reads the dashboard's seconds-old series (a figure, not
    // a bound: a loaded machine is slower).
    let mut loads = Vec::new();
    for _ in 0..2 {
        browser.open(&format!("{url}/batch/many"));
        browser.wait_for("return window.__sandstack.readyMs !== null");
        let ms = browser
            .script("return window.__sandstack.readyMs")
            .as_f64()
            .expect("ms");
        loads.push(ms);
    }
    println!(
        "300 metrics: the first chart was drawn {:.0} ms after the page was asked for ({:.0} ms again within the series' 10 s)",
        loads[0], loads[1]
    );
    let first_page = browser.script("return document.querySelectorAll('figure.chart').length");
    assert_eq!(first_page, json!(48), "one page of charts first");
    let started = Instant::now();
    while browser.script("window.scrollTo(0, document.body.scrollHeight); return document.querySelectorAll('figure.chart').length") != json!(300) {
        assert!(started.elapsed() < Duration::from_secs(120), "the later pages did not load");
        std::thread::sleep(Duration::from_millis(100));
    }
    let loaded_ms = started.elapsed().as_millis();
    println!("300 metrics: all 300 charts' data loaded {loaded_ms} ms after scrolling began");
    browser.screenshot(&shots.join("batch-300-metrics.png"));
    drop(browser);
}

//! The llmalert job end to end against a chat model on loopback: an axum
//! server that speaks OpenAI's chat completions and Anthropic's messages,
//! and answers as a model would, from the data in the prompt (a point far
//! from the series' median is an anomaly). It can also throttle, cut its
//! answers, invent timestamps, answer in HTML, answer too much, or fail,
//! per metric. Checks what is stored and delivered, that a second run adds
//! nothing, and that a recorded run replays to the same rows with the
//! server gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use sandstack::alerts::Channels;
use sandstack::cassette::RecordMode;
use sandstack::config::{BatchSpec, Job};
use sandstack::jobs::ingest::recording::CassetteOptions;
use sandstack::jobs::llmalert::LlmAlertReport;
use sandstack::pipeline::{dispatch, JobContext, JobOutcome, RunMode};
use sandstack::store::Store;
use serde_json::{json, Value};

use crate::support::{key, Folder, TestServer};

const KEY: &str = "sk-test-0123456789abcdef";

/// One request the model server received.
#[derive(Debug, Clone)]
struct Asked {
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// The model server's state: what it got, and how it misbehaves.
#[derive(Clone, Default)]
struct Model {
    asked: Arc<Mutex<Vec<Asked>>>,
    /// Requests answered 429 (Retry-After: 1) before any other answer.
    throttle_first: Arc<AtomicUsize>,
    /// Also report a made-up timestamp and an HTML reason.
    hostile: bool,
    /// Webhook deliveries (the alert channel), kept beside.
    delivered: Arc<Mutex<Vec<Value>>>,
}

/// The user text of a request in either shape.
fn user_text(body: &Value) -> String {
    let content = if body.get("system").is_some() {
        &body["messages"][0]["content"]
    } else {
        &body["messages"][1]["content"]
    };
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// What the fake model finds: points over 8 MADs from the median.
fn anomalies(text: &str) -> Vec<(String, f64)> {
    let Some(at) = text.find("timestamp,value\n") else {
        return Vec::new();
    };
    let points: Vec<(String, f64)> = text[at + 16..]
        .lines()
        .filter_map(|l| {
            let (t, v) = l.split_once(',')?;
            Some((t.to_string(), v.parse().ok()?))
        })
        .collect();
    let mut v: Vec<f64> = points.iter().map(|p| p.1).collect();
    v.sort_by(f64::total_cmp);
    let med = v[v.len() / 2];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = dev[dev.len() / 2].max(1e-9);
    points
        .into_iter()
        .filter(|(_, x)| (x - med).abs() > 8.0 * mad)
        .collect()
}

/// The model's answer to one question, as JSON.
fn think(model: &Model, text: &str) -> Value {
    let found = anomalies(text);
    let verifying = text.contains("Candidates (timestamp: reason):");
    let mut items: Vec<Value> = found
        .iter()
        .filter(|(t, _)| !verifying || text.contains(&format!("- {t}:")))
        .map(|(t, v)| {
            let reason = if model.hostile {
                format!("<b>Spike</b> to {v}\n<!channel> far above <a href='http://x'>the usual</a> level")
            } else {
                format!("the value {v} is far from the series' usual level")
            };
            json!({"timestamp": t, "reason": reason})
        })
        .collect();
    if model.hostile && !verifying {
        items.push(json!({"timestamp": "2031-01-01 00:00:00", "reason": "invented"}));
    }
    json!({"anomalies": items})
}

/// The metric a question is about.
fn metric_of(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("Metric: "))
        .unwrap_or_default()
        .to_string()
}

/// Misbehaviour by metric name: `cut` (answer stopped at its token
/// limit), `garbled` (not JSON), `huge` (a 2 MiB answer), `down` (503).
fn misbehave(metric: &str, anthropic: bool) -> Option<Response> {
    let content = |text: &str, finish: &str| {
        if anthropic {
            json!({"content": [{"type": "text", "text": text}], "stop_reason": finish})
        } else {
            json!({"choices": [{"message": {"content": text}, "finish_reason": finish}]})
        }
    };
    Some(match metric {
        "cut" => axum::Json(content(
            "{\"anomalies\": [{\"timest",
            if anthropic { "max_tokens" } else { "length" },
        ))
        .into_response(),
        "garbled" => axum::Json(content(
            "I think the third point looks odd.",
            if anthropic { "end_turn" } else { "stop" },
        ))
        .into_response(),
        "huge" => axum::Json(content(&"x".repeat(2 << 20), "stop")).into_response(),
        "down" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "overloaded",
        )
            .into_response(),
        _ => return None,
    })
}

async fn answer(
    State(m): State<Model>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    m.asked.lock().expect("lock").push(Asked {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: body.clone(),
    });
    let throttled = m
        .throttle_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if throttled {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let text = user_text(&body);
    let anthropic = uri.path().ends_with("/messages");
    if let Some(r) = misbehave(&metric_of(&text), anthropic) {
        return r;
    }
    let result = think(&m, &text);
    let (prompt, answered) = (text.len() as u64 / 4, result.to_string().len() as u64 / 4);
    let reply = if anthropic {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
               "content": [{"type": "tool_use", "id": "toolu_1", "name": "anomalies", "input": result}],
               "stop_reason": "tool_use", "usage": {"input_tokens": prompt, "output_tokens": answered}})
    } else {
        json!({"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
               "choices": [{"index": 0, "message": {"role": "assistant", "content": result.to_string()}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt, "completion_tokens": answered}})
    };
    axum::Json(reply).into_response()
}

async fn hook(State(m): State<Model>, body: String) -> StatusCode {
    m.delivered
        .lock()
        .expect("lock")
        .push(serde_json::from_str(&body).unwrap_or_default());
    StatusCode::OK
}

fn model_server(model: Model) -> TestServer {
    let app = Router::new()
        .route("/v1/chat/completions", post(answer))
        .route("/anthropic/v1/messages", post(answer))
        .route("/hook", post(hook))
        .with_state(model);
    TestServer::start(app)
}

/// A batch of `metrics` (one a minute for 100 minutes, second-aligned,
/// ending a minute ago) in a DuckDB file. `cpu` spikes at its newest point
/// and dipped long ago; every other metric is noise around 20.
fn batch(metrics: &[&str], extra_yaml: &str) -> (Folder, BatchSpec, tempfile::TempDir) {
    let f = Folder::with_defaults();
    f.write(
        "llm.yaml",
        &format!(
            "metric_batch: \"llm\"\ningest_sql: \"SELECT 1\"\ndisable_llmalert: false\nalert_methods: \"webhook\"\n{extra_yaml}"
        ),
    );
    let spec = f.spec("llm", &[]);
    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(&dir.path().join("a.duckdb")).expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let newest = (chrono::Utc::now().timestamp() / 60 - 1) * 60;
    let mut sql = String::from("INSERT INTO metrics VALUES ");
    for m in metrics {
        for i in 0..100i64 {
            let v = match (*m, i) {
                ("cpu", 99) => 95.0,
                ("cpu", 20) => 1.0,
                ("cpu", _) => 50.0 + ((i * 7) % 5) as f64 * 0.5,
                _ => 20.0 + ((i * 3) % 4) as f64 * 0.25,
            };
            let ts = (newest - (99 - i) * 60) * 1_000_000;
            sql.push_str(&format!(
                "(make_timestamp({ts}), 'llm', '{m}', 'metric', {v}, NULL),"
            ));
        }
    }
    sql.pop();
    crate::support::duck(&store)
        .execute_batch(&sql)
        .expect("insert");
    (f, spec, dir)
}

fn env_for(server: &TestServer, anthropic: bool) -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    if anthropic {
        e.insert("ANOMSTACK_LLM_PLATFORM".into(), "anthropic".into());
        e.insert("ANOMSTACK_ANTHROPIC_KEY".into(), KEY.into());
        e.insert("ANOMSTACK_ANTHROPIC_MODEL".into(), "claude-test".into());
        e.insert("SANDSTACK_LLM_BASE_URL".into(), server.url("/anthropic/v1"));
    } else {
        e.insert("OPENAI_API_KEY".into(), KEY.into());
        e.insert("SANDSTACK_LLM_BASE_URL".into(), server.url("/v1"));
    }
    e.insert("SANDSTACK_ALERT_WEBHOOK_URL".into(), server.url("/hook"));
    e
}

fn run(
    spec: &BatchSpec,
    db: &Path,
    env: &BTreeMap<String, String>,
    cassette: Option<CassetteOptions>,
) -> Result<LlmAlertReport, String> {
    let mut store = Store::open(db).expect("store");
    let channels = Channels::from_env(env);
    let dir = tempfile::tempdir().expect("tmp");
    let ctx = JobContext {
        model_base: dir.path(),
        plot_dir: dir.path(),
        channels: Some(&channels),
        env,
        sandboxes: &sandstack::jobs::ingest::DefaultSandbox,
        peers: &[],
        mode: RunMode {
            cassette,
            dry_run: false,
            simulated_now_us: None,
        },
    };
    match dispatch::run(spec, &mut store, Job::Llmalert, &ctx) {
        Ok(JobOutcome::LlmAlerted(r, sent)) => {
            if env.contains_key("SANDSTACK_ALERT_WEBHOOK_URL") {
                assert!(sent.problems().is_empty(), "{:?}", sent.problems());
            }
            Ok(r)
        }
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.to_string()),
    }
}

/// The stored llmalert rows: (timestamp µs, metric, value, metadata).
fn stored(db: &Path) -> Vec<(i64, String, f64, String)> {
    let store = Store::open(db).expect("store");
    let mut stmt = crate::support::duck(&store)
        .prepare("SELECT epoch_us(metric_timestamp), metric_name, metric_value, metadata FROM metrics WHERE metric_type = 'llmalert' ORDER BY 1, 2")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn newest_cpu(db: &Path) -> i64 {
    let store = Store::open(db).expect("store");
    crate::support::duck(&store)
        .query_row(
            "SELECT epoch_us(max(metric_timestamp)) FROM metrics WHERE metric_name = 'cpu'",
            [],
            |r| r.get(0),
        )
        .expect("newest")
}

/// The real binary running `args` on `folder` and `db`, with none of
/// this machine's LLM variables.
fn sandstack(args: &[&str], folder: &Folder, db: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"));
    cmd.args(args)
        .arg("--metrics")
        .arg(folder.path())
        .arg("--db")
        .arg(db);
    for v in sandstack::llm::endpoint::VARIABLES {
        cmd.env_remove(v);
    }
    cmd
}

#[test]
fn a_spike_becomes_one_stored_and_delivered_llmalert_and_a_second_run_adds_nothing() {
    let model = Model {
        hostile: true,
        ..Default::default()
    };
    model.throttle_first.store(1, Ordering::SeqCst);
    let server = model_server(model.clone());
    let (_f, spec, dir) = batch(&["cpu", "disk", "garbled"], "llmalert_include_plot: true\n");
    let db = dir.path().join("a.duckdb");
    let env = env_for(&server, false);

    let started = std::time::Instant::now();
    let r = run(&spec, &db, &env, None).expect("llmalert");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "the 429's Retry-After was waited"
    );
    let rows = stored(&db);
    assert_eq!(rows.len(), 1, "{rows:?}\n{r:?}");
    let (ts, metric, value, meta) = &rows[0];
    assert_eq!(
        (*ts, metric.as_str(), *value),
        (newest_cpu(&db), "cpu", 1.0),
        "the spike, not the old dip"
    );
    let meta: Value = serde_json::from_str(meta).expect("metadata");
    assert_eq!(
        meta["reason"], "Spike to 95 far above the usual level",
        "markup removed, one line"
    );
    assert_eq!(meta["model"], "gpt-4o-mini");
    assert_eq!(meta["value"], 95.0);
    assert!(meta["prompt_tokens"].as_u64().unwrap_or(0) > 500, "{meta}");
    assert!(meta["answer_tokens"].as_u64().unwrap_or(0) > 0, "{meta}");

    // cpu: detection + verification; disk: detection (nothing found);
    // garbled: detection (refused); plus the throttled first attempt.
    assert_eq!((r.metrics_asked, r.calls), (3, 5), "{r:?}");
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("made-up timestamp \"2031-01-01 00:00:00\"")),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("metric garbled: malformed answer: not JSON")),
        "{:?}",
        r.problems
    );
    assert!(r.stopped.is_none());

    let asked = model.asked.lock().expect("lock").clone();
    let first = &asked[0];
    assert_eq!(
        first.headers.get("authorization").map(String::as_str),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        first.body["response_format"]["json_schema"]["schema"]["required"],
        json!(["anomalies"])
    );
    assert_eq!(
        first.body["max_tokens"], 2048,
        "not OpenAI itself: max_tokens"
    );
    let image = first.body["messages"][1]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap_or_default();
    assert!(
        image.starts_with("data:image/png;base64,iVBOR"),
        "the plot goes along: {}",
        &image[..image.len().min(40)]
    );
    let verification = asked
        .iter()
        .find(|a| user_text(&a.body).contains("Candidates"))
        .expect("a verification");
    assert_eq!(
        user_text(&verification.body).matches("\n- ").count(),
        1,
        "only the eligible candidate is verified"
    );

    let delivered = model.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["kind"], "llmalert");
    assert_eq!(delivered[0]["metric"], "cpu");
    assert_eq!(
        delivered[0]["reason"],
        "Spike to 95 far above the usual level"
    );

    let again = run(&spec, &db, &env, None).expect("second run");
    assert!(again.alerts.is_empty(), "{again:?}");
    assert_eq!(stored(&db).len(), 1);
    assert_eq!(
        model.delivered.lock().expect("lock").len(),
        1,
        "nothing sent twice"
    );
}

#[test]
fn anthropic_answers_through_a_forced_tool() {
    let model = Model::default();
    let server = model_server(model.clone());
    let (_f, spec, dir) = batch(&["cpu"], "llmalert_include_plot: true\n");
    let db = dir.path().join("a.duckdb");
    let r = run(&spec, &db, &env_for(&server, true), None).expect("llmalert");
    assert_eq!(
        (r.alerts.len(), r.model.as_str()),
        (1, "claude-test"),
        "{r:?}"
    );
    let asked = model.asked.lock().expect("lock").clone();
    let a = &asked[0];
    assert_eq!(a.path, "/anthropic/v1/messages");
    assert_eq!(a.headers.get("x-api-key").map(String::as_str), Some(KEY));
    assert_eq!(
        a.headers.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    assert_eq!(
        a.body["tool_choice"],
        json!({"type": "tool", "name": "anomalies"})
    );
    assert_eq!(
        a.body["messages"][0]["content"][0]["source"]["media_type"],
        "image/png"
    );
    assert_eq!(stored(&db)[0].0, newest_cpu(&db));
}

#[test]
fn a_failing_or_hostile_answer_fails_its_metric_only() {
    let model = Model::default();
    let server = model_server(model.clone());
    let (_f, spec, dir) = batch(&["cpu", "cut", "down", "huge"], "");
    let db = dir.path().join("a.duckdb");
    let r = run(&spec, &db, &env_for(&server, false), None).expect("llmalert");
    assert_eq!(r.alerts.len(), 1, "cpu still alerts: {r:?}");
    let problem = |m: &str| {
        r.problems
            .iter()
            .find(|p| p.starts_with(&format!("metric {m}:")))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        problem("cut").contains("cut off at its token limit"),
        "{:?}",
        r.problems
    );
    assert!(
        problem("down").contains("HTTP 503")
            && problem("down").contains("overloaded")
            && problem("down").contains("after 4 attempts"),
        "{:?}",
        r.problems
    );
    assert!(
        problem("huge").contains("over the size an answer may have"),
        "{:?}",
        r.problems
    );
    assert!(r.problems.iter().all(|p| !p.contains(KEY)));
}

#[test]
fn the_runs_budget_stops_it_and_keeps_what_it_has() {
    let model = Model::default();
    let server = model_server(model.clone());
    let (_f, spec, dir) = batch(&["cpu", "disk"], "llmalert_max_calls: 1\n");
    let db = dir.path().join("a.duckdb");
    let env = env_for(&server, false);
    let r = run(&spec, &db, &env, None).expect("llmalert");
    assert_eq!((r.calls, r.alerts.len()), (1, 0), "{r:?}");
    assert!(
        r.stopped
            .as_deref()
            .unwrap_or_default()
            .contains("stopped at metric cpu: llmalert_max_calls=1 reached"),
        "{r:?}"
    );
    assert_eq!(model.asked.lock().expect("lock").len(), 1);

    let (_f, spec, dir) = batch(&["cpu"], "llmalert_max_tokens: 300\n");
    let r = run(&spec, &dir.path().join("a.duckdb"), &env, None).expect("llmalert");
    assert_eq!(r.calls, 0);
    assert!(
        r.stopped
            .as_deref()
            .unwrap_or_default()
            .contains("llmalert_max_tokens=300 reached"),
        "{r:?}"
    );
}

#[test]
fn a_recorded_run_replays_to_the_same_rows_with_the_server_gone() {
    let model = Model::default();
    model.throttle_first.store(1, Ordering::SeqCst);
    let server = model_server(model.clone());
    let (f, spec, dir) = batch(&["cpu", "disk"], "");
    let db = dir.path().join("a.duckdb");
    let (copy, third, changed) = (
        dir.path().join("b.duckdb"),
        dir.path().join("c.duckdb"),
        dir.path().join("d.duckdb"),
    );
    for c in [&copy, &third, &changed] {
        std::fs::copy(&db, c).expect("copy the database before the run");
    }
    let cassette = dir.path().join("llm.yaml");
    let opts = |mode| CassetteOptions {
        path: cassette.clone(),
        mode,
        match_on: Vec::new(),
        scrub: Vec::new(),
    };
    let recorded = run(
        &spec,
        &db,
        &env_for(&server, false),
        Some(opts(RecordMode::All)),
    )
    .expect("record");
    assert_eq!(recorded.alerts.len(), 1);
    let text = std::fs::read_to_string(&cassette).expect("cassette");
    assert!(!text.contains(KEY), "the key is scrubbed");
    assert!(
        text.contains("sandstack llmalert llm --replay") && text.contains("status: 429"),
        "{}",
        &text[..400]
    );
    drop(server);

    // No variables at all: the cassette names the endpoint.
    let replayed =
        run(&spec, &copy, &BTreeMap::new(), Some(opts(RecordMode::None))).expect("replay");
    assert_eq!(stored(&copy), stored(&db), "identical rows");
    assert_eq!(replayed.calls, recorded.calls);

    // Through the binary, with the endpoint's variables gone too.
    let replay = |db: &Path| {
        let c = cassette.display().to_string();
        sandstack(&["llmalert", "llm", "--replay", &c], &f, db)
            .output()
            .expect("run")
    };
    let out = replay(&third);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("batch llm: 1 LLM alerts"));
    assert_eq!(stored(&third), stored(&db), "identical rows");

    // Other data asks other questions: the replay fails and stores nothing.
    let store = Store::open(&changed).expect("store");
    crate::support::duck(&store)
        .execute_batch(
            "UPDATE metrics SET metric_value = metric_value + 1 WHERE metric_name = 'disk'",
        )
        .expect("change the data");
    drop(store);
    let out = replay(&changed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the cassette has no answer to this question"),
        "{stderr}"
    );
    assert!(stored(&changed).is_empty());
}

#[test]
fn without_a_key_the_job_is_skipped_with_one_line_saying_what_to_set() {
    let (f, _, dir) = batch(&["cpu"], "");
    let out = sandstack(&["llmalert", "llm"], &f, &dir.path().join("a.duckdb"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("llmalert")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("batch llm: llmalert skipped: no API key for the openai platform")
            && lines[0].contains("set OPENAI_API_KEY or ANOMSTACK_OPENAI_KEY"),
        "{stderr}"
    );
}

#[test]
fn the_anomalies_page_shows_the_reason_and_takes_feedback() {
    let model = Model {
        hostile: true,
        ..Default::default()
    };
    let server = model_server(model);
    let (f, spec, dir) = batch(&["cpu"], "");
    let db = dir.path().join("a.duckdb");
    run(&spec, &db, &env_for(&server, false), None).expect("llmalert");
    let ts = stored(&db)[0].0;
    let store = Store::open(&db).expect("db");
    let folder = f.path().to_path_buf();
    let loader: sandstack::scheduler::watch::Loader =
        Arc::new(move || sandstack::config::load(&folder, &Default::default()));
    let state =
        sandstack::web::WebState::new(store, loader, None, dir.path().join("c"), Vec::new(), None);
    let web = TestServer::start(sandstack::web::router(state));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let page = rt.block_on(async {
        reqwest::get(web.url("/anomalies"))
            .await
            .expect("get")
            .text()
            .await
            .expect("text")
    });
    assert!(page.contains("<td>LLM</td>"), "{page}");
    assert!(
        page.contains("Spike to 95 far above the usual level"),
        "{page}"
    );
    assert!(
        !page.contains("<!channel>") && !page.contains("<b>Spike"),
        "{page}"
    );
    let form = format!("batch=llm&metric=cpu&timestamp_us={ts}&vote=down&token=");
    let (status, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(web.url("/feedback"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form)
            .send()
            .await
            .expect("post");
        (r.status().as_u16(), r.text().await.expect("text"))
    });
    assert_eq!((status, body.as_str()), (200, "{\"count\":1}"));
}

#[test]
fn sandstack_run_schedules_llmalert_and_records_its_runs() {
    let model = Model::default();
    let server = model_server(model.clone());
    let (f, _, dir) = batch(
        &["cpu"],
        "llmalert_default_schedule_status: RUNNING\nllmalert_cron_schedule: \"* * * * * *\"\nrecord_runs: true\n",
    );
    let db = dir.path().join("a.duckdb");
    let mut child = crate::support::Daemon::spawn(
        sandstack(&["run", "--no-dashboard"], &f, &db)
            .env("RUST_LOG", "warn")
            .envs(env_for(&server, false))
            .stdout(std::process::Stdio::null()),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while model.delivered.lock().expect("lock").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A few more ticks: they must add nothing.
    std::thread::sleep(std::time::Duration::from_secs(3));
    crate::support::terminate(&child);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}: {}", child.stderr());
    assert_eq!(model.delivered.lock().expect("lock").len(), 1);
    assert_eq!(stored(&db).len(), 1);
    let store = Store::open(&db).expect("db");
    let (runs, ok_with_row, cassettes): (i64, i64, i64) = crate::support::duck(&store)
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE status = 'succeeded' AND rows = 1), count(cassette) FROM sandstack_runs WHERE job = 'llmalert'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("runs");
    assert!(runs >= 3, "{runs} runs");
    assert_eq!(
        (ok_with_row, cassettes),
        (1, runs),
        "one run stored the alert; every run has its cassette"
    );
}

/// `sandstack llmalert llm --dry-run --show-prompts`'s output; it must
/// succeed.
fn dry_run_with_prompts(f: &Folder, dir: &Path) -> String {
    let out = sandstack(
        &["llmalert", "llm", "--dry-run", "--show-prompts"],
        f,
        &dir.join("a.duckdb"),
    )
    .output()
    .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn shown_prompts_cannot_pass_for_sandstacks_lines_or_frames() {
    let (f, _, dir) = batch(
        &["cpu"],
        "llmalert_anomaly_agent_detection_prompt: \"Look.\\nerror: batch victim: forged\\n--- other (user) ---\\u001b[2J\"\n",
    );
    let stdout = dry_run_with_prompts(&f, dir.path());
    assert!(
        stdout.contains("  error: batch victim: forged\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  --- other (user) ---\\u{1b}[2J"),
        "{stdout}"
    );
    for line in stdout.lines() {
        assert!(!line.starts_with("error:"), "forged: {line}");
        assert!(!line.starts_with("--- other"), "forged frame: {line}");
        assert!(!line.contains('\x1b'), "raw escape: {line:?}");
    }
}

#[test]
fn a_dry_run_shows_the_questions_and_their_cost_without_a_key() {
    let (f, _, dir) = batch(&["cpu", "disk"], "llmalert_exclude_metrics: [disk]\n");
    let stdout = dry_run_with_prompts(&f, dir.path());
    assert!(stdout.contains("batch llm: dry run with model (no endpoint configured): nothing asked, nothing stored; 1 metrics would be asked"), "{stdout}");
    assert!(
        stdout.contains("  cpu: 100 points (5 may alert), about "),
        "{stdout}"
    );
    assert!(!stdout.contains("disk"), "excluded: {stdout}");
    assert!(
        stdout.contains("--- cpu (user) ---\n  Find the anomalies")
            && stdout.contains("  timestamp,value\n"),
        "{stdout}"
    );
    assert!(stored(&dir.path().join("a.duckdb")).is_empty());
}

#[test]
fn a_hostile_llmalert_sql_is_stopped_at_the_jobs_time_limit() {
    let model = Model::default();
    let server = model_server(model.clone());
    let (_f, spec, dir) = batch(
        &["cpu"],
        "job_timeout_s: 1\nllmalert_sql: \"SELECT now()::TIMESTAMP AS metric_timestamp, 'm' AS metric_name, count(*)::DOUBLE AS metric_value FROM range(100000000) a, range(100000000) b\"\n",
    );
    let started = std::time::Instant::now();
    let err = run(
        &spec,
        &dir.path().join("a.duckdb"),
        &env_for(&server, false),
        None,
    )
    .expect_err("stopped");
    crate::support::assert_stopped_in_time(
        started,
        std::time::Duration::from_secs(1),
        "llmalert_sql",
    );
    assert_eq!(err, "batch llm: the llmalert job ran past job_timeout_s=1 and was stopped; nothing it was writing was stored");
    assert!(model.asked.lock().expect("lock").is_empty());
}

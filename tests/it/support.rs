//! Helpers shared by the integration tests: temporary metrics folders built
//! on the shipped defaults, the shared sandbox, and loopback HTTP servers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sandstack::cassette::RecordMode;
use sandstack::config::{self, BatchSpec, MetricsFolder};
use sandstack::jobs::ingest::recording::CassetteOptions;
use sandstack::jobs::ingest::{self, IngestFailure, IngestOptions, IngestReport, SandboxSource};
use sandstack::sandbox::{home_dir, Sandbox, SetupError};
use sandstack::store::duck::DuckStore;
use sandstack::store::Store;

/// The DuckDB connection under a store, for tests that look at rows with
/// their own SQL.
pub fn duck(store: &Store) -> &duckdb::Connection {
    store
        .backend::<DuckStore>()
        .expect("the tests' store is DuckDB")
        .connection()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir`, in its folders too.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A folder `scripts/install-deps --test-servers` filled for the tests:
/// `$var` if set, else `~/.cache/sandstack-deps/<name>`; fails the test,
/// saying what to run, unless each of `markers` is in it.
pub fn installed_dir(var: &str, name: &str, markers: &[&str], what: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(Into::into).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").expect("HOME"))
            .join(".cache/sandstack-deps")
            .join(name)
    });
    assert!(
        markers.iter().all(|m| dir.join(m).exists()),
        "{what} not installed in {}: run scripts/install-deps --test-servers",
        dir.display()
    );
    dir
}

/// The shipped `metrics/` folder, loaded: it has no errors and holds the
/// three example batches.
pub fn shipped_folder() -> MetricsFolder {
    let folder = config::load(&repo().join("metrics"), &Default::default());
    assert!(folder.errors.is_empty(), "{:?}", folder.errors);
    let names: Vec<&str> = folder
        .batches
        .iter()
        .map(|b| b.metric_batch.as_str())
        .collect();
    assert_eq!(
        names,
        ["example_random", "example_sql", "hn_top_stories_scores"]
    );
    folder
}

/// A temporary metrics folder.
pub struct Folder {
    pub dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

impl Folder {
    /// A folder with the shipped defaults (YAML, SQL, preprocess.py).
    pub fn with_defaults() -> Self {
        let f = Folder::empty();
        copy_dir(&repo().join("metrics/defaults"), &f.path().join("defaults"));
        f
    }

    pub fn empty() -> Self {
        Folder {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copy the folder `from` (with what is in it) to `rel` in this one.
    pub fn copy(&self, from: &Path, rel: &str) -> &Self {
        copy_dir(from, &self.path().join(rel));
        self
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }

    pub fn load(&self, env: &[(&str, &str)]) -> MetricsFolder {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::load(self.path(), &env)
    }

    /// Load and return one batch, failing the test on any error.
    pub fn spec(&self, name: &str, env: &[(&str, &str)]) -> BatchSpec {
        let folder = self.load(env);
        assert!(
            folder.errors.is_empty(),
            "unexpected errors: {:?}",
            folder.errors
        );
        folder
            .batch(name)
            .unwrap_or_else(|| panic!("no batch {name}"))
            .clone()
    }

    /// Display form of a file in this folder, as errors show it.
    pub fn shown(&self, rel: &str) -> String {
        self.path().join(rel).display().to_string()
    }
}

/// A folder with one Python batch `name` whose code is `code`, plus extra
/// YAML lines.
pub fn python_batch(name: &str, code: &str, extra_yaml: &str) -> (Folder, BatchSpec) {
    let f = Folder::with_defaults();
    f.write(&format!("b/{name}.py"), code);
    f.write(
        &format!("b/{name}.yaml"),
        &format!("metric_batch: \"{name}\"\ningest_fn: >\n  {{% include \"./b/{name}.py\" %}}\n{extra_yaml}\n"),
    );
    let spec = f.spec(name, &[]);
    (f, spec)
}

/// The machine's sandbox (set up once, cached under SANDSTACK_HOME).
pub struct TestSandbox;

impl SandboxSource for TestSandbox {
    fn sandbox(&self) -> Result<Arc<Sandbox>, SetupError> {
        Sandbox::shared(&home_dir(), &|m| eprintln!("sandstack setup: {m}"))
    }
}

pub fn run_ingest(
    spec: &BatchSpec,
    store: &mut Store,
    env: &[(&str, &str)],
) -> Result<IngestReport, Box<IngestFailure>> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ingest::run(spec, store, &TestSandbox, &env, IngestOptions::default())
}

/// Run a Python batch expected to fail; return the error text and check
/// that nothing was stored.
pub fn expect_failure(spec: &BatchSpec) -> String {
    let mut store = Store::in_memory().expect("store");
    let err = match run_ingest(spec, &mut store, &[]) {
        Ok(r) => panic!("expected a failure, stored {} rows", r.stored),
        Err(f) => f,
    };
    assert_eq!(
        store.count_rows(&spec.table_key).expect("count"),
        0,
        "a failed run stored rows"
    );
    err.to_string()
}

/// An HTTP server on loopback, serving `router` until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start(router: axum::Router) -> TestServer {
        TestServer::start_at("127.0.0.1:0", router)
    }

    /// A server on `bind` (an IPv6 loopback address, say).
    pub fn start_at(bind: &str, router: axum::Router) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(bind))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestServer { addr, _rt: rt }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Insert a metric `m` of batch `batch` with one observation a minute (the
/// i-th valued i) and the given anomaly scores, oldest first, ending a
/// minute ago.
pub fn insert_scored_series(store: &Store, batch: &str, scores: &[f64]) {
    let n = scores.len();
    let mut sql = String::from("insert into metrics values ");
    for (i, s) in scores.iter().enumerate() {
        let ts = format!(
            "make_timestamp(epoch_us(now())) - interval '{} minutes'",
            n - i
        );
        sql.push_str(&format!("({ts}, '{batch}', 'm', 'metric', {i}, null), ({ts}, '{batch}', 'm', 'score', {s}, null),"));
    }
    sql.pop();
    crate::support::duck(store)
        .execute_batch(&sql)
        .expect("insert a scored series");
}

/// A real SMTP server on loopback that keeps what it receives. Hand-written
/// (a few lines of the protocol) because tests need it to refuse on cue:
/// the first `fail_first` messages are answered `451` at DATA.
pub struct SmtpSink {
    pub addr: SocketAddr,
    pub messages: Arc<std::sync::Mutex<Vec<String>>>,
    pub fail_first: Arc<std::sync::atomic::AtomicUsize>,
    /// The reply to a refused DATA: 451 (try again) unless set.
    pub refuse_code: Arc<std::sync::atomic::AtomicU16>,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let messages = Arc::new(std::sync::Mutex::new(Vec::new()));
        let fail_first = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refuse_code = Arc::new(std::sync::atomic::AtomicU16::new(451));
        let (m, fail, code) = (messages.clone(), fail_first.clone(), refuse_code.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, fail, code) = (m.clone(), fail.clone(), code.clone());
                std::thread::spawn(move || {
                    let mut out = stream.try_clone().expect("clone");
                    let mut lines = BufReader::new(stream);
                    let mut say = |s: &str| out.write_all(s.as_bytes()).is_ok();
                    say("220 sink ESMTP\r\n");
                    let mut line = String::new();
                    while lines.read_line(&mut line).unwrap_or(0) > 0 {
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let ok = match verb.as_str() {
                            "EHLO" | "HELO" => say("250 sink\r\n"),
                            "MAIL" | "RCPT" | "RSET" | "NOOP" => say("250 OK\r\n"),
                            "DATA" => {
                                let refuse = fail
                                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                        n.checked_sub(1)
                                    })
                                    .is_ok();
                                if refuse {
                                    match code.load(Ordering::SeqCst) {
                                        451 => say("451 4.3.0 try again later\r\n"),
                                        c => say(&format!("{c} 5.7.1 refused\r\n")),
                                    }
                                } else {
                                    say("354 end with .\r\n");
                                    let mut data = String::new();
                                    let mut l = String::new();
                                    while lines.read_line(&mut l).unwrap_or(0) > 0 && l != ".\r\n" {
                                        data.push_str(&l);
                                        l.clear();
                                    }
                                    m.lock().expect("lock").push(data);
                                    say("250 queued\r\n")
                                }
                            }
                            "QUIT" => {
                                say("221 bye\r\n");
                                break;
                            }
                            _ => say("502 not implemented\r\n"),
                        };
                        if !ok {
                            break;
                        }
                        line.clear();
                    }
                });
            }
        });
        SmtpSink {
            addr,
            messages,
            fail_first,
            refuse_code,
        }
    }
}

/// `sandstack validate` on `folder` with `args` added: its exit code, and
/// its stdout and stderr together.
pub fn validate(folder: &Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(["validate", "--metrics"])
        .arg(folder)
        .args(args)
        .output()
        .expect("run sandstack validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Start the real `sandstack run` on `folder` and `db`, without the
/// dashboard, with `args` added; stdout is dropped, stderr kept.
pub fn spawn_run(folder: &Folder, db: &Path, args: &[&str]) -> Daemon {
    Daemon::spawn(&mut run_command(folder, db, args))
}

/// The command `spawn_run` starts, for a test that sets more on it (the
/// operator's environment).
pub fn run_command(folder: &Folder, db: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"));
    cmd.args(["run", "--no-dashboard"])
        .args(args)
        .arg("--metrics")
        .arg(folder.path())
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Send SIGTERM to `child`.
pub fn terminate(child: &Child) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's,
    // not yet reaped (the caller holds it).
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "kill -TERM {}", child.id());
}

/// What a test allows past a step's own deadline before calling it not
/// stopped: far more than a loaded two-core machine adds (a debug build's
/// sandbox start-up, a busy scheduler), far less than the minutes or the
/// forever an unstopped step would take. A time bound proves that a limit
/// stopped something, not how promptly to the millisecond.
pub const STOP_SLACK: Duration = Duration::from_secs(15);

/// Fail the test unless the step started at `started`, which its own
/// `deadline` should stop, ended within that deadline and [`STOP_SLACK`].
pub fn assert_stopped_in_time(started: Instant, deadline: Duration, what: &str) {
    let took = started.elapsed();
    assert!(
        took < deadline + STOP_SLACK,
        "{what} took {took:?}: its deadline is {deadline:?}, so it was not stopped by it"
    );
}

/// How long a test waits for a process it started to say it is ready: far
/// more than any start takes, even on a loaded machine, so that only a
/// process that never gets there fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A process a test started (a `sandstack run`, a test server): killed and
/// reaped when dropped, so a test that fails leaves nothing running to
/// starve the rest of the run, and its stderr kept for the failure message.
/// It derefs to its [`Child`] for `id`, `try_wait` and `kill`; its own
/// `wait` is bounded.
pub struct Daemon {
    child: Child,
    name: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    stdout_lines: Option<mpsc::Receiver<String>>,
}

impl Daemon {
    /// Start `cmd` with stderr kept and stdout as the command set it (piped
    /// stdout is read line by line, for [`Daemon::wait_for_line`]).
    pub fn spawn(cmd: &mut Command) -> Daemon {
        let name = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            let kept = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    kept.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            })
        });
        let stdout_lines = child.stdout.take().map(|out| {
            let (send, lines) = mpsc::channel();
            std::thread::spawn(move || {
                // Read to the end whether or not anyone listens, so the
                // process never blocks on a full pipe.
                let mut out = BufReader::new(out);
                let mut line = Vec::new();
                while out.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    let text = String::from_utf8_lossy(&line);
                    let _ = send.send(text.trim_end_matches(['\n', '\r']).to_string());
                    line.clear();
                }
            });
            lines
        });
        Daemon {
            child,
            name,
            stderr,
            stderr_reader,
            stdout_lines,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// The first stdout line starting with `prefix`, with the prefix cut;
    /// fails the test, with the process's stderr, if the process ends or
    /// [`START_TIMEOUT`] passes first.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        let lines = self
            .stdout_lines
            .as_ref()
            .unwrap_or_else(|| panic!("{}: its stdout is not piped", self.name));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} printed no line starting {prefix:?} in {START_TIMEOUT:?}; its stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait();
                    panic!(
                        "{} ended ({status:?}) before printing a line starting {prefix:?}; its stderr:\n{}",
                        self.name,
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Wait for a stderr line for which `done` holds; returns all of stderr
    /// so far. Fails the test, with the stderr, if the process ends or
    /// [`START_TIMEOUT`] passes first.
    pub fn wait_for_stderr(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut seen = String::new();
        eventually(START_TIMEOUT, || {
            seen = self.stderr();
            if seen.lines().any(&done) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} ended ({status}) before {what}; its stderr:\n{seen}",
                    self.name
                );
            }
            Err(format!(
                "{} did not get to {what}; its stderr:\n{seen}",
                self.name
            ))
        });
        seen
    }

    /// Wait for the process to end, at most [`START_TIMEOUT`]: a process
    /// that does not end fails the test (and is killed on drop) instead of
    /// hanging it. Shadows [`Child::wait`].
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.wait_within(START_TIMEOUT)
    }

    /// [`Daemon::wait`], at most `within`.
    pub fn wait_within(&mut self, within: Duration) -> std::io::Result<std::process::ExitStatus> {
        let mut ended = None;
        eventually(within, || match self.child.try_wait() {
            Ok(None) => Err(format!(
                "{} did not end; its stderr:\n{}",
                self.name,
                self.stderr()
            )),
            done => {
                ended = Some(done);
                Ok(())
            }
        });
        ended
            .expect("set when done")
            .map(|status| status.expect("ended"))
    }

    /// Wait for the process to end (after [`terminate`], say), as
    /// [`Daemon::wait`] does: its status, and all it wrote to stderr.
    /// Stdout is not kept.
    pub fn wait_with_output(mut self) -> std::process::Output {
        let status = self.wait().expect("wait for the process");
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: self.stderr().into_bytes(),
        }
    }
}

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let stderr = self.stderr();
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            eprintln!(
                "--- the last lines {} wrote to stderr:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Ingest `spec` recording or replaying the cassette at `path`.
pub fn with_cassette(
    spec: &BatchSpec,
    store: &mut Store,
    path: &Path,
    mode: RecordMode,
    env: &[(&str, &str)],
) -> Result<IngestReport, Box<IngestFailure>> {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let opts = IngestOptions {
        dry_run: false,
        cassette: Some(CassetteOptions {
            path: path.to_path_buf(),
            mode,
            match_on: Vec::new(),
            scrub: Vec::new(),
        }),
        simulated_now_us: None,
    };
    ingest::run(spec, store, &TestSandbox, &env, opts)
}

/// Start `sandstack run` with the dashboard on a free port; returns the
/// daemon and the dashboard's base URL.
pub fn start_sandstack(folder: &Path, db: &Path) -> (Daemon, String) {
    start_sandstack_with(folder, db, &[])
}

/// [`start_sandstack`] with more environment variables.
pub fn start_sandstack_with(folder: &Path, db: &Path, env: &[(&str, &str)]) -> (Daemon, String) {
    start_sandstack_args(folder, db, &[], env)
}

/// [`start_sandstack`] with more arguments to `run` and environment
/// variables.
pub fn start_sandstack_args(
    folder: &Path,
    db: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Daemon, String) {
    // A grace period of 5 s, unless the test sets its own.
    let grace = if args.contains(&"--grace-secs") {
        &[][..]
    } else {
        &["--grace-secs", "5"][..]
    };
    let mut daemon = Daemon::spawn(
        Command::new(env!("CARGO_BIN_EXE_sandstack"))
            .args(["run", "--listen", "127.0.0.1:0", "--metrics"])
            .arg(folder)
            .arg("--db")
            .arg(db)
            .args(args)
            .args(grace)
            .envs(env.iter().copied())
            .stdout(Stdio::piped()),
    );
    let url = daemon
        .wait_for_line("dashboard: ")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    (daemon, url)
}

/// Send `req` (named `what` in failures): its status and body text; fails
/// the test if it cannot be sent or its body read.
fn send(req: reqwest::RequestBuilder, what: &str) -> (u16, String) {
    // A server that accepts and never answers fails the test, not hangs it.
    let req = req.timeout(START_TIMEOUT);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let r = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = r.status().as_u16();
        let text = r
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: {status}, its body unreadable: {e}"));
        (status, text)
    })
}

/// GET `url`: its status and body.
pub fn http_get(url: &str) -> (u16, String) {
    send(reqwest::Client::new().get(url), &format!("GET {url}"))
}

/// The scraped samples of `name`, by their labels (sorted `k=v` pairs).
pub fn samples(text: &str, name: &str) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a Prometheus text-format page");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let v = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (labels.join(","), v)
        })
        .collect()
}

/// Wait until `url`'s /metrics counts `n` succeeded ingests of `batch`.
pub fn wait_for_ingests(url: &str, batch: &str, n: f64) {
    let label = format!("batch={batch},job=ingest,status=succeeded");
    eventually(Duration::from_secs(60), || {
        let page = http_get(&format!("{url}/metrics")).1;
        let done = samples(&page, "sandstack_runs_total")
            .get(&label)
            .copied()
            .unwrap_or(0.0);
        if done >= n {
            Ok(())
        } else {
            Err(format!("{batch}: {done} of {n} ingests"))
        }
    });
}

/// Poll `done` until it answers Ok; fails the test with its last answer
/// (what has not happened yet, and how far it got) once `within` has
/// passed. The one wait-for-an-event loop of the tests.
pub fn eventually(within: Duration, mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + within;
    loop {
        match done() {
            Ok(()) => return,
            Err(why) => assert!(Instant::now() < deadline, "{why} (waited {within:?})"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// POST to `url` with the bearer `token`: its status and JSON body (null
/// when empty); fails the test on a body it cannot read or parse.
pub fn http_post(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let (status, text) = send(req, &format!("POST {url}"));
    // An empty body is null; any other must be JSON, so that a test reading
    // a field never mistakes a broken answer for a missing one.
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {url}: {status}, its body is not JSON ({e}): {text}"))
    };
    (status, body)
}

/// The real binary with `args` on `folder` and `db`, with `env`.
pub fn run_sandstack(
    args: &[&str],
    folder: &Folder,
    db: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sandstack"))
        .args(args)
        .arg("--metrics")
        .arg(folder.path())
        .arg("--db")
        .arg(db)
        .envs(env.iter().copied())
        .output()
        .expect("run sandstack")
}

/// Run `cmd` to its end: its output, the peak memory (resident KiB) of it
/// and every helper process it waited for, and how long it took. Not a
/// [`Daemon`]: the figures need `wait4`'s own reaping, and `cmd` is a
/// command that ends (`sandstack validate`).
pub fn run_measured(cmd: &mut Command) -> (std::process::Output, u64, std::time::Duration) {
    use std::io::Read;
    let t = std::time::Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let mut status = 0;
    // SAFETY: wait4 fills the zeroed rusage for our own child, which is
    // reaped here and not waited for again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let elapsed = t.elapsed();
    let output = std::process::Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out_reader.join().expect("stdout"),
        stderr: err_reader.join().expect("stderr"),
    };
    drop(child);
    (output, usage.ru_maxrss as u64, elapsed)
}

/// A table key the tests name.
pub fn key(k: &str) -> sandstack::store::TableKey {
    sandstack::store::TableKey::parse(k).expect("a test's table key")
}

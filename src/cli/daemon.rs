//! Reaching the `sandstack run` (or `sandstack dashboard`) that holds a
//! database: DuckDB lets one process write a file, so while a daemon runs,
//! the commands that touch its database go through its control API
//! instead. The daemon announces itself in a small file beside the
//! database (`<db>.daemon.json`: its process id and dashboard address),
//! removed when it stops; a file left by a killed daemon is ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What the file beside the database says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announcement {
    pub pid: u32,
    /// The dashboard's base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// When the process started, in clock ticks after boot (Linux's
    /// `/proc/<pid>/stat`): with the pid, it names one process for as long
    /// as the machine runs, however pids are reused.
    #[serde(default)]
    pub started: u64,
}

/// `metrics.duckdb` is announced in `metrics.duckdb.daemon.json`.
pub fn file_for(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".daemon.json");
    PathBuf::from(name)
}

/// The announcement of this process, removed when dropped (if it is
/// still this process's).
pub struct Announced {
    path: PathBuf,
}

impl Drop for Announced {
    fn drop(&mut self) {
        let ours = read(&self.path).is_some_and(|a| a.pid == std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Announce that this process serves `db` at `url`: a new file of this
/// user's (never through a link someone planted), renamed into place in a
/// folder only this user may write.
pub fn announce(db: &Path, url: &str) -> anyhow::Result<Announced> {
    use std::io::Write;
    let path = file_for(db);
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    if let Err(why) = private_folder(&dir) {
        bail!(
            "not announcing this daemon in {}: {why}; commands on this database will not find it \
             (keep the database in a folder of your own)",
            path.display()
        );
    }
    let a = Announcement {
        pid: std::process::id(),
        url: url.to_string(),
        started: process_start(std::process::id())
            .context("reading this process's start time from /proc")?,
    };
    // A new file with a name no one can guess (O_EXCL, mode 0600), so a
    // planted `<db>.daemon.partial` symlink writes nowhere.
    let mut tmp = tempfile::Builder::new()
        .prefix(".sandstack-daemon-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(serde_json::to_string(&a)?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Announced { path })
}

/// The folder is this user's and no one else may write in it.
fn private_folder(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err("the folder is another user's".into());
    }
    if meta.mode() & 0o022 != 0 {
        return Err("others may write in the folder".into());
    }
    Ok(())
}

fn read(path: &Path) -> Option<Announcement> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// An announcement this user may trust with the dashboard token: a file
/// of this user's that no one else may write, in a folder no one else may
/// write, naming a loopback address (the token goes where it points), by a
/// process that still runs as this user, the very one that wrote it (its
/// start time matches and came before the file).
fn trusted(path: &Path) -> Option<Announcement> {
    use std::os::unix::fs::MetadataExt;
    let ignore = |why: String| {
        tracing::warn!(path = %path.display(), reason = %why, "ignoring a daemon file");
        None
    };
    let meta = std::fs::symlink_metadata(path).ok()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return ignore("it is not a file of this user's that only this user may write".into());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(why) = private_folder(dir) {
        return ignore(why);
    }
    let a = read(path)?;
    let loopback = url::Url::parse(&a.url).ok().is_some_and(|u| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            }
    });
    if !loopback {
        return ignore(format!("it names {}, not a loopback address", a.url));
    }
    if let Err(why) = same_process(&a, meta.mtime()) {
        return ignore(why);
    }
    Some(a)
}

/// The announced process is alive, this user's, and the one that wrote
/// the announcement: not a later process given the same pid.
fn same_process(a: &Announcement, written_s: i64) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let proc_dir = PathBuf::from(format!("/proc/{}", a.pid));
    let meta =
        std::fs::metadata(&proc_dir).map_err(|_| format!("process {} is not running", a.pid))?;
    // SAFETY: geteuid has no preconditions.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(format!("process {} is another user's", a.pid));
    }
    let started =
        process_start(a.pid).ok_or_else(|| format!("process {} is not running", a.pid))?;
    if a.started == 0 || started != a.started {
        return Err(format!(
            "process {} is not the one that wrote it (the daemon stopped and its pid was reused)",
            a.pid
        ));
    }
    if let Some(start_s) = process_start_epoch(started) {
        if start_s > written_s + 1 {
            return Err(format!("process {} started after it was written", a.pid));
        }
    }
    Ok(())
}

/// A process's start, in clock ticks after boot (`/proc/<pid>/stat`,
/// field 22); None when it does not run.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// A start in clock ticks after boot, in seconds since 1970.
fn process_start_epoch(ticks: u64) -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| boot + (ticks / hz as u64) as i64)
}

/// A running daemon's control API.
pub struct Daemon {
    pub url: String,
    pub pid: u32,
    token: Option<String>,
    client: reqwest::Client,
}

/// The daemon that holds `db`, if one is running and answers.
pub fn find(db: &Path) -> Option<Daemon> {
    let a = trusted(&file_for(db))?;
    if a.pid == std::process::id() {
        return None;
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    let health = format!("{}/healthz", a.url);
    let up = crate::outbound::block_on(async {
        client
            .get(&health)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .ok()?;
    up.then(|| Daemon {
        url: a.url,
        pid: a.pid,
        token: std::env::var("SANDSTACK_DASHBOARD_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        client,
    })
}

/// An answer's JSON error, or the status.
async fn failure(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {status}"))
}

impl Daemon {
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(self.client.get(format!("{}{path}", self.url)), path, false)?
            .ok_or_else(|| anyhow::anyhow!("{}: {path} is not there", self.who()))
    }

    /// Like [`Daemon::get`], with a 404 as `None`; every other failure is
    /// an error.
    pub fn get_optional<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        self.call(self.client.get(format!("{}{path}", self.url)), path, true)
    }

    fn who(&self) -> String {
        format!("the sandstack daemon (pid {}) at {}", self.pid, self.url)
    }

    /// A state change, with the dashboard token when this environment has
    /// one; `wait` is how long the daemon may take (a job runs to its end).
    pub fn post<T: DeserializeOwned>(&self, path: &str, wait: Duration) -> anyhow::Result<T> {
        let mut req = self
            .client
            .post(format!("{}{path}", self.url))
            .timeout(wait);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.call(req, path, false)?
            .ok_or_else(|| anyhow::anyhow!("{}: {path} is not there", self.who()))
    }

    /// The answer's JSON; `None` when `missing_ok` and the daemon says 404
    /// (its error otherwise, like any other failure).
    fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
        missing_ok: bool,
    ) -> anyhow::Result<Option<T>> {
        let who = self.who();
        crate::outbound::block_on(async {
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{who} did not answer {path}: {}", e.without_url()))?;
            if missing_ok && resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !resp.status().is_success() {
                bail!("{who}: {}", failure(resp).await);
            }
            let body = resp.bytes().await.map_err(|e| {
                anyhow::anyhow!("{who} broke off its answer to {path}: {}", e.without_url())
            })?;
            serde_json::from_slice::<T>(&body).map(Some).map_err(|e| {
                anyhow::anyhow!("{who} answered {path} with something unexpected: {e}")
            })
        })?
    }
}

impl Daemon {
    /// Run `job` of `batch` in the daemon now, print its run as `sandstack
    /// <job>` would, and say whether it succeeded.
    pub fn run_job(&self, batch: &str, job: &str) -> anyhow::Result<bool> {
        let path = format!(
            "/api/batches/{}/jobs/{job}/run",
            url::form_urlencoded::byte_serialize(batch.as_bytes()).collect::<String>()
        );
        // A job runs to its end (its own limits bound it).
        let r: crate::store::RunRecord = self.post(&path, Duration::from_secs(86_400))?;
        outln!(
            "batch {batch}: {job} ran in the sandstack daemon (pid {}) as run {}: {}, {} rows, {:.1} ms",
            self.pid,
            r.run_id,
            r.status.as_str(),
            r.rows,
            r.wall_ms
        );
        if let Some(log) = r.log.as_deref().filter(|l| !l.trim().is_empty()) {
            println!(
                "  {}",
                crate::escape::terminal_indented(log.trim_end(), "  ")
            );
        }
        if let Some(e) = &r.error {
            eprintln!(
                "{}: {}",
                if r.status == crate::store::RunStatus::Succeeded {
                    "note"
                } else {
                    "error"
                },
                crate::escape::terminal_indented(e.trim_end(), "  ")
            );
        }
        Ok(r.status == crate::store::RunStatus::Succeeded)
    }
}

/// What a command cannot do through a daemon, said before it tries.
pub fn refuse(daemon: &Daemon, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} cannot go through the running sandstack daemon (pid {}, {}), which holds the database: \
         stop it first, or use another --db",
        daemon.pid,
        daemon.url
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// An announcement by this test's own process (alive, this user's).
    fn write(dir: &Path, mode: u32, url: &str) -> PathBuf {
        let db = dir.join("m.duckdb");
        let path = file_for(&db);
        let a = Announcement {
            pid: std::process::id(),
            url: url.into(),
            started: process_start(std::process::id()).expect("start"),
        };
        std::fs::write(&path, serde_json::to_string(&a).expect("json")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn only_a_private_file_naming_loopback_is_trusted_with_the_token() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        assert!(trusted(&write(dir.path(), 0o644, "http://127.0.0.1:8080")).is_some());
        assert!(trusted(&write(dir.path(), 0o600, "http://[::1]:8080")).is_some());
        assert!(
            trusted(&write(dir.path(), 0o666, "http://127.0.0.1:8080")).is_none(),
            "others may write it"
        );
        assert!(trusted(&write(dir.path(), 0o644, "http://attacker.example:80")).is_none());
        assert!(trusted(&write(dir.path(), 0o644, "http://10.0.0.5:8080")).is_none());
        assert!(trusted(&write(dir.path(), 0o644, "file:///etc/passwd")).is_none());
    }

    #[test]
    fn a_file_left_by_a_process_whose_pid_was_reused_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write(dir.path(), 0o600, "http://127.0.0.1:8080");
        let mut a = read(&path).expect("read");
        // The same pid, another start: a later process given the pid.
        a.started += 1;
        std::fs::write(&path, serde_json::to_string(&a).expect("json")).expect("write");
        assert!(trusted(&path).is_none());
        // Written before the pid's process began.
        let mut old = read(&path).expect("read");
        old.started -= 1;
        std::fs::write(&path, serde_json::to_string(&old).expect("json")).expect("write");
        let long_ago = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(long_ago))
            .expect("mtime");
        assert!(trusted(&path).is_none(), "started after it was written");
        // No process at all.
        let mut gone = old.clone();
        gone.pid = u32::MAX / 2;
        std::fs::write(&path, serde_json::to_string(&gone).expect("json")).expect("write");
        assert!(trusted(&path).is_none());
    }

    #[test]
    fn the_file_is_never_written_through_a_planted_link_or_in_a_shared_folder() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let db = dir.path().join("m.duckdb");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("write");
        std::os::unix::fs::symlink(&victim, file_for(&db).with_extension("partial")).expect("link");
        let announced = announce(&db, "http://127.0.0.1:1").expect("announce");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
        let a = trusted(&file_for(&db)).expect("its own announcement is trusted");
        assert_eq!(a.pid, std::process::id());
        drop(announced);
        assert!(!file_for(&db).exists(), "removed when dropped");

        let shared = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let e = announce(&shared.path().join("m.duckdb"), "http://127.0.0.1:1")
            .err()
            .expect("a folder others may write");
        assert!(
            e.to_string().contains("others may write in the folder"),
            "{e}"
        );
    }

    /// A one-connection HTTP server on loopback answering every request
    /// with `status` and `body`.
    fn answering(status: &str, body: &'static str) -> Daemon {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let status = status.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(1) {
                let mut conn = conn.expect("accept");
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        Daemon {
            url,
            pid: 1,
            token: None,
            client: reqwest::Client::new(),
        }
    }

    #[test]
    fn only_not_found_reads_as_missing_and_other_failures_are_said() {
        let d = answering("404 Not Found", r#"{"error":"no run 7"}"#);
        let found: Option<serde_json::Value> = d.get_optional("/api/runs/7").expect("404 is None");
        assert!(found.is_none());

        let d = answering(
            "500 Internal Server Error",
            r#"{"error":"database is locked"}"#,
        );
        let err = d
            .get_optional::<serde_json::Value>("/api/runs/7")
            .expect_err("a 500 is an error");
        assert!(err.to_string().contains("database is locked"), "{err}");

        let d = answering("404 Not Found", r#"{"error":"no batch named x"}"#);
        let err = d
            .get::<serde_json::Value>("/api/batches/x")
            .expect_err("404");
        assert!(err.to_string().contains("no batch named x"), "{err}");
    }
}

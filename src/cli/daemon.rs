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

/// Announce that this process serves `db` at `url`.
pub fn announce(db: &Path, url: &str) -> anyhow::Result<Announced> {
    let path = file_for(db);
    let a = Announcement {
        pid: std::process::id(),
        url: url.to_string(),
    };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, serde_json::to_string(&a)?)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Announced { path })
}

fn read(path: &Path) -> Option<Announcement> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// An announcement this user may trust with the dashboard token: a file
/// of this user's that no one else may write, naming a loopback address
/// (the token goes where it points).
fn trusted(path: &Path) -> Option<Announcement> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        tracing::warn!(
            "ignoring {}: it is not a file of this user's that only this user may write",
            path.display()
        );
        return None;
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
        tracing::warn!(
            "ignoring {}: it names {}, not a loopback address",
            path.display(),
            a.url
        );
        return None;
    }
    Some(a)
}

/// Whether a process with this id exists (signal 0 checks, sends nothing).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A running daemon's control API.
pub struct Daemon {
    pub url: String,
    pub pid: u32,
    token: Option<String>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// The daemon that holds `db`, if one is running and answers.
pub fn find(db: &Path) -> Option<Daemon> {
    let a = trusted(&file_for(db))?;
    if a.pid == std::process::id() || !alive(a.pid) {
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    let health = format!("{}/healthz", a.url);
    let up = rt.block_on(async {
        client
            .get(&health)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    });
    up.then(|| Daemon {
        url: a.url,
        pid: a.pid,
        token: std::env::var("SANDSTACK_DASHBOARD_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        client,
        rt,
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
        self.rt.block_on(async {
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
        })
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
        println!(
            "batch {batch}: {job} ran in the sandstack daemon (pid {}) as run {}: {}, {} rows, {:.1} ms",
            self.pid,
            r.run_id,
            r.status.as_str(),
            r.rows,
            r.wall_ms
        );
        if let Some(log) = r.log.as_deref().filter(|l| !l.trim().is_empty()) {
            for line in crate::sandbox::guest_text::clean(log.trim_end()).lines() {
                println!("  {line}");
            }
        }
        if let Some(e) = &r.error {
            eprintln!(
                "{}: {}",
                if r.status == crate::store::RunStatus::Succeeded {
                    "note"
                } else {
                    "error"
                },
                crate::sandbox::guest_text::clean(e)
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

    fn write(dir: &Path, mode: u32, url: &str) -> PathBuf {
        let db = dir.join("m.duckdb");
        let path = file_for(&db);
        let a = Announcement {
            pid: 1,
            url: url.into(),
        };
        std::fs::write(&path, serde_json::to_string(&a).expect("json")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn only_a_private_file_naming_loopback_is_trusted_with_the_token() {
        let dir = tempfile::tempdir().expect("tmp");
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
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
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

//! A throwaway PostgreSQL server for tests and benchmarks: a cluster made
//! by `initdb` in a temporary directory, listening on a free loopback port
//! only, run as an unprivileged user (`nobody` when this process is root,
//! since PostgreSQL refuses root), with a login role that is not a
//! superuser, passwords checked (SCRAM), and stopped and deleted when
//! dropped. The server programs
//! come from Debian's `postgresql` package (`scripts/install-deps`), or
//! from `SANDSTACK_PG_BIN`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser's password (the cluster listens on loopback only and
/// lives as long as the test).
const ADMIN_PASSWORD: &str = "admin";

pub struct TempCluster {
    /// `postgres://` URL of the non-superuser role's database.
    pub url: String,
    /// The superuser's, for tests that need it.
    pub admin_url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    owner: Option<(u32, u32)>,
    _dir: tempfile::TempDir,
}

/// Where `initdb` and `pg_ctl` are.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SANDSTACK_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    // Debian keeps each major version's server programs out of PATH.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        "no PostgreSQL server programs (initdb) under /usr/lib/postgresql: run scripts/install-deps, \
         or set SANDSTACK_PG_BIN to the directory holding initdb and pg_ctl"
            .to_string()
    })
}

/// The user and group the server runs as: this process's, or `nobody`'s
/// when it is root.
fn unprivileged() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"nobody";
    // SAFETY: getpwnam takes a NUL-terminated name; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root and there is no `nobody` user to run PostgreSQL as".into());
    }
    // SAFETY: pw is non-null and points to getpwnam's static record.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl TempCluster {
    /// Make and start a cluster (a few seconds) that does not wait for
    /// its disk: what tests want.
    pub fn start() -> Result<TempCluster, String> {
        Self::start_with(false)
    }

    /// Make and start a cluster; `durable`: with PostgreSQL's default
    /// fsync and commit settings, as a benchmark must measure.
    pub fn start_with(durable: bool) -> Result<TempCluster, String> {
        let bin = bin_dir()?;
        let owner = unprivileged()?;
        let dir = tempfile::Builder::new()
            .prefix("sandstack-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            // The server user must reach its directory through ours.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        // The superuser's password, for initdb to set.
        let pwfile = dir.path().join("admin.pw");
        std::fs::write(&pwfile, ADMIN_PASSWORD).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let mut cluster = TempCluster {
            url: String::new(),
            admin_url: String::new(),
            port: 0,
            bin,
            data,
            owner,
            _dir: dir,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&cluster.data)?,
                "-U",
                "admin",
                "--auth=scram-sha-256",
                "--pwfile",
                path_str(&pwfile)?,
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        cluster.port = cluster.serve(durable)?;
        cluster.admin_url = format!(
            "postgres://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
            cluster.port
        );
        cluster.add_role()?;
        cluster.url = format!(
            "postgres://sandstack:sandstack@127.0.0.1:{}/sandstack",
            cluster.port
        );
        Ok(cluster)
    }

    /// Start the server on a free loopback port; returns the port. A port
    /// taken between choosing it and the server's bind is chosen again.
    fn serve(&self, durable: bool) -> Result<u16, String> {
        let speed = if durable {
            ""
        } else {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' \
                 -c max_connections=200{speed}"
            );
            let log = self.data.join("server.log");
            let started = self.run(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&self.data)?,
                    "-l",
                    path_str(&log)?,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            match started {
                Ok(()) => return Ok(port),
                Err(e) => last = e,
            }
        }
        Err(format!("PostgreSQL did not start: {last}"))
    }

    /// The login role sandstack uses: not a superuser, owning its database.
    fn add_role(&self) -> Result<(), String> {
        let mut admin = postgres::Client::connect(&self.admin_url, postgres::NoTls)
            .map_err(|e| super::engine_words(&e))?;
        for sql in [
            "CREATE ROLE sandstack LOGIN PASSWORD 'sandstack' NOSUPERUSER NOCREATEDB NOCREATEROLE",
            "CREATE DATABASE sandstack OWNER sandstack",
        ] {
            admin
                .batch_execute(sql)
                .map_err(|e| format!("{sql}: {}", super::engine_words(&e)))?;
        }
        Ok(())
    }

    /// Run one of the server's programs as the server's user.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid).current_dir("/");
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        Err(format!(
            "{program} failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        ))
    }
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            if let Ok(data) = path_str(&self.data) {
                let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
            }
        }
    }
}

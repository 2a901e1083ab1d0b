//! Helper processes: this executable started again in a role
//! (`sandstack __child ROLE`), for work on the batch author's input whose
//! cost only the kernel can bound. DuckDB running a batch's SQL allocates
//! outside its own memory limit, and a Jinja template can double a string
//! thirty times within its fuel; in-process, either takes the whole
//! machine. A helper process has:
//!
//! - its memory capped (`RLIMIT_DATA`: heap and private mappings), so it
//!   fails an allocation instead of growing;
//! - no file it can write (`RLIMIT_FSIZE` 0), no core dumps, no
//!   environment but `TZ`, and `/` as its working directory;
//! - a deadline and a stop flag, watched from a thread that kills it;
//! - no life after sandstack: it is killed when the thread that started it
//!   ends (`PR_SET_PDEATHSIG`; callers wait for their helper on the thread
//!   that started it).
//!
//! Parent and helper speak in frames (a tag byte, a length, the bytes) on
//! the helper's stdin and stdout; what it writes to stderr is kept (the
//! last 16 KiB) to explain a death.
//!
//! Which executable: the one running, when it is sandstack's own binary
//! ([`serve_from_this_executable`], called by `main`); otherwise (unit and
//! integration tests run inside their own harness) the `sandstack` binary
//! cargo built beside them.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The first argument that makes sandstack a helper.
pub const ARG: &str = "__child";

/// How much of a helper's stderr is kept.
const STDERR_KEPT: usize = 16 << 10;

/// Largest frame either side accepts; a helper's results come in many
/// frames, each well below this.
pub const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot find sandstack's executable to start a helper process: {0}")]
    NoExecutable(String),
    #[error("cannot start a helper process ({exe}): {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to a helper process: {0}")]
    Io(#[from] std::io::Error),
    #[error("a helper process sent a frame of {len} bytes (at most {MAX_FRAME})")]
    FrameTooLarge { len: u64 },
}

static SERVES_CHILDREN: AtomicBool = AtomicBool::new(false);

/// Called by sandstack's `main`: this executable can start helpers of its
/// own (a bundle named anything, too).
pub fn serve_from_this_executable() {
    SERVES_CHILDREN.store(true, Ordering::SeqCst);
}

/// The executable helpers are started from.
pub fn executable() -> Result<PathBuf, ChildError> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    EXE.get_or_init(find_executable)
        .clone()
        .map_err(ChildError::NoExecutable)
}

fn find_executable() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    if SERVES_CHILDREN.load(Ordering::SeqCst) {
        return Ok(me);
    }
    // A test harness: target/<profile>/deps/<test>-<hash>, with the
    // binary at target/<profile>/sandstack.
    let name = format!("sandstack{}", std::env::consts::EXE_SUFFIX);
    let candidates: Vec<PathBuf> = me
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "{} is not sandstack and no sandstack binary is beside it (looked for {}); build it with `cargo build`",
                me.display(),
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
}

/// What the kernel holds a helper to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Heap and private mappings, in bytes.
    pub memory_bytes: u64,
    /// CPU seconds, a backstop behind the deadline (which also counts
    /// time spent waiting).
    pub cpu_seconds: u64,
}

/// A running helper process.
pub struct Child {
    process: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::process::ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    watchdog: Option<Watchdog>,
    /// When the watchdog kills it (changeable: see [`Child::set_deadline`]).
    deadline: Arc<Mutex<Option<Instant>>>,
    /// Set when the watchdog killed it.
    killed_for: Arc<Mutex<Option<KilledFor>>>,
}

/// Why a helper was killed before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilledFor {
    Deadline,
    Stopped,
}

struct Watchdog {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// How a helper ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    /// The end of what it wrote to stderr.
    pub stderr: String,
    pub killed_for: Option<KilledFor>,
}

impl Ended {
    /// Whether it died of running out of memory: an allocation Rust or
    /// C++ could not make ends in an abort.
    pub fn out_of_memory(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.killed_for.is_none()
            && (self.stderr.contains("memory allocation of")
                || self.stderr.contains("std::bad_alloc")
                || self.status.signal() == Some(libc::SIGABRT))
    }
}

/// Start a helper in `role`, held to `limits`.
pub fn spawn(role: &str, limits: Limits) -> Result<Child, ChildError> {
    let exe = executable()?;
    let mut cmd = Command::new(&exe);
    cmd.arg(ARG)
        .arg(role)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Ok(tz) = std::env::var("TZ") {
        cmd.env("TZ", tz);
    }
    let Limits {
        memory_bytes,
        cpu_seconds,
    } = limits;
    // SAFETY: runs in the forked child before exec; it only makes system
    // calls (setrlimit, prctl), which are async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let cap = |resource, value: u64| {
                let lim = libc::rlimit {
                    rlim_cur: value as libc::rlim_t,
                    rlim_max: value as libc::rlim_t,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            cap(libc::RLIMIT_DATA, memory_bytes)?;
            cap(libc::RLIMIT_FSIZE, 0)?;
            cap(libc::RLIMIT_CORE, 0)?;
            cap(libc::RLIMIT_CPU, cpu_seconds.max(1))?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut process = cmd.spawn().map_err(|source| ChildError::Spawn {
        exe: exe.clone(),
        source,
    })?;
    let (Some(stdin), Some(stdout), Some(mut err)) = (
        process.stdin.take(),
        process.stdout.take(),
        process.stderr.take(),
    ) else {
        let _ = process.kill();
        let _ = process.wait();
        return Err(ChildError::Io(std::io::Error::other(
            "the helper's pipes were not made",
        )));
    };
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let kept = stderr.clone();
    let stderr_reader = std::thread::Builder::new()
        .name("helper-stderr".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
                k.extend_from_slice(&buf[..n]);
                if k.len() > STDERR_KEPT {
                    let cut = k.len() - STDERR_KEPT;
                    k.drain(..cut);
                }
            }
        })?;
    Ok(Child {
        process,
        stdin: Some(stdin),
        stdout,
        stderr,
        stderr_reader: Some(stderr_reader),
        watchdog: None,
        deadline: Arc::new(Mutex::new(None)),
        killed_for: Arc::new(Mutex::new(None)),
    })
}

impl Child {
    /// Kill the helper at `deadline`, or as soon as `stop` is set.
    pub fn watch(&mut self, deadline: Option<Instant>, stop: Option<Arc<AtomicBool>>) {
        self.set_deadline(deadline);
        if self.watchdog.is_some() {
            return;
        }
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let pid = self.process.id() as libc::pid_t;
        let (killed_for, shared_deadline) = (self.killed_for.clone(), self.deadline.clone());
        let thread = std::thread::spawn(move || loop {
            let now = Instant::now();
            let deadline = *shared_deadline.lock().unwrap_or_else(|p| p.into_inner());
            let why = if deadline.is_some_and(|d| now >= d) {
                Some(KilledFor::Deadline)
            } else if stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                Some(KilledFor::Stopped)
            } else {
                None
            };
            if let Some(why) = why {
                *killed_for.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                // SAFETY: signals our own child, which is not yet reaped
                // (the parent joins this thread before waiting for it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            let step = deadline
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(20));
            match wait.recv_timeout(step) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                _ => return,
            }
        });
        self.watchdog = Some(Watchdog { done, thread });
    }

    /// Move the deadline [`Child::watch`] set (None: no deadline).
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    /// Write one frame to the helper.
    pub fn send(&mut self, tag: u8, payload: &[u8]) -> Result<(), ChildError> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the helper's input is closed"))?;
        write_frame(stdin, tag, payload)?;
        stdin.flush()?;
        Ok(())
    }

    /// The helper's stdin, to be written from another thread while this
    /// one reads (the helper may answer before it has read everything).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.stdin.take()
    }

    /// The next frame the helper wrote; None at the end of its output.
    pub fn read_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, ChildError> {
        read_frame(&mut self.stdout)
    }

    /// The next frame, refused unread ([`ChildError::FrameTooLarge`]) when
    /// it says it is longer than `max` bytes.
    pub fn read_frame_within(&mut self, max: usize) -> Result<Option<(u8, Vec<u8>)>, ChildError> {
        read_frame_max(&mut self.stdout, max)
    }

    /// Kill it now (a caller that has seen enough).
    pub fn kill(&mut self) {
        let _ = self.process.kill();
    }

    /// Wait for it to end; the watchdog is stopped first, so a helper
    /// still running is killed rather than waited for past its deadline.
    pub fn finish(mut self) -> Ended {
        self.stdin.take();
        if let Some(w) = self.watchdog.take() {
            drop(w.done);
            let _ = w.thread.join();
        }
        let status = match self.process.try_wait() {
            Ok(Some(s)) => s,
            _ => {
                // Still running after its answer was read to the end (or
                // abandoned): it has nothing more to say.
                let _ = self.process.kill();
                match self.process.wait() {
                    Ok(s) => s,
                    Err(_) => std::os::unix::process::ExitStatusExt::from_raw(0),
                }
            }
        };
        if let Some(r) = self.stderr_reader.take() {
            let _ = r.join();
        }
        let stderr = {
            let k = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&k).into_owned()
        };
        let killed_for = *self.killed_for.lock().unwrap_or_else(|p| p.into_inner());
        Ended {
            status,
            stderr,
            killed_for,
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            drop(w.done);
            let _ = w.thread.join();
        }
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// Write one frame: the tag, the length (u64, little-endian), the bytes.
pub fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&[tag])?;
    w.write_all(&(payload.len() as u64).to_le_bytes())?;
    w.write_all(payload)
}

/// Read one frame; None at a clean end of input.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>, ChildError> {
    read_frame_max(r, MAX_FRAME)
}

/// Read one frame of at most `max` bytes (and [`MAX_FRAME`]).
fn read_frame_max(r: &mut impl Read, max: usize) -> Result<Option<(u8, Vec<u8>)>, ChildError> {
    let mut tag = [0u8; 1];
    match r.read_exact(&mut tag) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > max.min(MAX_FRAME) as u64 {
        return Err(ChildError::FrameTooLarge { len });
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    Ok(Some((tag[0], payload)))
}

/// The helper's own side: its stdin, and its answers' channel. The channel
/// is the pipe that was stdout, moved to a descriptor of its own; stdout
/// itself then goes where stderr goes, so nothing the helper's libraries
/// print (a query profile, a diagnostic) can pass for a frame.
pub fn stdio() -> std::io::Result<(
    std::io::StdinLock<'static>,
    std::io::BufWriter<std::fs::File>,
)> {
    use std::os::fd::FromRawFd;
    // SAFETY: dup and dup2 on the process's own standard descriptors; the
    // new descriptor is owned by the File made from it, and only by it.
    let answers = unsafe {
        let fd = libc::dup(libc::STDOUT_FILENO);
        if fd < 0 || libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::fs::File::from_raw_fd(fd)
    };
    Ok((std::io::stdin().lock(), std::io::BufWriter::new(answers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_short_one_is_an_error() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b'A', b"hello").expect("write");
        write_frame(&mut buf, b'B', b"").expect("write");
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).expect("a"),
            Some((b'A', b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut r).expect("b"), Some((b'B', Vec::new())));
        assert_eq!(read_frame(&mut r).expect("end"), None);
        let cut = &buf[..7];
        assert!(read_frame(&mut &cut[..]).is_err());
    }

    #[test]
    fn a_frame_claiming_more_than_the_cap_is_refused_unread() {
        let mut buf = vec![b'A'];
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            read_frame(&mut &buf[..]),
            Err(ChildError::FrameTooLarge { .. })
        ));
    }
}

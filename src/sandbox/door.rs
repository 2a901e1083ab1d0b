//! The host's end of the door: the frame format guest and host speak over
//! `host::call`. The guest's definition is runtime/python/_sandstack_door.py;
//! change both together.
//!
//! A frame is `b"SSD1" | u32 LE header length | header JSON | body bytes`.
//! Requests name an `op`; replies carry `ok` and, if false, an `error`.
//! Hand-written: it is twelve lines of framing, and a guest must be able to
//! produce it with nothing but `json` and `struct`.

use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 4] = b"SSD1";
pub const VERSION: u32 = 1;
/// Largest header accepted (the body is limited separately).
pub const MAX_HEADER: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("frame shorter than its 8-byte preamble")]
    Short,
    #[error("frame does not start with SSD1")]
    BadMagic,
    #[error("frame header of {0} bytes is over the {MAX_HEADER}-byte limit")]
    HeaderTooLarge(usize),
    #[error("frame header length runs past the frame")]
    Truncated,
    #[error("frame header is not valid JSON for op: {0}")]
    BadHeader(String),
    #[error("unsupported door protocol version {0} (this host speaks {VERSION})")]
    Version(u32),
}

/// A decoded request: the typed header and the body.
#[derive(Debug)]
pub struct Request<'a> {
    pub op: Op,
    pub body: &'a [u8],
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Start {
        #[serde(default = "v1")]
        v: u32,
    },
    Log {
        level: String,
        message: String,
    },
    Http(HttpRequestHeader),
    /// The user's function returned; the driver encodes its result next
    /// (sent only when the run times its phases).
    Returned {},
    /// The driver's marshalled code object of the user's source, in the
    /// body, for later runs ([`super::code_cache`]).
    Compiled {},
    Result(ResultHeader),
    Error(GuestError),
}

fn v1() -> u32 {
    VERSION
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpRequestHeader {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResultHeader {
    pub format: String,
    pub rows: u64,
    /// The columnar frame's description (empty for Arrow IPC).
    #[serde(default)]
    pub columns: Vec<ColumnHeader>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ColumnHeader {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub buffers: Vec<(u64, u64)>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub tz: Option<String>,
}

/// An exception (or a wrong return type) reported by the guest driver.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct GuestError {
    pub kind: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub message: String,
    #[serde(default)]
    pub traceback: String,
}

pub fn decode(frame: &[u8]) -> Result<Request<'_>, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short);
    }
    if &frame[..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let n = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) as usize;
    if n > MAX_HEADER {
        return Err(FrameError::HeaderTooLarge(n));
    }
    let end = 8usize.checked_add(n).ok_or(FrameError::Truncated)?;
    if end > frame.len() {
        return Err(FrameError::Truncated);
    }
    #[derive(Deserialize)]
    struct Version {
        #[serde(default = "v1")]
        v: u32,
    }
    let header = &frame[8..end];
    let version: Version =
        serde_json::from_slice(header).map_err(|e| FrameError::BadHeader(e.to_string()))?;
    if version.v != VERSION {
        return Err(FrameError::Version(version.v));
    }
    let op: Op =
        serde_json::from_slice(header).map_err(|e| FrameError::BadHeader(e.to_string()))?;
    if let Op::Start { v } = &op {
        if *v != VERSION {
            return Err(FrameError::Version(*v));
        }
    }
    Ok(Request {
        op,
        body: &frame[end..],
    })
}

/// Encode a reply frame.
pub fn encode(header: &serde_json::Value, body: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(header).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    let mut out = Vec::with_capacity(8 + head.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    out
}

pub fn ok(mut header: serde_json::Value, body: &[u8]) -> Vec<u8> {
    if let Some(map) = header.as_object_mut() {
        map.insert("ok".into(), true.into());
    }
    encode(&header, body)
}

pub fn refuse(kind: &str, message: &str) -> Vec<u8> {
    encode(
        &serde_json::json!({"ok": false, "error": {"kind": kind, "message": message}}),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: &str, body: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&(header.len() as u32).to_le_bytes());
        f.extend_from_slice(header.as_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn decodes_ops() {
        let f = frame(r#"{"op":"log","v":1,"level":"info","message":"hi"}"#, b"");
        assert!(matches!(decode(&f).expect("valid").op, Op::Log { .. }));
        let f = frame(
            r#"{"op":"http","v":1,"method":"GET","url":"http://x/"}"#,
            b"abc",
        );
        let r = decode(&f).expect("valid");
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn rejects_malformed_frames() {
        assert_eq!(decode(b"SSD").unwrap_err(), FrameError::Short);
        assert_eq!(decode(b"XXXX\0\0\0\0").unwrap_err(), FrameError::BadMagic);
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&100u32.to_le_bytes());
        assert_eq!(decode(&f).unwrap_err(), FrameError::Truncated);
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&f).unwrap_err(),
            FrameError::HeaderTooLarge(_)
        ));
        assert!(matches!(
            decode(&frame(r#"{"op":"format_disk"}"#, b"")).unwrap_err(),
            FrameError::BadHeader(_)
        ));
        assert_eq!(
            decode(&frame(r#"{"op":"start","v":7}"#, b"")).unwrap_err(),
            FrameError::Version(7)
        );
    }
}

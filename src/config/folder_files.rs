//! Reading a file of the metrics folder without letting it stall or
//! swell the reader: opened without blocking (a named pipe would wait for a
//! writer forever), checked to be a regular file on the descriptor itself
//! (so a swap after a check cannot change what is read), and read to at
//! most a limit.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("it is not a regular file")]
    NotRegular,
    #[error(
        "it resolves outside the metrics folder (through a symlink): sandstack reads only the folder's own files"
    )]
    Outside,
    #[error("it is {} KiB, over the {} KiB a file may have", .size >> 10, .max >> 10)]
    TooBig { size: u64, max: u64 },
    #[error("{0}")]
    Io(String),
}

/// The text of `path`, a regular file that resolves inside the folder
/// `root` (a symlink out of it is refused before anything is opened), at
/// most `max_bytes` long.
pub fn read_inside(root: &Path, path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    read_regular(&resolve_inside(root, path)?, max_bytes)
}

/// `path` with every link resolved, if that is inside the folder `root`.
pub fn resolve_inside(root: &Path, path: &Path) -> Result<std::path::PathBuf, ReadError> {
    let canonical = path
        .canonicalize()
        .map_err(|e| ReadError::Io(e.to_string()))?;
    let inside = root
        .canonicalize()
        .is_ok_and(|root| canonical.starts_with(root));
    if !inside {
        return Err(ReadError::Outside);
    }
    Ok(canonical)
}

/// The text of the regular file at `path`, at most `max_bytes` long.
pub fn read_regular(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    let io = |e: std::io::Error| ReadError::Io(e.to_string());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular);
    }
    let too_big = |size: u64| ReadError::TooBig {
        size,
        max: max_bytes,
    };
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    let mut text = String::new();
    file.take(max_bytes + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > max_bytes {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_a_device_and_a_large_file_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let fifo = dir.path().join("p.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo on a path in our own temporary folder.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        assert_eq!(read_regular(&fifo, 10), Err(ReadError::NotRegular));
        // Opened for reading, a pipe with no writer blocks forever.
        assert!(t.elapsed() < std::time::Duration::from_secs(30));
        assert_eq!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular)
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 4096]).expect("write");
        assert_eq!(
            read_regular(&big, 1024).unwrap_err().to_string(),
            "it is 4 KiB, over the 1 KiB a file may have"
        );
        assert_eq!(read_regular(&big, 4096).expect("read").len(), 4096);
    }
}

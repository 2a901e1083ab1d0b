//! The guest's stdout and stderr: one capped buffer for both, in the order
//! written (as a terminal would show them), and the one output budget of a
//! run, which log records sent through the door are charged to as well.
//! Writing past the cap keeps what fits and stops the run with
//! `ingest_max_output_kb` named, instead of wasmtime's `MemoryOutputPipe`,
//! which only traps with a generic message.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    cap: usize,
    /// Bytes of the budget spent: `buf` plus log records.
    used: usize,
    overflowed: bool,
}

/// A clone shares the same buffer.
#[derive(Clone, Debug)]
pub struct CappedOutput {
    state: Arc<Mutex<State>>,
}

/// Marker text of the trap raised when the cap is exceeded.
pub const OVERFLOW_TRAP: &str = "sandstack: output limit exceeded";

impl CappedOutput {
    pub fn new(cap: usize) -> Self {
        CappedOutput {
            state: Arc::new(Mutex::new(State {
                buf: Vec::new(),
                cap,
                used: 0,
                overflowed: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a writer panicked mid-append; the bytes
        // are still worth showing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was captured (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock().buf).into_owned()
    }

    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    fn append(&self, bytes: &[u8]) -> Result<usize, ()> {
        let mut s = self.lock();
        let room = s.cap.saturating_sub(s.used);
        let take = room.min(bytes.len());
        s.buf.extend_from_slice(&bytes[..take]);
        s.used += take;
        if take < bytes.len() {
            s.overflowed = true;
            return Err(());
        }
        Ok(take)
    }

    /// Spend `n` bytes of the budget on something kept elsewhere (a log
    /// record); false, and the budget marked spent, if they do not fit.
    pub fn charge(&self, n: usize) -> bool {
        let mut s = self.lock();
        if s.used.saturating_add(n) > s.cap {
            s.used = s.cap;
            s.overflowed = true;
            return false;
        }
        s.used += n;
        true
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map(|_| ())
            .map_err(|_| StreamError::trap(OVERFLOW_TRAP))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map_err(|_| std::io::Error::other(OVERFLOW_TRAP)),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_then_reports_overflow() {
        let mut out = CappedOutput::new(5);
        assert!(OutputStream::write(&mut out, Bytes::from_static(b"abc")).is_ok());
        assert!(OutputStream::write(&mut out, Bytes::from_static(b"defg")).is_err());
        assert_eq!(out.text(), "abcde");
        assert!(out.overflowed());
    }

    #[test]
    fn log_records_share_the_budget() {
        let mut out = CappedOutput::new(10);
        assert!(out.charge(6));
        assert!(OutputStream::write(&mut out, Bytes::from_static(b"abcd")).is_ok());
        assert!(!out.charge(1));
        assert!(out.overflowed());
        assert!(OutputStream::write(&mut out, Bytes::from_static(b"x")).is_err());
    }
}

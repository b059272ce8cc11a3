//! A bounded tail of a child's stderr, read in the background.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::watch;

/// Longest stderr line logged as one (longer ones are logged in pieces).
const MAX_LOGGED_LINE: usize = 8 * 1024;

fn log_line(pid: u32, program: &str, line: &[u8]) {
    tracing::info!(target: "runtimeuse::process", pid, program, "{}", String::from_utf8_lossy(line));
}

/// The last bytes a child wrote to stderr, kept while it runs (a cheap handle; clones
/// share the tail).
#[derive(Debug, Clone)]
pub struct StderrTail {
    bytes: Arc<Mutex<Vec<u8>>>,
    done: watch::Receiver<bool>,
}

impl StderrTail {
    /// Starts reading `stderr` in a task, keeping its last `limit` bytes and logging each
    /// line at info level (target `runtimeuse::process`, with the pid and program; in the
    /// caller's span, so the log layer redacts the session's secrets).
    pub(super) fn spawn<R>(mut stderr: R, limit: usize, pid: u32, program: String) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = watch::channel(false);
        let keep = bytes.clone();
        let reader = async move {
            let mut buf = vec![0_u8; 8 * 1024];
            let mut line = Vec::new();
            loop {
                let n = match stderr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                for &byte in chunk {
                    if byte == b'\n' || line.len() >= MAX_LOGGED_LINE {
                        log_line(pid, &program, &line);
                        line.clear();
                    }
                    if byte != b'\n' {
                        line.push(byte);
                    }
                }
                if let Ok(mut tail) = keep.lock() {
                    tail.extend_from_slice(chunk);
                    if tail.len() > limit {
                        let cut = tail.len() - limit;
                        tail.drain(..cut);
                    }
                }
            }
            if !line.is_empty() {
                log_line(pid, &program, &line);
            }
            let _ = done_tx.send(true);
        };
        tokio::spawn(tracing::Instrument::in_current_span(reader));
        Self { bytes, done }
    }

    /// The tail so far as text: invalid UTF-8 becomes U+FFFD, and a char cut at the front
    /// by the limit is dropped.
    pub fn text(&self) -> String {
        let Ok(bytes) = self.bytes.lock() else {
            return String::new();
        };
        // Skip continuation bytes left at the front by the cut.
        let start = bytes
            .iter()
            .take(3)
            .take_while(|&&b| b & 0xC0 == 0x80)
            .count();
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    /// Waits until stderr reached its end (the child and every process holding the pipe
    /// are gone). Callers bound this with a timeout: a background grandchild may hold it.
    pub async fn closed(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }

    /// The whole tail once stderr reached its end, waiting at most `limit` for it (a
    /// background grandchild may hold the pipe open): what to report after the child
    /// exited, since the tail is read by a task of its own that may still be behind.
    pub async fn final_text(&self, limit: std::time::Duration) -> String {
        let _ = tokio::time::timeout(limit, self.closed()).await;
        self.text()
    }
}

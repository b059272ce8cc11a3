//! Logging with secret redaction in the layer that writes, so no call site can forget it.
//!
//! Every secret any session has seen is registered here; each formatted log line is
//! redacted before it reaches stderr.

use std::io::Write;
use std::sync::{OnceLock, RwLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::redact::Redactor;

fn registry() -> &'static RwLock<Redactor> {
    static SECRETS: OnceLock<RwLock<Redactor>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Redactor::default()))
}

/// Adds secrets to the process-wide set redacted from every log line.
pub fn register_secrets(secrets: &Redactor) {
    if secrets.is_empty() {
        return;
    }
    let mut guard = registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *guard = guard.union(secrets);
}

/// The process-wide log redactor.
pub fn log_redactor() -> Redactor {
    registry()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// A [`MakeWriter`] that redacts registered secrets from each log line and writes it to
/// the inner writer.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    /// Wraps a writer factory (e.g. `std::io::stderr`).
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

/// One log line being written: buffered, redacted and forwarded on drop.
pub struct RedactingWriter<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.buffer);
        if line.is_empty() {
            return self.inner.flush();
        }
        let text = String::from_utf8_lossy(&line);
        let redacted = log_redactor().redact(&text);
        self.inner.write_all(redacted.as_bytes())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl<'a, M> MakeWriter<'a> for RedactingMakeWriter<M>
where
    M: MakeWriter<'a>,
{
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            buffer: Vec::new(),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG`-style filter (default `info`), stderr,
/// every line redacted. Safe to call more than once (later calls do nothing).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(RedactingMakeWriter::new(std::io::stderr))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_redacted_in_the_writer() {
        register_secrets(&Redactor::new(["log-secret-xyz"]));
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(move || sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                token = "log-secret-xyz",
                "message with log-secret-xyz inside"
            );
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("[REDACTED]"), "{text}");
        assert!(!text.contains("log-secret-xyz"), "{text}");
    }
}

//! The TCP stream under every connection, noting what moves through it: the evidence the
//! dead-client rule and the bound on queued pongs rest on.
//!
//! Two facts are recorded. *Progress*: bytes arrived from the client, or the socket took
//! bytes of ours after it had been full (only a reading client empties a full socket;
//! bytes taken by a socket with room prove nothing); the writer adds whole frames of output
//! taken ([`Traffic::touch`]). *Drained*: a write took everything it
//! was offered, so nothing of ours (the WebSocket layer's automatic pongs included) waits
//! in user space.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What one connection's stream has seen; shared by its reader, writer and watchdog.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    progress: AtomicU64,
    drained: AtomicU64,
    blocked: AtomicBool,
    drained_notify: Notify,
    flush_wanted: Notify,
}

impl Traffic {
    /// A counter that moves whenever the client shows it is alive.
    pub(crate) fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// A counter that moves whenever everything written so far has left user space.
    pub(crate) fn drained(&self) -> u64 {
        self.drained.load(Ordering::Acquire)
    }

    /// Resolves once [`drained`](Self::drained) differs from `seen`.
    pub(crate) async fn drained_since(&self, seen: u64) {
        loop {
            let notified = self.drained_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.drained() != seen {
                return;
            }
            notified.await;
        }
    }

    /// Asks the writer to flush what is buffered (see [`flush_wanted`](Self::flush_wanted)).
    pub(crate) fn want_flush(&self) {
        self.flush_wanted.notify_one();
    }

    /// Resolves when someone asked for a flush.
    pub(crate) async fn flush_wanted(&self) {
        self.flush_wanted.notified().await;
    }

    /// Records progress seen above the stream (a whole frame of output taken).
    pub(crate) fn touch(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    fn note_read(&self, bytes: usize) {
        if bytes > 0 {
            self.progress.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn note_write(&self, offered: usize, result: &Poll<std::io::Result<usize>>) {
        match result {
            Poll::Pending => self.blocked.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(written)) => {
                if *written > 0 && self.blocked.swap(false, Ordering::Relaxed) {
                    self.progress.fetch_add(1, Ordering::Relaxed);
                }
                if *written == offered {
                    self.drained.fetch_add(1, Ordering::Release);
                    self.drained_notify.notify_waiters();
                }
            }
            Poll::Ready(Err(_)) => {}
        }
    }
}

/// A stream that reports to a [`Traffic`].
#[derive(Debug)]
pub(crate) struct MeteredIo<T> {
    inner: T,
    traffic: Arc<Traffic>,
}

impl<T> MeteredIo<T> {
    /// Wraps `inner`, reporting to `traffic`.
    pub(crate) fn new(inner: T, traffic: Arc<Traffic>) -> Self {
        Self { inner, traffic }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MeteredIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.traffic.note_read(buf.filled().len() - before);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MeteredIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.traffic.note_write(buf.len(), &result);
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_count_as_progress_and_whole_writes_as_drained() {
        let (a, mut b) = tokio::io::duplex(8);
        let traffic = Arc::new(Traffic::default());
        let mut io = MeteredIo::new(a, traffic.clone());
        io.write_all(b"1234").await.unwrap();
        assert_eq!(traffic.drained(), 1);
        // A socket with room proves nothing about the peer.
        assert_eq!(traffic.progress(), 0);
        b.write_all(b"xy").await.unwrap();
        let mut got = [0u8; 2];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(traffic.progress(), 1);
    }

    #[tokio::test]
    async fn bytes_taken_by_a_full_socket_count_as_progress() {
        let (a, mut b) = tokio::io::duplex(4);
        let traffic = Arc::new(Traffic::default());
        let mut io = MeteredIo::new(a, traffic.clone());
        let writer = tokio::spawn(async move {
            io.write_all(b"0123456789").await.unwrap();
        });
        let mut got = vec![0u8; 10];
        b.read_exact(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(traffic.progress() >= 1, "{}", traffic.progress());
        assert!(traffic.drained() >= 1);
    }
}

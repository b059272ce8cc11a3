//! Presigned `PUT` uploads of artifact files.
//!
//! The file is streamed from disk with an explicit `Content-Length` (presigned S3 URLs
//! refuse chunked bodies), so memory stays flat for gigabyte files. Connection errors,
//! stalled attempts and 5xx answers are retried with exponential backoff; other statuses
//! fail at once.
//!
//! An attempt has no overall deadline, which would kill a healthy multi-gigabyte upload
//! on a slow link; it is abandoned when it makes no progress (no body bytes taken by the
//! connection, no answer after the body) for [`RetryPolicy::stall_timeout`].
//!
//! Only regular files are sent, and never through a symbolic link: a file swapped for a
//! link (to `/proc/<pid>/environ`, say) between its announcement and its upload is
//! refused, as is one whose directory was swapped for a link.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use nix::libc;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use url::Url;

use crate::download::{causes, loggable_url};

/// Read size when streaming the file.
const READ_CHUNK: usize = 256 * 1024;

/// Retry and timeout policy for uploads: connection errors, stalls and 5xx are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (first try included).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub initial_backoff: Duration,
    /// An attempt that makes no progress for this long (connecting, sending the body,
    /// or waiting for the answer after it) is abandoned and retried. Default 60 s.
    pub stall_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(200),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The file could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is not a regular file reached without symbolic links; never retried.
    #[error("refused to upload {path}: {reason}")]
    Refused {
        /// The file.
        path: String,
        /// Why: a symbolic link, a FIFO, a directory swapped for a link...
        reason: String,
    },
    /// The server answered with a non-2xx status (after retries for 5xx).
    #[error("upload failed with status {0}")]
    Status(u16),
    /// The connection failed or stalled (after retries).
    #[error("upload failed: {0}")]
    Connection(String),
}

/// Streams the file at `path` to `url` with `PUT` and `Content-Type: content_type`.
/// Returns the number of bytes sent.
///
/// The file is reopened for every attempt, so a retry sends its current content. `path`
/// should be absolute and free of symbolic links (artifact paths are canonical): a
/// path that reaches its file through a link is refused.
///
/// # Errors
///
/// [`UploadError::Read`] at once if the file cannot be opened, [`UploadError::Refused`]
/// at once if it is a symbolic link, is reached through one, or is not a regular file,
/// [`UploadError::Status`] at once for a 4xx (or other non-5xx failure) and after the
/// last attempt for a 5xx, [`UploadError::Connection`] after the last attempt for a
/// connection failure or an attempt stalled for [`RetryPolicy::stall_timeout`].
pub async fn upload_file(
    http: &reqwest::Client,
    path: &Path,
    url: &str,
    content_type: &str,
    policy: &RetryPolicy,
) -> Result<u64, UploadError> {
    let shown = loggable(url);
    let attempts = policy.attempts.max(1);
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        let error = match put_once(http, path, url, content_type, policy.stall_timeout).await {
            Ok(len) => {
                tracing::debug!(url = %shown, attempt, bytes = len, "upload done");
                crate::metrics::artifact_finished(true);
                return Ok(len);
            }
            Err(Failure::Fatal(e)) => {
                tracing::warn!(url = %shown, attempt, error = %e, "upload failed");
                crate::metrics::artifact_finished(false);
                return Err(e);
            }
            Err(Failure::Retryable(e)) => e,
        };
        if attempt >= attempts {
            tracing::warn!(
                url = %shown, attempt, error = %error,
                "upload failed, no retries left"
            );
            crate::metrics::artifact_finished(false);
            return Err(error);
        }
        tracing::info!(
            url = %shown, attempt, attempts, error = %error, retry_in = ?backoff,
            "upload attempt failed, retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2);
        attempt += 1;
    }
}

enum Failure {
    Retryable(UploadError),
    Fatal(UploadError),
}

async fn put_once(
    http: &reqwest::Client,
    path: &Path,
    url: &str,
    content_type: &str,
    stall_timeout: Duration,
) -> Result<u64, Failure> {
    let (file, len) = open_regular(path).await.map_err(Failure::Fatal)?;
    // Never send more than announced, even if the file grows meanwhile; if it shrinks,
    // the body ends early, the request fails and the retry sends the new content.
    let reader = file.take(len);
    let progress = Progress::new();
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK).inspect({
        let progress = progress.clone();
        move |_| progress.touch()
    });
    let request = http
        .put(url)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let response = tokio::select! {
        response = request => response,
        () = progress.stalled(stall_timeout) => {
            return Err(Failure::Retryable(UploadError::Connection(format!(
                "no progress for {stall_timeout:?} talking to {}; attempt abandoned",
                origin(url)
            ))));
        }
    };
    let response = response.map_err(|e| {
        if e.is_builder() {
            return Failure::Fatal(UploadError::Connection(format!(
                "invalid upload URL: {}",
                causes(&e)
            )));
        }
        let what = if e.is_connect() {
            "could not connect to"
        } else if e.is_timeout() {
            "timed out talking to"
        } else {
            "request failed for"
        };
        let cause = causes(&e);
        Failure::Retryable(UploadError::Connection(format!(
            "{what} {}: {cause}",
            origin(url)
        )))
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(len)
    } else if status.is_server_error() {
        Err(Failure::Retryable(UploadError::Status(status.as_u16())))
    } else {
        Err(Failure::Fatal(UploadError::Status(status.as_u16())))
    }
}

/// Opens `path` for reading if it is a regular file reached without symbolic links,
/// and returns it with its length.
async fn open_regular(path: &Path) -> Result<(tokio::fs::File, u64), UploadError> {
    let shown = || path.display().to_string();
    let refused = |reason: String| UploadError::Refused {
        path: shown(),
        reason,
    };
    let read_error = |source| UploadError::Read {
        path: shown(),
        source,
    };
    // O_NOFOLLOW: a link in the last component fails instead of being followed.
    // O_NONBLOCK: opening a FIFO swapped in would otherwise wait for a writer forever.
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused("it is a symbolic link".to_owned()),
            _ => read_error(e),
        })?;
    let meta = file.metadata().await.map_err(read_error)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(refused(format!("it is not a regular file but {kind}")));
    }
    // O_NOFOLLOW guards only the last component; where the kernel actually found the
    // file tells whether a directory on the way was a link.
    if let Some(found) = opened_path(&file).await
        && found != lexical_absolute(path)
    {
        return Err(refused(format!(
            "a directory on its path is a symbolic link (it leads to {})",
            found.display()
        )));
    }
    Ok((file, meta.len()))
}

/// The path the kernel opened `file` at, from `/proc/self/fd`; `None` without procfs.
async fn opened_path(file: &tokio::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let found = tokio::fs::read_link(link).await.ok()?;
    // A file unlinked since it was opened is shown with this suffix.
    let bytes = found.as_os_str().as_bytes();
    Some(match bytes.strip_suffix(b" (deleted)") {
        Some(kept) => PathBuf::from(std::ffi::OsString::from_vec(kept.to_vec())),
        None => found,
    })
}

/// `path` made absolute with `.` and `..` resolved lexically: the path the kernel
/// reports for the file when no symbolic link is on the way.
fn lexical_absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// When the body of an attempt last moved.
#[derive(Clone)]
struct Progress {
    start: Instant,
    /// Milliseconds after `start` of the last progress.
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `limit`.
    async fn stalled(&self, limit: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.start + Duration::from_millis(last) + limit).await;
            if self.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// Scheme, host and port of `url`, for messages.
fn origin(url: &str) -> String {
    Url::parse(url).map_or_else(
        |_| "(invalid URL)".to_owned(),
        |mut u| {
            u.set_path("");
            loggable_url(&u)
        },
    )
}

/// Scheme, host and path of `url`: presigned URLs carry credentials in the query.
fn loggable(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "(invalid URL)".to_owned(), |u| loggable_url(&u))
}

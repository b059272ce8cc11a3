//! Presigned `PUT` uploads of artifact files.
//!
//! The file is streamed from disk with an explicit `Content-Length` (presigned S3 URLs
//! refuse chunked bodies), so memory stays flat for gigabyte files. Connection errors and
//! 5xx answers are retried with exponential backoff; other statuses fail at once.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use tokio::io::AsyncReadExt;
use url::Url;

use crate::download::{causes, loggable_url};

/// Read size when streaming the file.
const READ_CHUNK: usize = 256 * 1024;

/// Retry policy for uploads: connection errors and 5xx are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (first try included).
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(200),
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
    /// The server answered with a non-2xx status (after retries for 5xx).
    #[error("upload failed with status {0}")]
    Status(u16),
    /// The connection failed (after retries).
    #[error("upload failed: {0}")]
    Connection(String),
}

/// Streams the file at `path` to `url` with `PUT` and `Content-Type: content_type`.
/// Returns the number of bytes sent.
///
/// The file is reopened for every attempt, so a retry sends its current content.
///
/// # Errors
///
/// [`UploadError::Read`] at once if the file cannot be opened, [`UploadError::Status`]
/// at once for a 4xx (or other non-5xx failure) and after the last attempt for a 5xx,
/// [`UploadError::Connection`] after the last attempt for a connection failure.
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
        let error = match put_once(http, path, url, content_type).await {
            Ok(len) => {
                tracing::debug!(url = %shown, attempt, bytes = len, "upload done");
                return Ok(len);
            }
            Err(Failure::Fatal(e)) => {
                tracing::warn!(url = %shown, attempt, error = %e, "upload failed");
                return Err(e);
            }
            Err(Failure::Retryable(e)) => e,
        };
        if attempt >= attempts {
            tracing::warn!(
                url = %shown, attempt, error = %error,
                "upload failed, no retries left"
            );
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
) -> Result<u64, Failure> {
    let read_error = |source| {
        Failure::Fatal(UploadError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let len = file.metadata().await.map_err(read_error)?.len();
    // Never send more than announced, even if the file grows meanwhile; if it shrinks,
    // the body ends early, the request fails and the retry sends the new content.
    let reader = file.take(len);
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        reader, READ_CHUNK,
    ));
    let response = http
        .put(url)
        .header(CONTENT_TYPE, content_type)
        .header(CONTENT_LENGTH, len)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_builder() {
                return Failure::Fatal(UploadError::Connection(format!(
                    "invalid upload URL: {}",
                    causes(&e)
                )));
            }
            let what = if e.is_connect() {
                "could not connect to"
            } else {
                "request failed for"
            };
            let host = e.url().map_or_else(String::new, |u| {
                let mut origin = u.clone();
                origin.set_path("");
                loggable_url(&origin)
            });
            let cause = causes(&e);
            Failure::Retryable(UploadError::Connection(format!("{what} {host}: {cause}")))
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

/// Scheme, host and path of `url`: presigned URLs carry credentials in the query.
fn loggable(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "(invalid URL)".to_owned(), |u| loggable_url(&u))
}

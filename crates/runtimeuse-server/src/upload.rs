//! Presigned `PUT` uploads of artifact files (stub: signatures only).

use std::path::Path;
use std::time::Duration;

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
pub async fn upload_file(
    http: &reqwest::Client,
    path: &Path,
    url: &str,
    content_type: &str,
    policy: &RetryPolicy,
) -> Result<u64, UploadError> {
    let _ = (http, path, url, content_type, policy);
    Err(UploadError::Connection("not implemented".into()))
}

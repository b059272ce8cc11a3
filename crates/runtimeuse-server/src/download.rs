//! Downloading `pre_*_downloadables` into the sandbox (stub: signatures only).

use std::path::PathBuf;

use runtimeuse_protocol::Downloadable;
use tokio_util::sync::CancellationToken;

/// Why a download failed. The `Display` text goes to the client as `error_message`.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Non-2xx answer: `Download failed: 404 Not Found`.
    #[error("Download failed: {status} {reason}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Canonical reason phrase.
        reason: String,
    },
    /// Any other failure, with its cause.
    #[error("Download failed: {0}")]
    Other(String),
    /// The request was cancelled.
    #[error("download cancelled")]
    Cancelled,
}

/// Downloads `item` into its `working_dir`; a `.zip` is extracted there and deleted.
/// Returns the path of the downloaded file (or of the directory a zip was extracted into).
pub async fn download(
    http: &reqwest::Client,
    item: &Downloadable,
    cancel: &CancellationToken,
) -> Result<PathBuf, DownloadError> {
    let _ = (http, item, cancel);
    Err(DownloadError::Other("not implemented".into()))
}

//! Downloading `pre_*_downloadables` into the sandbox.
//!
//! The body is streamed to a hidden temporary file next to the target and renamed into
//! place only once complete, so memory stays flat for multi-gigabyte files and a failed or
//! cancelled download leaves nothing behind. A `.zip` is extracted straight from that
//! temporary file (see [`crate::unzip`]) and never appears under its own name; the
//! extraction is capped by [`UnzipLimits`] and stops when the request is cancelled.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use runtimeuse_protocol::Downloadable;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::unzip::{self, UnzipError, UnzipLimits};

/// Write buffer for the downloaded body: large enough that disk writes are few, small
/// enough not to matter.
const WRITE_BUFFER: usize = 1024 * 1024;

/// How long a cancelled request waits for the extraction thread to notice: it checks
/// after every chunk, so this is only reached when the file system itself hangs.
const UNZIP_STOP_GRACE: Duration = Duration::from_secs(2);

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
    /// The downloaded `.zip` could not be extracted (hostile or corrupt archive).
    #[error("Download failed: {0}")]
    Unzip(#[from] unzip::UnzipError),
    /// The request was cancelled.
    #[error("download cancelled")]
    Cancelled,
}

/// Downloads `item` into its `working_dir`; a `.zip` is extracted there (within the
/// default [`UnzipLimits`]) and deleted. See [`download_with`].
///
/// # Errors
///
/// As [`download_with`].
pub async fn download(
    http: &reqwest::Client,
    item: &Downloadable,
    cancel: &CancellationToken,
) -> Result<PathBuf, DownloadError> {
    download_with(http, item, cancel, &UnzipLimits::default()).await
}

/// Downloads `item` into its `working_dir`; a `.zip` is extracted there within `limits`
/// and deleted. Returns the path of the downloaded file (or of the directory a zip was
/// extracted into).
///
/// Cancelling `cancel` aborts the transfer at once, and an extraction within
/// milliseconds (it stops between chunks; the file it was writing is removed, entries
/// already extracted stay).
///
/// # Errors
///
/// [`DownloadError::Status`] for a non-2xx answer, [`DownloadError::Unzip`] for an
/// archive that is corrupt, would write outside `working_dir` or exceeds `limits`,
/// [`DownloadError::Cancelled`], and [`DownloadError::Other`] for a bad URL, a
/// connection failure (naming the host) or a local file system error. In every case
/// no partial download is left behind.
pub async fn download_with(
    http: &reqwest::Client,
    item: &Downloadable,
    cancel: &CancellationToken,
    limits: &UnzipLimits,
) -> Result<PathBuf, DownloadError> {
    let url = Url::parse(&item.download_url)
        .map_err(|e| DownloadError::Other(format!("invalid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DownloadError::Other(format!(
            "unsupported URL scheme {:?} (only http and https)",
            url.scheme()
        )));
    }
    let name = file_name(&url)?;
    let dir = PathBuf::from(&item.working_dir);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        DownloadError::Other(format!("cannot create directory {}: {e}", dir.display()))
    })?;
    let target = dir.join(&name);
    // Created before the cancellable part: a file creation still running in the
    // blocking pool after cancellation could otherwise outlive the cleanup.
    let partial = Partial::new(&dir);
    let file = tokio::fs::File::create(&partial.path)
        .await
        .map_err(|e| write_error(&partial.path, &e))?;
    tracing::debug!(
        host = %host(&url),
        path = url.path(),
        file = %target.display(),
        "download started"
    );

    tokio::select! {
        biased;
        () = cancel.cancelled() => {
            tracing::debug!(file = %target.display(), "download cancelled");
            return Err(DownloadError::Cancelled);
        }
        result = fetch(http, &url, file, &partial.path) => result?,
    }

    let is_zip = name
        .to_str()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".zip"));
    if is_zip {
        let entries = extract(&partial.path, &dir, limits, cancel).await?;
        tracing::debug!(entries, dir = %dir.display(), "zip extracted");
        drop(partial); // removes the archive
        return Ok(dir);
    }
    partial.persist(&target).await?;
    Ok(target)
}

/// Extracts `archive` into `dir` on a blocking thread that stops when `cancel` fires or
/// this future is dropped (the connection closed).
async fn extract(
    archive: &Path,
    dir: &Path,
    limits: &UnzipLimits,
    cancel: &CancellationToken,
) -> Result<usize, DownloadError> {
    let stop = cancel.child_token();
    let _stop_when_dropped = stop.clone().drop_guard();
    let mut task = tokio::task::spawn_blocking({
        let (archive, dir, limits) = (archive.to_owned(), dir.to_owned(), limits.clone());
        move || unzip::extract_zip_with(&archive, &dir, &limits, &stop)
    });
    let joined = tokio::select! {
        biased;
        joined = &mut task => joined,
        () = cancel.cancelled() => {
            // Wait for the thread to stop, so nothing is written after the request ends.
            if tokio::time::timeout(UNZIP_STOP_GRACE, task).await.is_err() {
                tracing::warn!(dir = %dir.display(), "zip extraction still running after cancel");
            }
            tracing::debug!(dir = %dir.display(), "zip extraction cancelled");
            return Err(DownloadError::Cancelled);
        }
    };
    match joined {
        Ok(Ok(entries)) => Ok(entries),
        Ok(Err(UnzipError::Cancelled)) => Err(DownloadError::Cancelled),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(DownloadError::Other(format!("zip extraction stopped: {e}"))),
    }
}

/// Streams the body of `GET url` into `file` (at `path`).
async fn fetch(
    http: &reqwest::Client,
    url: &Url,
    file: tokio::fs::File,
    path: &Path,
) -> Result<(), DownloadError> {
    let mut response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| request_error(url, &e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(DownloadError::Status {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Unknown").to_owned(),
        });
    }
    let expected = response.content_length();
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        DownloadError::Other(format!(
            "connection to {} broke after {received} bytes: {}",
            host(url),
            causes(&e)
        ))
    })? {
        out.write_all(&chunk)
            .await
            .map_err(|e| write_error(path, &e))?;
        received += chunk.len() as u64;
    }
    out.flush().await.map_err(|e| write_error(path, &e))?;
    if let Some(expected) = expected
        && expected != received
    {
        return Err(DownloadError::Other(format!(
            "{} sent {received} of {expected} bytes",
            host(url)
        )));
    }
    Ok(())
}

/// The percent-decoded last segment of the URL path, if it is a usable file name.
fn file_name(url: &Url) -> Result<OsString, DownloadError> {
    let segment = url
        .path_segments()
        .and_then(Iterator::last)
        .unwrap_or_default();
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
    if decoded.is_empty()
        || decoded == b"."
        || decoded == b".."
        || decoded.contains(&b'/')
        || decoded.contains(&0)
    {
        return Err(DownloadError::Other(format!(
            "cannot take a file name from the URL path {:?}: its last segment must be a \
             plain file name",
            url.path()
        )));
    }
    Ok(OsString::from_vec(decoded))
}

/// `host[:port]` for messages and logs; never the query, which may carry credentials.
fn host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => "(no host)".to_owned(),
    }
}

fn request_error(url: &Url, e: &reqwest::Error) -> DownloadError {
    let what = if e.is_connect() {
        "could not connect to"
    } else if e.is_timeout() {
        "timed out talking to"
    } else {
        "request failed for"
    };
    DownloadError::Other(format!("{what} {}: {}", host(url), causes(e)))
}

/// The error and its sources, joined, without the URL's query (which may carry
/// credentials). For a failed connection only the root cause, which says it all
/// (`Connection refused (os error 111)`, a DNS failure, a TLS error).
pub(crate) fn causes(e: &reqwest::Error) -> String {
    if e.is_connect() {
        let mut root: &dyn std::error::Error = e;
        while let Some(source) = root.source() {
            root = source;
        }
        return root.to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    let mut text = parts.join(": ");
    if let Some(url) = e.url() {
        // reqwest's own message names the URL; keep only scheme, host and path.
        text = text.replace(url.as_str(), &loggable_url(url));
    }
    text
}

/// Scheme, host, port and path of `url`, for messages and logs: presigned URLs carry
/// credentials in the query (and a URL may carry them as user info).
pub(crate) fn loggable_url(url: &Url) -> String {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let _ = bare.set_password(None);
    let _ = bare.set_username("");
    bare.to_string()
}

fn write_error(path: &Path, e: &std::io::Error) -> DownloadError {
    DownloadError::Other(format!("cannot write {}: {e}", path.display()))
}

/// A temporary file that is removed unless persisted, also when the download future is
/// dropped (cancellation).
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Partial {
    fn new(dir: &Path) -> Self {
        // Unique per process and download, so concurrent downloads do not collide, and
        // independent of the target name, which may already be as long as allowed.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let file = format!(".runtimeuse-download-{}-{n}.part", std::process::id());
        Self {
            path: dir.join(file),
            keep: false,
        }
    }

    async fn persist(mut self, target: &Path) -> Result<(), DownloadError> {
        tokio::fs::rename(&self.path, target).await.map_err(|e| {
            DownloadError::Other(format!("cannot move file to {}: {e}", target.display()))
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

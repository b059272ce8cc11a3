//! Artifacts: watching directories, asking the client where to upload, uploading.
//! (Stub: signatures only.)

use std::path::Path;
use std::time::Duration;

use runtimeuse_protocol::ArtifactUploadResponse;

use crate::outbox::Outbox;
use crate::upload::RetryPolicy;

/// Timings of the artifact machinery.
#[derive(Debug, Clone)]
pub struct ArtifactOptions {
    /// How long to wait for late file events when draining.
    pub late_event_grace: Duration,
    /// How long to wait for clients to answer outstanding upload requests when draining.
    pub handshake_timeout: Duration,
    /// How long to wait for running uploads when draining.
    pub upload_timeout: Duration,
    /// Fallback for platforms without close-write events: a file is ready once its size
    /// and mtime stop changing for this long.
    pub stability_window: Duration,
    /// Retries of the presigned PUT.
    pub retry: RetryPolicy,
}

impl Default for ArtifactOptions {
    fn default() -> Self {
        Self {
            late_event_grace: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(30),
            stability_window: Duration::from_millis(500),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why a directory could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The directory could not be created.
    #[error("could not create artifacts directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The watcher could not be set up.
    #[error("could not watch {path}: {reason}")]
    Watch {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A session's artifact manager. Cheap to clone; all clones share one state.
#[derive(Clone, Debug)]
pub struct Artifacts {}

impl Artifacts {
    /// A manager that announces files through `outbox` and uploads them with `http`.
    pub fn new(outbox: Outbox, http: reqwest::Client, options: ArtifactOptions) -> Self {
        let _ = (outbox, http, options);
        Self {}
    }

    /// Starts watching `dirs` (created if missing) with the given ignore rules, for the
    /// rest of the session. A directory already watched keeps its watch; its ignore rules
    /// are replaced when `ignore_content` is given.
    pub fn watch(
        &self,
        dirs: &[String],
        ignore_content: Option<&str>,
    ) -> Result<(), ArtifactError> {
        let _ = (dirs, ignore_content);
        Ok(())
    }

    /// Handles the client's answer to an upload request: starts the upload.
    pub fn on_upload_response(&self, response: ArtifactUploadResponse) {
        let _ = response;
    }

    /// Waits until `path` has been announced to the client (upload request sent).
    pub async fn wait_picked_up(&self, path: &Path, timeout: Duration) -> bool {
        let _ = (path, timeout);
        false
    }

    /// Drains: waits for late events, stops watching, waits for handshakes and uploads.
    pub async fn drain(&self) {}
}

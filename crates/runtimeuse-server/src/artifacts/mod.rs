//! Artifacts: watching directories, asking the client where to upload, uploading.
//!
//! For every non-empty file created or changed under a watched directory (and not
//! ignored), the runtime sends `artifact_upload_request_message`; the client answers with
//! a presigned URL and the file is `PUT` there. The pieces:
//!
//! - `watch`: notify's recursive watcher, reduced to a bounded stream of events;
//! - `readiness`: when a changed file is complete (close-write, or holding still);
//! - [`ignore_rules`]: which files a directory never announces;
//! - `shared`: the handshakes in flight and the running uploads;
//! - `pipeline`: the task turning events into announcements.
//!
//! ```no_run
//! # async fn demo(outbox: runtimeuse_server::outbox::Outbox) -> Result<(), Box<dyn std::error::Error>> {
//! use runtimeuse_server::artifacts::{ArtifactOptions, Artifacts};
//!
//! let artifacts = Artifacts::new(outbox, reqwest::Client::new(), ArtifactOptions::default());
//! artifacts.watch(&["out".to_owned()], Some("*.log\n"))?;
//! // ... run commands; hand every artifact_upload_response_message to
//! // `artifacts.on_upload_response(response)` ...
//! artifacts.drain().await;
//! # Ok(()) }
//! ```

mod drain;
pub mod ignore_rules;
mod offload;
mod pipeline;
mod readiness;
mod scan;
mod shared;
mod uploads;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{RecommendedWatcher, Watcher as _};
use runtimeuse_protocol::ArtifactUploadResponse;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::ignore_rules::Root;
use self::scan::{Signature, file_signature, walk_files};
use self::shared::Shared;
use crate::http_client::HttpClient;
use crate::outbox::Outbox;
use crate::upload::RetryPolicy;

/// Time for a file-system event that just happened to reach the event task.
const EVENT_DELIVERY: Duration = Duration::from_millis(25);

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
    /// Retries of the presigned PUT, and how long an attempt may stall.
    pub retry: RetryPolicy,
    /// Most uploads of one session running at once; the others wait their turn.
    /// Default 8.
    pub max_concurrent_uploads: usize,
    /// How long a request's terminal message waits for the client to answer the upload
    /// requests sent before it (see [`Artifacts::wait_answered`]).
    pub result_hold: Duration,
}

impl Default for ArtifactOptions {
    fn default() -> Self {
        Self {
            late_event_grace: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(30),
            stability_window: Duration::from_millis(500),
            retry: RetryPolicy::default(),
            result_hold: Duration::from_secs(10),
            max_concurrent_uploads: 8,
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
#[derive(Clone)]
pub struct Artifacts {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

/// The watcher and the task consuming its events.
struct Running {
    watcher: RecommendedWatcher,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = running.take() {
            running.stop.cancel();
        }
    }
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifacts")
            .field("dirs", &self.inner.shared.lock().roots.paths())
            .finish_non_exhaustive()
    }
}

impl Artifacts {
    /// A manager that announces files through `outbox` and uploads them with `http`.
    pub fn new(outbox: Outbox, http: impl Into<HttpClient>, options: ArtifactOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(outbox, http.into(), options)),
                running: Mutex::new(None),
            }),
        }
    }

    /// Starts watching `dirs` (created if missing; relative ones against the current
    /// directory) with the given ignore rules, for the rest of the session. A directory
    /// already watched keeps its watch; its ignore rules are replaced when
    /// `ignore_content` is given. Files already present are not announced until they
    /// change. Must be called within a tokio runtime.
    ///
    /// Walking the directories and adding their watches can take seconds for a huge tree
    /// (`/`); on a multi-threaded runtime that work leaves the async worker first, so only
    /// the caller waits for it.
    pub fn watch(
        &self,
        dirs: &[String],
        ignore_content: Option<&str>,
    ) -> Result<(), ArtifactError> {
        if dirs.is_empty() {
            return Ok(());
        }
        offload::blocking(|| {
            dirs.iter()
                .try_for_each(|dir| self.watch_one(dir, ignore_content))
        })
    }

    fn watch_one(&self, dir: &str, ignore_content: Option<&str>) -> Result<(), ArtifactError> {
        let create_error = |source| ArtifactError::CreateDir {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(create_error)?;
        let path = std::fs::canonicalize(dir).map_err(|e| ArtifactError::Watch {
            path: dir.to_owned(),
            reason: e.to_string(),
        })?;
        let shared = &self.inner.shared;
        let known_root = {
            let mut state = shared.lock();
            state.roots.get_mut(&path).map(|root| {
                if let Some(content) = ignore_content {
                    root.set_request_rules(content);
                }
            })
        };
        if known_root.is_some() {
            // Watched before; watch again only if a drain stopped the watcher.
            return if self.is_watching() {
                Ok(())
            } else {
                self.start_watch(&path)
            };
        }
        let root = Root::new(path.clone(), ignore_content);
        // Files present now are the baseline: a rescan must not announce them.
        let baseline = walk_files(&root, &path);
        {
            let mut state = shared.lock();
            state.roots.insert(root);
            state.known.extend(baseline);
        }
        let watched = self.start_watch(&path);
        if watched.is_err() {
            shared.lock().roots.remove(&path);
        }
        watched?;
        debug!(dir = %path.display(), "watching artifacts directory");
        Ok(())
    }

    fn is_watching(&self) -> bool {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn start_watch(&self, path: &Path) -> Result<(), ArtifactError> {
        let watch_error = |reason: String| ArtifactError::Watch {
            path: path.display().to_string(),
            reason,
        };
        let mut running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if running.is_none() {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|e| watch_error(format!("no async runtime: {e}")))?;
            let fs = watch::start().map_err(|e| watch_error(e.to_string()))?;
            let stop = CancellationToken::new();
            let task = runtime.spawn(pipeline::run(
                self.inner.shared.clone(),
                fs.events,
                fs.overflow,
                stop.clone(),
            ));
            *running = Some(Running {
                watcher: fs.watcher,
                stop,
                task,
            });
        }
        let Some(running) = running.as_mut() else {
            return Err(watch_error("watcher unavailable".into()));
        };
        let watcher = &mut running.watcher;
        watch::watch_tree(path, &mut |dir, mode| watcher.watch(dir, mode))
            .map_err(|e| watch_error(e.to_string()))
    }

    /// Handles the client's answer to an upload request: starts the upload. An answer
    /// about a file that was never announced is logged and ignored.
    pub fn on_upload_response(&self, response: ArtifactUploadResponse) {
        let shared = &self.inner.shared;
        let Some(answered) = shared.answer(&response) else {
            warn!(
                filename = %response.filename,
                filepath = %response.filepath,
                "upload response for a file that was not announced; ignored"
            );
            return;
        };
        let path = answered.path;
        uploads::spawn(
            shared,
            answered.upload,
            path.clone(),
            response.presigned_url,
            response.content_type,
        );
        if answered.follow_up {
            // The file changed while the client was answering: one more round.
            let shared = shared.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(async move { shared.send_round(path).await })),
                Err(_) => shared.abandon_handshakes(),
            }
        }
    }

    /// Waits until `path` has been announced to the client (upload request sent) in its
    /// current version; true at once if that already happened. False after `timeout`,
    /// and at once for a path that is missing, empty, ignored or not under a watched
    /// directory.
    pub async fn wait_picked_up(&self, path: &Path, timeout: Duration) -> bool {
        self.wait_for_version(path, timeout, Shared::sent_signature)
            .await
    }

    /// Waits until the current version of `path` has been uploaded (the client answered
    /// its request and the `PUT` succeeded). False after `timeout`, and at once for a path
    /// that is missing, empty, ignored or not under a watched directory.
    pub async fn wait_uploaded(&self, path: &Path, timeout: Duration) -> bool {
        self.wait_for_version(path, timeout, Shared::uploaded_signature)
            .await
    }

    /// Waits until `reached(path)` equals the file's current signature.
    async fn wait_for_version(
        &self,
        path: &Path,
        timeout: Duration,
        reached: fn(&Shared, &Path) -> Option<Signature>,
    ) -> bool {
        let Ok(path) = std::fs::canonicalize(path) else {
            return false;
        };
        let shared = &self.inner.shared;
        if shared.lock().roots.is_ignored(&path, false) {
            return false;
        }
        let deadline = Instant::now() + timeout;
        let mut changes = shared.subscribe();
        loop {
            changes.borrow_and_update();
            let Some(now) = file_signature(&path).filter(|s| s.len > 0) else {
                return false;
            };
            if reached(shared, &path) == Some(now) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }

    /// Waits until every upload request sent so far has been answered by the client, the
    /// client is gone, or `timeout` passes; returns whether none is left pending.
    pub async fn wait_answered(&self, timeout: Duration) -> bool {
        self.wait_until_zero(timeout, Shared::pending_handshakes)
            .await
    }

    /// Waits until files already closed by their writers have been announced and every
    /// announcement has been answered (bounded by `timeout`, ended early when the client
    /// leaves); returns whether all settled.
    ///
    /// A request's terminal message is held back by this: some clients (the Python one)
    /// stop answering upload requests once they have their result, so a file written just
    /// before the end must be announced and answered first.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        if !self.is_watching() {
            return true;
        }
        // Let close events that happened just now reach the event task.
        tokio::time::sleep(EVENT_DELIVERY).await;
        self.wait_until_zero(timeout, Shared::unsettled).await
    }

    async fn wait_until_zero(&self, timeout: Duration, count: fn(&Shared) -> usize) -> bool {
        let shared = &self.inner.shared;
        let deadline = Instant::now() + timeout;
        let mut changes = shared.subscribe();
        loop {
            changes.borrow_and_update();
            if count(shared) == 0 {
                return true;
            }
            let presence = shared.outbox.presence();
            if presence.is_gone() {
                return false;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return false },
                () = presence.gone() => return false,
                () = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// The directories watched so far (absolute).
    pub fn watched_dirs(&self) -> Vec<PathBuf> {
        self.inner.shared.lock().roots.paths()
    }
}

//! State shared by the manager, its event task and its uploads: watched roots, what was
//! announced, the upload handshakes in flight and the uploads running.
//!
//! A file has at most one handshake in flight. A change while one is pending sets a
//! follow-up flag; the follow-up round starts when the client answers the current one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use runtimeuse_protocol::{ArtifactUploadRequest, ArtifactUploadResponse, ServerMessage};
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;
use tracing::debug;

use super::ArtifactOptions;
use super::ignore_rules::Roots;
use super::scan::{Signature, file_signature};
use crate::http_client::HttpClient;
use crate::outbox::Outbox;

/// Everything the background tasks of one session's artifact manager share.
pub(super) struct Shared {
    pub(super) outbox: Outbox,
    pub(super) http: HttpClient,
    pub(super) options: ArtifactOptions,
    /// Limits the session's concurrent uploads to `options.max_concurrent_uploads`.
    pub(super) upload_slots: Arc<Semaphore>,
    state: Mutex<State>,
    /// Bumped on every change waiters may care about (sent, answered, uploaded).
    changed: watch::Sender<u64>,
}

/// The mutable part of [`Shared`].
#[derive(Default)]
pub(super) struct State {
    /// Watched directories and their ignore rules.
    pub(super) roots: Roots,
    /// Last signature seen as complete per file (announced, or present when watching
    /// began), so that rescans do not announce unchanged files. Ordered, so that the
    /// entries under a directory are one range.
    pub(super) known: BTreeMap<PathBuf, Signature>,
    rounds: HashMap<PathBuf, Round>,
    /// Running uploads; the abort handle arrives just after the task is spawned.
    uploads: HashMap<u64, Option<AbortHandle>>,
    /// Per file, the version (as announced) whose upload last succeeded.
    uploaded: HashMap<PathBuf, Signature>,
    /// Closed files not yet announced (see `Readiness::closed_pending`).
    closed_candidates: usize,
    next_upload: u64,
}

/// What an answer to an upload request leads to.
pub(super) struct Answered {
    /// The file to upload.
    pub(super) path: PathBuf,
    /// The file changed meanwhile: a follow-up round was marked pending and must be sent
    /// with [`Shared::send_round`].
    pub(super) follow_up: bool,
    /// Id of the upload, registered as running.
    pub(super) upload: u64,
}

#[derive(Debug, Default)]
struct Round {
    /// A request was sent (or is being sent) and not answered yet.
    pending: bool,
    /// The file changed while `pending`: announce it again after the answer.
    follow_up: bool,
    /// The file as it was when its last request was sent.
    sent: Option<Signature>,
    /// When the pending request was marked (for holding results back, see `unsettled`).
    pending_since: Option<Instant>,
}

impl State {
    /// Forgets what is known about `path` and everything under it.
    pub(super) fn forget_known(&mut self, path: &Path) {
        let under: Vec<PathBuf> = self
            .known
            .range::<Path, _>((std::ops::Bound::Included(path), std::ops::Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in under {
            self.known.remove(&p);
        }
    }
}

impl Shared {
    pub(super) fn new(outbox: Outbox, http: HttpClient, options: ArtifactOptions) -> Self {
        let slots = options
            .max_concurrent_uploads
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            outbox,
            http,
            options,
            upload_slots: Arc::new(Semaphore::new(slots)),
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }

    /// Locks the state (never held across an await).
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that wakes on every state change.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Announces `path` now, or queues one follow-up round if a handshake is pending.
    pub(super) async fn announce(&self, path: PathBuf) {
        if self.begin_round(&path) {
            self.send_round(path).await;
        }
    }

    /// Marks a round as pending; false when one already was (a follow-up is queued).
    fn begin_round(&self, path: &Path) -> bool {
        let mut state = self.lock();
        let round = state.rounds.entry(path.to_path_buf()).or_default();
        if round.pending {
            round.follow_up = true;
            return false;
        }
        round.pending = true;
        round.pending_since = Some(Instant::now());
        true
    }

    /// Sends the upload request of a round marked pending.
    pub(super) async fn send_round(&self, path: PathBuf) {
        let Some(sig) = file_signature(&path).filter(|s| s.len > 0) else {
            debug!(path = %path.display(), "artifact vanished or emptied before its announcement");
            self.end_round(&path);
            return;
        };
        let request = ArtifactUploadRequest {
            filename: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            filepath: path.to_string_lossy().into_owned(),
        };
        let sent = self
            .outbox
            .send(ServerMessage::ArtifactUploadRequestMessage(request))
            .await;
        if sent.is_err() {
            debug!(path = %path.display(), "client gone; artifact not announced");
            self.end_round(&path);
            return;
        }
        debug!(path = %path.display(), "artifact upload requested");
        {
            let mut state = self.lock();
            state.known.insert(path.clone(), sig);
            state.rounds.entry(path).or_default().sent = Some(sig);
        }
        self.bump();
    }

    fn end_round(&self, path: &Path) {
        if let Some(round) = self.lock().rounds.get_mut(path) {
            round.pending = false;
            round.follow_up = false;
        }
        self.bump();
    }

    /// Settles the handshake `response` answers and registers its upload (in one step, so
    /// that a drain never sees neither). `None` for a file that was never announced.
    pub(super) fn answer(&self, response: &ArtifactUploadResponse) -> Option<Answered> {
        let mut state = self.lock();
        let path = find_round(&state.rounds, response)?;
        let round = state.rounds.get_mut(&path)?;
        let follow_up = std::mem::take(&mut round.follow_up);
        round.pending = follow_up;
        if follow_up {
            round.pending_since = Some(Instant::now());
        }
        let upload = state.next_upload;
        state.next_upload += 1;
        state.uploads.insert(upload, None);
        drop(state);
        self.bump();
        Some(Answered {
            path,
            follow_up,
            upload,
        })
    }

    /// The signature `path` had when its last upload request was sent.
    pub(super) fn sent_signature(&self, path: &Path) -> Option<Signature> {
        self.lock().rounds.get(path).and_then(|r| r.sent)
    }

    /// Publishes how many closed files await their announcement.
    pub(super) fn set_closed_candidates(&self, count: usize) {
        let changed = {
            let mut state = self.lock();
            std::mem::replace(&mut state.closed_candidates, count) != count
        };
        if changed {
            self.bump();
        }
    }

    /// Closed files not yet announced plus handshakes waiting for the client.
    ///
    /// A request pending for longer than `options.result_hold` no longer counts: a client
    /// that never answers (no upload callback on a later call) holds back at most the one
    /// result after the announcement, not every later one.
    pub(super) fn unsettled(&self) -> usize {
        let state = self.lock();
        let fresh = |r: &&Round| {
            r.pending_since
                .is_none_or(|since| since.elapsed() < self.options.result_hold)
        };
        state.closed_candidates
            + state
                .rounds
                .values()
                .filter(|r| r.pending)
                .filter(fresh)
                .count()
    }

    /// Handshakes waiting for the client.
    pub(super) fn pending_handshakes(&self) -> usize {
        self.lock().rounds.values().filter(|r| r.pending).count()
    }

    /// Gives up on every pending handshake (the client is gone).
    pub(super) fn abandon_handshakes(&self) {
        for round in self.lock().rounds.values_mut() {
            round.pending = false;
            round.follow_up = false;
        }
        self.bump();
    }

    /// Attaches the abort handle of upload `id`, unless it already finished.
    pub(super) fn upload_spawned(&self, id: u64, handle: AbortHandle) {
        if let Some(slot) = self.lock().uploads.get_mut(&id) {
            *slot = Some(handle);
        }
    }

    /// Records that the version of `path` announced last was uploaded.
    pub(super) fn record_uploaded(&self, path: &Path) {
        let mut state = self.lock();
        if let Some(sig) = state.rounds.get(path).and_then(|r| r.sent) {
            state.uploaded.insert(path.to_path_buf(), sig);
        }
    }

    /// The version of `path` whose upload last succeeded.
    pub(super) fn uploaded_signature(&self, path: &Path) -> Option<Signature> {
        self.lock().uploaded.get(path).copied()
    }

    /// Forgets upload `id` (finished, failed or aborted).
    pub(super) fn upload_finished(&self, id: u64) {
        self.lock().uploads.remove(&id);
        self.bump();
    }

    /// Uploads still running.
    pub(super) fn running_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Aborts every running upload.
    pub(super) fn abort_uploads(&self) {
        for handle in self.lock().uploads.values().flatten() {
            handle.abort();
        }
    }
}

/// The announced file a response is about: by path, else (for clients that rewrite
/// paths) by base name, pending rounds first.
fn find_round(
    rounds: &HashMap<PathBuf, Round>,
    response: &ArtifactUploadResponse,
) -> Option<PathBuf> {
    let by_path = Path::new(&response.filepath);
    if rounds
        .get(by_path)
        .is_some_and(|r| r.sent.is_some() || r.pending)
    {
        return Some(by_path.to_path_buf());
    }
    if let Some(path) = rounds
        .keys()
        .find(|p| p.to_string_lossy() == response.filepath.as_str())
    {
        return Some(path.clone());
    }
    let named = |p: &&PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy() == response.filename.as_str())
    };
    rounds
        .iter()
        .filter(|(_, r)| r.pending)
        .map(|(p, _)| p)
        .find(named)
        .or_else(|| rounds.keys().find(named))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_directory_forgets_exactly_what_is_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let sig = file_signature(&file).unwrap();
        let mut state = State::default();
        for p in ["/a/b", "/a/b/c", "/a/b/d/e", "/a/b.txt", "/a/bc", "/a/a"] {
            state.known.insert(PathBuf::from(p), sig);
        }
        state.forget_known(Path::new("/a/b"));
        let left: Vec<_> = state
            .known
            .keys()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(left, ["/a/a", "/a/b.txt", "/a/bc"]);
    }
}

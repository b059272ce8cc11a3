//! The end of a session: late events, then handshakes, then uploads, each bounded.

use std::sync::PoisonError;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Artifacts, Running};

impl Artifacts {
    /// Drains: waits for late file events, stops watching, then waits for outstanding
    /// handshakes and for running uploads (see [`ArtifactOptions`](super::ArtifactOptions) for how long). Returns
    /// early from the waits for the client once it is gone. Safe to call more than once.
    pub async fn drain(&self) {
        let shared = &self.inner.shared;
        let presence = shared.outbox.presence();
        if self.is_watching() && !presence.is_gone() {
            tokio::select! {
                () = tokio::time::sleep(shared.options.late_event_grace) => {}
                () = presence.gone() => {}
            }
        }
        self.stop_watching().await;
        self.wait_for_handshakes().await;
        self.wait_for_uploads().await;
    }

    async fn stop_watching(&self) {
        let running = self
            .inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(Running {
            watcher,
            stop,
            mut task,
        }) = running
        else {
            return;
        };
        drop(watcher);
        stop.cancel();
        let limit = self.inner.shared.options.handshake_timeout;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            warn!("artifact watcher did not settle in time; stopped");
            task.abort();
        }
    }

    async fn wait_for_handshakes(&self) {
        let shared = &self.inner.shared;
        if self.wait_answered(shared.options.handshake_timeout).await {
            return;
        }
        let pending = shared.pending_handshakes();
        if shared.outbox.presence().is_gone() {
            debug!(pending, "client gone; not waiting for upload responses");
            shared.abandon_handshakes();
        } else {
            warn!(pending, "timed out waiting for upload responses");
        }
    }

    async fn wait_for_uploads(&self) {
        let shared = &self.inner.shared;
        let deadline = Instant::now() + shared.options.upload_timeout;
        let mut changes = shared.subscribe();
        loop {
            changes.borrow_and_update();
            let running = shared.running_uploads();
            if running == 0 {
                return;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(deadline) => {
                    warn!(running, "timed out waiting for artifact uploads; aborting them");
                    shared.abort_uploads();
                    return;
                }
            }
        }
    }
}

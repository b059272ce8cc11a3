//! What every session, plain or durable, needs from the server it runs in.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::SessionConfig;

/// The server's shared parts a session uses: one set per server, cloned into each
/// connection and durable session.
#[derive(Clone)]
pub(crate) struct SessionServices {
    /// The settings every session shares.
    pub session: Arc<SessionConfig>,
    /// Tracks every connection and session task, so that shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Fires when the runtime begins to shut down.
    pub shutdown: CancellationToken,
    /// Fires when shutdown's grace is over and connections are cut.
    pub hard_stop: CancellationToken,
    /// Sessions open (for `/health`).
    pub open_sessions: Arc<AtomicUsize>,
}

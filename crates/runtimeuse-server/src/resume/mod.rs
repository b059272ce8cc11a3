//! Resumable sessions (the protocol's opt-in extension): a durable session outlives its
//! connection for a grace period, numbers its frames, keeps what it sent until the client
//! acknowledges it, and replays it to the connection that resumes it.
//!
//! - `params`: what a connection asks for at the upgrade (plain, durable, resume).
//! - `replay`: the bounded buffer of sent frames.
//! - `registry`: durable sessions by id, attaching and detaching connections, expiry.
//!
//! The socket side (sequence numbers in, acks, the replaying writer) is in
//! `crate::socket`.

use std::time::Duration;

pub(crate) mod params;
pub(crate) mod registry;
pub(crate) mod replay;

/// Default of [`ResumeOptions::grace`].
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(120);
/// Default of [`ResumeOptions::buffer_bytes`] (64 MiB).
pub const DEFAULT_RESUME_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// How durable sessions behave.
#[derive(Debug, Clone)]
pub struct ResumeOptions {
    /// How long a detached session goes on before it expires (its request is cancelled
    /// and its process tree killed).
    pub grace: Duration,
    /// Bytes of sent, unacknowledged frames kept per session; past it producers wait
    /// (command output is back-pressured).
    pub buffer_bytes: usize,
}

impl Default for ResumeOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_RESUME_GRACE,
            buffer_bytes: DEFAULT_RESUME_BUFFER_BYTES,
        }
    }
}

//! Aborting calls from any task.

use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Aborts the call(s) in flight on a client or session; cloneable, usable from any task.
///
/// Aborting sends `cancel_message` to the runtime; the call keeps reading until the
/// runtime's terminal message arrives (so a session stays clean), suppresses callbacks and
/// events from then on, and returns [`Error::Cancelled`](crate::Error::Cancelled).
/// Calls started after `abort()` are not affected; with nothing in flight it does nothing.
///
/// ```no_run
/// # async fn demo() -> Result<(), runtimeuse_client::Error> {
/// use std::time::Duration;
/// use runtimeuse_client::{Error, QueryOptions, RuntimeUseClient};
///
/// let client = RuntimeUseClient::new("ws://127.0.0.1:8080");
/// let abort = client.abort_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(Duration::from_secs(30)).await;
///     abort.abort();
/// });
/// match client.query("Do the thing.", QueryOptions::new("Be brief.", "gpt-4.1")).await {
///     Err(Error::Cancelled) => println!("run was cancelled"),
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct AbortHandle {
    // Each call takes a child of the current generation; aborting cancels the generation
    // and starts a new one, so only calls already in flight are hit.
    generation: Arc<Mutex<CancellationToken>>,
}

impl AbortHandle {
    /// A handle with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every call currently in flight under this handle.
    pub fn abort(&self) {
        let mut generation = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// The cancellation token of a call starting now.
    pub(crate) fn token(&self) -> CancellationToken {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .child_token()
    }
}

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

/// What stops a request early: the abort handle's token (taken when the call starts), and
/// for a session stream also the stream being dropped.
#[derive(Clone, Default)]
pub(crate) struct CancelSignal {
    abort: CancellationToken,
    dropped: Option<CancellationToken>,
}

impl CancelSignal {
    pub fn new(abort: CancellationToken, dropped: Option<CancellationToken>) -> Self {
        Self { abort, dropped }
    }

    /// Whether the call was aborted or its caller went away.
    pub fn is_cancelled(&self) -> bool {
        self.abort.is_cancelled() || self.is_dropped()
    }

    fn is_dropped(&self) -> bool {
        self.dropped
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Resolves when the call is aborted or its caller goes away.
    pub async fn cancelled(&self) {
        tokio::select! {
            () = self.abort.cancelled() => {}
            () = self.dropped() => {}
        }
    }

    /// Resolves when the call is aborted (the caller still waits for the outcome).
    pub async fn aborted(&self) {
        self.abort.cancelled().await;
    }

    /// Resolves when nobody waits for the outcome any more (never for plain calls).
    pub async fn dropped(&self) {
        match &self.dropped {
            Some(dropped) => dropped.cancelled().await,
            None => std::future::pending().await,
        }
    }
}

//! Many sequential calls on one connection.

use std::borrow::Borrow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use runtimeuse_protocol::{ClientMessage, Command, Incoming};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::abort::CancelSignal;
use crate::callbacks::OnArtifactUploadRequest;
use crate::connection::Connection;
use crate::end_session::{end_session, end_session_timeout};
use crate::options::RequestSpec;
use crate::request_loop::{Exchange, Sink, sleep_until};
use crate::result::Outcome;
use crate::stream::{EventStream, StreamGuard};
use crate::{
    AbortHandle, CommandExecutionResult, Error, Event, ExecuteCommandsOptions, QueryOptions,
    QueryResult, TimeoutKind,
};

/// How long [`Session::close`] waits for `end_session_confirm_message`.
pub const DEFAULT_END_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a call waits for the terminal of an earlier call that ended without one
/// (timeout, callback error, stream dropped) before it sends its own request.
const STALE_REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A persistent connection serving many sequential calls.
///
/// Calls on one session run one at a time (concurrent calls wait for their turn). Artifact
/// directories accumulate over the session, so late upload requests may arrive between
/// calls; [`Session::close`] answers them with the most recent upload callback until the
/// runtime confirms the end of the session. Dropping a session without closing it just
/// drops the connection (the runtime then still drains its uploads, but nobody answers).
///
/// A call given up on before its terminal (its future or stream dropped, a time limit, a
/// failing callback) sends `cancel_message` and frees the session at once; the next call
/// (or the close) skips that request's terminal, waiting at most a minute for it and never
/// past its own time limit.
///
/// Clones share the connection and the abort handle.
///
/// ```no_run
/// # async fn demo() -> Result<(), runtimeuse_client::Error> {
/// use runtimeuse_client::{Command, ExecuteCommandsOptions, QueryOptions, RuntimeUseClient};
///
/// let client = RuntimeUseClient::new("ws://127.0.0.1:8080");
/// let session = client.session().await?;
/// session.execute_commands(vec![Command::new("mkdir -p /app")], ExecuteCommandsOptions::new()).await?;
/// let result = session.query("Summarise /app", QueryOptions::new("Be brief.", "gpt-4.1")).await?;
/// println!("{:?}", result.data);
/// session.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    state: Arc<Mutex<SessionState>>,
    abort: AbortHandle,
    /// Set as soon as a close begins, so that calls still waiting for their turn fail.
    closing: Arc<AtomicBool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

struct SessionState {
    conn: Connection,
    /// Whether a call ended before its terminal, which must be skipped before anything else.
    stale: Stale,
    /// When the stale request was cancelled: the wait for its terminal counts from there.
    stale_since: Instant,
    /// Answers late artifact requests at close, like the Python client.
    last_artifact_callback: Option<OnArtifactUploadRequest>,
    closed: bool,
}

impl Session {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            state: Arc::new(Mutex::new(SessionState {
                conn,
                stale: Stale::No,
                stale_since: Instant::now(),
                last_artifact_callback: None,
                closed: false,
            })),
            abort: AbortHandle::new(),
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs one agent invocation on this session; see
    /// [`RuntimeUseClient::query`](crate::RuntimeUseClient::query).
    ///
    /// # Errors
    /// As for the client's call; [`Error::ConnectionClosed`] once the session is closed.
    pub async fn query(
        &self,
        prompt: impl AsRef<str>,
        options: impl Borrow<QueryOptions>,
    ) -> Result<QueryResult, Error> {
        let options = options.borrow();
        options.validate()?;
        self.call(options.spec(prompt.as_ref()), "query").await
    }

    /// Runs commands on this session; see
    /// [`RuntimeUseClient::execute_commands`](crate::RuntimeUseClient::execute_commands).
    ///
    /// # Errors
    /// As for the client's call; [`Error::ConnectionClosed`] once the session is closed.
    pub async fn execute_commands(
        &self,
        commands: Vec<Command>,
        options: impl Borrow<ExecuteCommandsOptions>,
    ) -> Result<CommandExecutionResult, Error> {
        let options = options.borrow();
        options.validate()?;
        self.call(options.spec(commands), "execute_commands").await
    }

    /// Like [`Session::query`], yielding events instead of calling callbacks (callbacks in
    /// `options` are not used). Must be called inside a Tokio runtime.
    pub fn query_stream(
        &self,
        prompt: impl AsRef<str>,
        options: impl Borrow<QueryOptions>,
    ) -> EventStream<QueryResult> {
        let options = options.borrow();
        self.stream(
            options
                .check_format()
                .map(|()| options.spec(prompt.as_ref())),
            "query",
        )
    }

    /// Like [`Session::execute_commands`], yielding events instead of calling callbacks.
    /// Must be called inside a Tokio runtime.
    pub fn execute_commands_stream(
        &self,
        commands: Vec<Command>,
        options: impl Borrow<ExecuteCommandsOptions>,
    ) -> EventStream<CommandExecutionResult> {
        self.stream(Ok(options.borrow().spec(commands)), "execute_commands")
    }

    /// Cancels the calls already made on this session: the one in flight and those still
    /// waiting for their turn (they return [`Error::Cancelled`]). Later calls are not
    /// affected.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// A handle that aborts this session's in-flight call from any task.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// Ends the session: sends `end_session_message`, answers late artifact upload requests
    /// with the most recent upload callback, and returns when the runtime confirms
    /// (at most [`DEFAULT_END_SESSION_TIMEOUT`], which also bounds waiting for a call still
    /// in flight). Later calls fail.
    ///
    /// # Errors
    /// [`Error::Timeout`] of kind [`TimeoutKind::EndSession`] when no confirm came in time.
    pub async fn close(&self) -> Result<(), Error> {
        self.close_with_timeout(DEFAULT_END_SESSION_TIMEOUT).await
    }

    /// [`Session::close`] with another limit.
    ///
    /// # Errors
    /// As for [`Session::close`].
    pub async fn close_with_timeout(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        self.closing.store(true, Ordering::SeqCst);
        // The timeout covers the wait for a call still in flight as well.
        let Ok(mut state) = tokio::time::timeout_at(deadline, self.state.lock()).await else {
            tracing::warn!("a call still held the session when its close timed out");
            // Drop the connection once that call is over (later calls fail already).
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                let mut state = state.lock().await;
                state.closed = true;
                state.conn.close().await;
            });
            return Err(end_session_timeout(timeout));
        };
        if state.closed {
            return Ok(());
        }
        state.closed = true;
        if state.stale == Stale::Abandoned {
            // Its terminal is skipped by the close loop.
            let _ = state.conn.send(&ClientMessage::CancelMessage).await;
        }
        let callback = state.last_artifact_callback.clone();
        let result = tokio::time::timeout_at(deadline, end_session(&mut state.conn, callback))
            .await
            .unwrap_or_else(|_| Err(end_session_timeout(timeout)));
        state.conn.close().await;
        result
    }

    async fn call<T: Outcome>(&self, spec: RequestSpec, kind: &'static str) -> Result<T, Error> {
        let span = crate::client::request_span(kind, spec.source_id.as_deref());
        // Taken before waiting for the turn, so that an abort issued meanwhile hits this call.
        let cancel = CancelSignal::new(self.abort.token(), None);
        async {
            let mut state = self.lock_for_call(&cancel).await?;
            let sink = Sink::Callbacks(spec.callbacks.clone());
            state.run(spec, sink, cancel).await
        }
        .instrument(span)
        .await
    }

    /// Waits for this call's turn (an abort meanwhile ends the wait).
    async fn lock_for_call(
        &self,
        cancel: &CancelSignal,
    ) -> Result<tokio::sync::MutexGuard<'_, SessionState>, Error> {
        lock_for_call(&self.state, &self.closing, cancel).await
    }

    fn stream<T: Outcome>(
        &self,
        spec: Result<RequestSpec, Error>,
        kind: &'static str,
    ) -> EventStream<T> {
        let (tx, rx) = mpsc::channel(crate::client::STREAM_BUFFER);
        let dropped = CancellationToken::new();
        let guard = StreamGuard::cancel(dropped.clone().drop_guard());
        let state = Arc::clone(&self.state);
        let closing = Arc::clone(&self.closing);
        // Taken now, not when the turn comes, so that an abort issued meanwhile hits this call.
        let cancel = CancelSignal::new(self.abort.token(), Some(dropped));
        let span = crate::client::request_span(
            kind,
            spec.as_ref().ok().and_then(|s| s.source_id.as_deref()),
        );
        tokio::spawn(
            async move {
                let result = match spec {
                    Err(e) => Err(e),
                    Ok(spec) => match lock_for_call(&state, &closing, &cancel).await {
                        Err(e) => Err(e),
                        Ok(mut state) => state.run(spec, Sink::Events(tx.clone()), cancel).await,
                    },
                };
                let _ = tx.send(result.map(Event::Result)).await;
            }
            .instrument(span),
        );
        EventStream::new(rx, guard)
    }
}

/// Waits for a call's turn on the session; an abort (or the caller leaving) ends the wait.
async fn lock_for_call<'s>(
    state: &'s Mutex<SessionState>,
    closing: &AtomicBool,
    cancel: &CancelSignal,
) -> Result<tokio::sync::MutexGuard<'s, SessionState>, Error> {
    let closed = || Error::ConnectionClosed {
        reason: "the session is closed".into(),
    };
    if closing.load(Ordering::SeqCst) {
        return Err(closed());
    }
    let state = tokio::select! {
        state = state.lock() => state,
        () = cancel.cancelled() => return Err(Error::Cancelled),
    };
    if closing.load(Ordering::SeqCst) {
        // A close began while this call waited for its turn.
        return Err(closed());
    }
    Ok(state)
}

/// A request that ended, for the caller, before the runtime's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stale {
    /// None: the connection is between requests.
    No,
    /// The call's future was dropped mid-request; no `cancel_message` went out.
    Abandoned,
    /// The call gave up (timeout, callback error…) and sent `cancel_message`.
    Cancelled,
}

impl SessionState {
    async fn run<T: Outcome>(
        &mut self,
        spec: RequestSpec,
        sink: Sink<T>,
        cancel: CancelSignal,
    ) -> Result<T, Error> {
        let started = Instant::now();
        if self.closed || self.conn.is_closed() {
            return Err(Error::ConnectionClosed {
                reason: "the session is closed".into(),
            });
        }
        if let Some(callback) = &spec.callbacks.artifact {
            self.last_artifact_callback = Some(callback.clone());
        }
        if self.stale != Stale::No {
            let deadline = spec.limits.timeout.map(|timeout| started + timeout);
            self.drain_stale_request(&cancel, deadline, spec.limits.timeout)
                .await?;
        }
        self.conn.flush_outbox().await?;
        // Stays so if this future is dropped mid-request.
        self.stale = Stale::Abandoned;
        let finished = Exchange::new(&mut self.conn, sink, spec.limits, cancel, started)
            .run(&spec.message)
            .await;
        self.stale = Stale::No;
        if !finished.in_sync && !self.conn.is_closed() {
            // Stop the runtime's work now rather than at the next call.
            if finished.cancel_sent || self.conn.send(&ClientMessage::CancelMessage).await.is_ok() {
                self.stale = Stale::Cancelled;
                self.stale_since = Instant::now();
            }
        }
        finished.result
    }

    /// Reads until the terminal of a request that was given up on (cancelling it first if
    /// that was not done yet). An abort of the waiting call, or its own time limit, ends the
    /// wait and leaves the stale request for the next call; running out of the drain's
    /// own limit closes the connection.
    async fn drain_stale_request(
        &mut self,
        cancel: &CancelSignal,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        if self.stale == Stale::Abandoned {
            if let Err(e) = self.conn.send(&ClientMessage::CancelMessage).await {
                self.conn.close().await;
                return Err(e);
            }
            self.stale = Stale::Cancelled;
            self.stale_since = Instant::now();
        }
        let drain_deadline = self.stale_since + STALE_REQUEST_DRAIN_TIMEOUT;
        let conn = &mut self.conn;
        let drain = async {
            loop {
                conn.flush_outbox().await?;
                match conn.recv().await {
                    Ok(Incoming::Message(message)) if message.is_terminal() => return Ok(()),
                    Ok(_) => {}
                    Err(Error::Protocol(e)) => tracing::warn!("while draining: {e}"),
                    Err(e) => return Err(e),
                }
            }
        };
        let drained = tokio::select! {
            drained = tokio::time::timeout_at(drain_deadline, drain) => drained,
            () = cancel.cancelled() => return Err(Error::Cancelled),
            () = sleep_until(deadline) => {
                return Err(Error::Timeout {
                    kind: TimeoutKind::Overall,
                    after: timeout.unwrap_or_default(),
                    last_message_type: None,
                    message_count: 0,
                });
            }
        };
        match drained {
            Ok(Ok(())) => {
                self.stale = Stale::No;
                Ok(())
            }
            Ok(Err(e)) => {
                self.conn.close().await;
                Err(e)
            }
            Err(_) => {
                self.conn.close().await;
                Err(Error::Protocol(format!(
                    "the runtime did not end an abandoned request within {STALE_REQUEST_DRAIN_TIMEOUT:?} of cancel_message"
                )))
            }
        }
    }
}

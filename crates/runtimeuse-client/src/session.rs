//! Many sequential calls on one connection.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use runtimeuse_protocol::{
    ArtifactUploadResponse, ClientMessage, Command, Incoming, ServerMessage,
};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::callbacks::OnArtifactUploadRequest;
use crate::connection::Connection;
use crate::options::RequestSpec;
use crate::request_loop::{CancelSignal, Exchange, Sink};
use crate::result::Outcome;
use crate::stream::{EventStream, StreamGuard};
use crate::{
    AbortHandle, CommandExecutionResult, Error, Event, ExecuteCommandsOptions, QueryOptions,
    QueryResult, TimeoutKind,
};

/// How long [`Session::close`] waits for `end_session_confirm_message`.
pub const DEFAULT_END_SESSION_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a call waits for the terminal of an earlier call that ended without one
/// (timeout, callback error) before it sends its own request.
const STALE_REQUEST_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A persistent connection serving many sequential calls.
///
/// Calls on one session run one at a time (concurrent calls wait for their turn). Artifact
/// directories accumulate over the session, so late upload requests may arrive between
/// calls; [`Session::close`] answers them with the most recent upload callback until the
/// runtime confirms the end of the session. Dropping a session without closing it just
/// drops the connection (the runtime then still drains its uploads, but nobody answers).
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
                last_artifact_callback: None,
                closed: false,
            })),
            abort: AbortHandle::new(),
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

    /// Cancels the call in flight (if any); later calls are not affected.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// A handle that aborts this session's in-flight call from any task.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// Ends the session: sends `end_session_message`, answers late artifact upload requests
    /// with the most recent upload callback, and returns when the runtime confirms
    /// (at most [`DEFAULT_END_SESSION_TIMEOUT`]). Later calls fail.
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
        let mut state = self.state.lock().await;
        if state.closed {
            return Ok(());
        }
        state.closed = true;
        if state.stale == Stale::Abandoned {
            // Its terminal is skipped by the close loop.
            let _ = state.conn.send(&ClientMessage::CancelMessage).await;
        }
        let callback = state.last_artifact_callback.clone();
        let result = end_session(&mut state.conn, callback, timeout).await;
        state.conn.close().await;
        result
    }

    async fn call<T: Outcome>(&self, spec: RequestSpec, kind: &'static str) -> Result<T, Error> {
        let span = crate::client::request_span(kind, spec.source_id.as_deref());
        async {
            let mut state = self.state.lock().await;
            let cancel = CancelSignal::new(self.abort.token(), None);
            let sink = Sink::Callbacks(spec.callbacks.clone());
            state.run(spec, sink, cancel).await
        }
        .instrument(span)
        .await
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
        let abort = self.abort.clone();
        let span = crate::client::request_span(
            kind,
            spec.as_ref().ok().and_then(|s| s.source_id.as_deref()),
        );
        tokio::spawn(
            async move {
                let result = match spec {
                    Err(e) => Err(e),
                    Ok(spec) => {
                        let mut state = state.lock().await;
                        let cancel = CancelSignal::new(abort.token(), Some(dropped));
                        state.run(spec, Sink::Events(tx.clone()), cancel).await
                    }
                };
                let _ = tx.send(result.map(Event::Result)).await;
            }
            .instrument(span),
        );
        EventStream::new(rx, guard)
    }
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
            if let Err(e) = drain_stale_request(&mut self.conn, self.stale).await {
                self.conn.close().await;
                return Err(e);
            }
            self.stale = Stale::No;
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
            if self.conn.send(&ClientMessage::CancelMessage).await.is_ok() {
                self.stale = Stale::Cancelled;
            }
        }
        finished.result
    }
}

/// Reads until the terminal of a request that was given up on (cancelling it first if that
/// was not done yet).
async fn drain_stale_request(conn: &mut Connection, stale: Stale) -> Result<(), Error> {
    if stale == Stale::Abandoned {
        conn.send(&ClientMessage::CancelMessage).await?;
    }
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
    tokio::time::timeout(STALE_REQUEST_DRAIN_TIMEOUT, drain)
        .await
        .map_err(|_| {
            Error::Protocol(format!(
                "the runtime did not end an abandoned request within {STALE_REQUEST_DRAIN_TIMEOUT:?} of cancel_message"
            ))
        })?
}

/// Sends `end_session_message` and answers late artifact requests until the confirm.
async fn end_session(
    conn: &mut Connection,
    callback: Option<OnArtifactUploadRequest>,
    timeout: Duration,
) -> Result<(), Error> {
    if conn.is_closed() {
        return Ok(());
    }
    conn.flush_outbox().await?;
    conn.send(&ClientMessage::EndSessionMessage).await?;
    let drain = async {
        loop {
            conn.flush_outbox().await?;
            let message = match conn.recv().await {
                Ok(Incoming::Message(message)) => message,
                Ok(Incoming::Unknown { message_type }) => {
                    tracing::warn!(%message_type, "ignoring a message of unknown type");
                    continue;
                }
                Err(Error::Protocol(e)) => {
                    tracing::warn!("while ending the session: {e}");
                    continue;
                }
                Err(Error::ConnectionClosed { reason }) => {
                    tracing::warn!(
                        "connection closed before end_session_confirm_message: {reason}"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            match message {
                ServerMessage::EndSessionConfirmMessage => return Ok(()),
                ServerMessage::ArtifactUploadRequestMessage(request) => {
                    let Some(callback) = &callback else {
                        tracing::warn!(filename = %request.filename, "late artifact upload request but no upload callback");
                        continue;
                    };
                    match callback(request.clone()).await {
                        Ok(target) => {
                            let response = ArtifactUploadResponse {
                                filename: request.filename,
                                filepath: request.filepath,
                                presigned_url: target.presigned_url,
                                content_type: target.content_type,
                            };
                            conn.send(&ClientMessage::ArtifactUploadResponseMessage(response))
                                .await?;
                        }
                        Err(e) => tracing::warn!(
                            "artifact upload callback failed while ending the session: {e}"
                        ),
                    }
                }
                other => tracing::debug!(
                    message_type = other.message_type(),
                    "ignored while ending the session"
                ),
            }
        }
    };
    tokio::time::timeout(timeout, drain)
        .await
        .map_err(|_| Error::Timeout {
            kind: TimeoutKind::EndSession,
            after: timeout,
            last_message_type: None,
            message_count: 0,
        })?
}

//! Drives one request on an open connection: sends it, dispatches what the runtime sends
//! back (to callbacks or to an event stream) and returns at the terminal message.
//!
//! After an abort the loop keeps reading until the runtime's terminal arrives, so that on
//! a session the terminal of the cancelled request cannot leak into the next one. When the
//! caller goes away instead (a session's event stream dropped), the loop sends
//! `cancel_message` and returns at once: the session skips that terminal later, under a
//! time limit, rather than holding the connection for a runtime that may never answer.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use runtimeuse_protocol::{
    ArtifactUploadRequest, ArtifactUploadResponse, ClientMessage, Incoming, ServerMessage,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::abort::CancelSignal;
use crate::callbacks::{CallbackResult, Callbacks};
use crate::connection::Connection;
use crate::options::Limits;
use crate::result::{Outcome, Terminal};
use crate::stream::ArtifactUploadRequestEvent;
use crate::{Error, Event, TimeoutKind};

/// Where the messages of a request go.
pub(crate) enum Sink<T> {
    Callbacks(Callbacks),
    Events(mpsc::Sender<Result<Event<T>, Error>>),
}

/// How long, at most, a request that ended waits for the answers to artifact upload
/// requests it handed out as events (without an `artifact_upload_callback_timeout`).
const ARTIFACT_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How a request ended.
pub(crate) struct Finished<T> {
    pub result: Result<T, Error>,
    /// Whether the connection is between requests again (terminal seen, or nothing sent).
    pub in_sync: bool,
    /// Whether `cancel_message` went out for this request.
    pub cancel_sent: bool,
}

/// One request's exchange with the runtime.
pub(crate) struct Exchange<'c, T> {
    conn: &'c mut Connection,
    sink: Sink<T>,
    limits: Limits,
    cancel: CancelSignal,
    deadline: Option<Instant>,
    /// Aborted: `cancel_message` sent, still reading until the terminal.
    aborted: bool,
    cancel_sent: bool,
    request_open: bool,
    /// Artifact upload requests handed out as events and not yet answered (or dropped).
    unanswered: TaskTracker,
    message_count: u64,
    last_message_type: Option<String>,
}

impl<'c, T: Outcome> Exchange<'c, T> {
    /// `started` is when the call began; the overall timeout counts from there.
    pub fn new(
        conn: &'c mut Connection,
        sink: Sink<T>,
        limits: Limits,
        cancel: CancelSignal,
        started: Instant,
    ) -> Self {
        Self {
            conn,
            sink,
            limits,
            cancel,
            deadline: limits.timeout.map(|timeout| started + timeout),
            aborted: false,
            cancel_sent: false,
            request_open: false,
            unanswered: TaskTracker::new(),
            message_count: 0,
            last_message_type: None,
        }
    }

    /// Sends `message` and runs the request to its end.
    pub async fn run(mut self, message: &ClientMessage) -> Finished<T> {
        let reconnects_before = self.conn.reconnects();
        let result = match self.exchange(message).await {
            Ok(terminal) => T::from_terminal(terminal).map(|mut outcome| {
                if let (Some(before), Some(now)) = (reconnects_before, self.conn.reconnects()) {
                    outcome.note_reconnects(now - before);
                }
                outcome
            }),
            // The user asked to stop; a connection lost meanwhile changes nothing for them.
            Err(Error::ConnectionClosed { .. }) if self.aborted => Err(Error::Cancelled),
            Err(e) => Err(e),
        };
        if !self.request_open && !self.aborted {
            self.await_artifact_answers().await;
        }
        Finished {
            result,
            in_sync: !self.request_open,
            cancel_sent: self.cancel_sent,
        }
    }

    /// The terminal may follow an upload request at once, while the stream consumer is
    /// still working out the answer: forward the answers given to events before the
    /// connection is closed (one-shot) or left idle (session), within a bound.
    async fn await_artifact_answers(&mut self) {
        self.unanswered.close();
        if self.unanswered.is_empty() {
            return;
        }
        let limit = self
            .limits
            .artifact_upload_callback_timeout
            .unwrap_or(ARTIFACT_ANSWER_WAIT);
        let until = Instant::now() + limit;
        let until = self.deadline.map_or(until, |deadline| deadline.min(until));
        let cancel = self.cancel.clone();
        let waiting = self.unanswered.len();
        tracing::debug!(waiting, "waiting for artifact upload answers");
        loop {
            tokio::select! {
                biased;
                Some(message) = self.conn.outbox_rx.recv() => {
                    if self.conn.send(&message).await.is_err() {
                        return;
                    }
                }
                () = self.unanswered.wait() => break,
                () = cancel.dropped() => return,
                () = tokio::time::sleep_until(until) => {
                    tracing::warn!(
                        unanswered = self.unanswered.len(),
                        "artifact upload requests left unanswered after {limit:?}"
                    );
                    return;
                }
            }
        }
        // The last answer went to the outbox just before its event was released.
        let _ = self.conn.flush_outbox().await;
    }

    async fn exchange(&mut self, message: &ClientMessage) -> Result<Terminal, Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        self.request_open = true;
        self.conn.send(message).await?;
        loop {
            let incoming = self.next_incoming().await?;
            self.message_count += 1;
            let message = match incoming {
                Incoming::Unknown { message_type } => {
                    tracing::warn!(%message_type, "ignoring a message of unknown type");
                    self.last_message_type = Some(message_type);
                    continue;
                }
                Incoming::Message(message) => message,
            };
            self.last_message_type = Some(message.message_type().to_owned());
            tracing::debug!(
                message_type = message.message_type(),
                count = self.message_count,
                "message from the runtime"
            );
            let terminal = match message {
                ServerMessage::ResultMessage(result) => Ok(Terminal::Query(result)),
                ServerMessage::CommandExecutionResultMessage(result) => {
                    Ok(Terminal::Commands(result))
                }
                ServerMessage::ErrorMessage(error) => Err(Error::Runtime {
                    error: error.error,
                    metadata: error.metadata,
                }),
                other => {
                    self.dispatch(other).await?;
                    continue;
                }
            };
            self.request_open = false;
            return if self.aborted {
                Err(Error::Cancelled)
            } else {
                terminal
            };
        }
    }

    /// Waits for the next message while forwarding queued answers, noticing an abort and
    /// enforcing the overall and idle limits.
    ///
    /// The idle limit counts from here: time spent in callbacks (before this is called
    /// again) is not time the runtime was silent, nor is time a resumable link spends
    /// reconnecting (see [`idle_expired`]).
    async fn next_incoming(&mut self) -> Result<Incoming<ServerMessage>, Error> {
        let idle = idle_expired(self.limits.idle_timeout, self.conn.attached());
        tokio::pin!(idle);
        let cancel = self.cancel.clone();
        loop {
            tokio::select! {
                biased;
                () = cancel.dropped() => return Err(self.give_up().await),
                () = cancel.aborted(), if !self.aborted => self.abort().await?,
                Some(message) = self.conn.outbox_rx.recv() => self.conn.send(&message).await?,
                () = sleep_until(self.deadline) => return Err(self.timeout(TimeoutKind::Overall)),
                () = &mut idle => return Err(self.timeout(TimeoutKind::Idle)),
                item = self.conn.ws.next() => {
                    if let Some(incoming) = self.conn.decode(item)? {
                        return Ok(incoming);
                    }
                }
            }
        }
    }

    async fn dispatch(&mut self, message: ServerMessage) -> Result<(), Error> {
        if self.aborted {
            // Still reading for the terminal, but the request is dead to the caller.
            return Ok(());
        }
        match message {
            ServerMessage::HeartbeatMessage(heartbeat) => {
                tracing::debug!(phase = %heartbeat.phase, elapsed_ms = heartbeat.elapsed_ms, "heartbeat");
                self.emit(Event::Heartbeat(heartbeat)).await
            }
            ServerMessage::AssistantMessage(message) => match &self.sink {
                Sink::Events(_) => self.emit(Event::AssistantMessage(message)).await,
                Sink::Callbacks(callbacks) => {
                    let Some(callback) = callbacks.assistant.clone() else {
                        return Ok(());
                    };
                    let limit = self.limits.assistant_callback_timeout;
                    let name = "on_assistant_message";
                    self.callback(
                        callback(message),
                        limit,
                        TimeoutKind::AssistantCallback,
                        name,
                    )
                    .await
                }
            },
            ServerMessage::CommandOutputMessage(output) => match &self.sink {
                Sink::Events(_) => self.emit(Event::CommandOutput(output)).await,
                Sink::Callbacks(callbacks) => {
                    let Some(callback) = callbacks.command_output.clone() else {
                        return Ok(());
                    };
                    let name = "on_command_output";
                    self.callback(callback(output), None, TimeoutKind::Overall, name)
                        .await
                }
            },
            ServerMessage::ArtifactUploadRequestMessage(request) => {
                self.artifact_request(request).await
            }
            ServerMessage::EndSessionConfirmMessage => {
                tracing::warn!("ignoring end_session_confirm_message during a request");
                Ok(())
            }
            ServerMessage::ResultMessage(_)
            | ServerMessage::CommandExecutionResultMessage(_)
            | ServerMessage::ErrorMessage(_) => Ok(()),
        }
    }

    async fn artifact_request(&mut self, request: ArtifactUploadRequest) -> Result<(), Error> {
        tracing::info!(filename = %request.filename, filepath = %request.filepath, "artifact upload request");
        let callback = match &self.sink {
            Sink::Events(_) => {
                let event = ArtifactUploadRequestEvent::new(
                    request,
                    self.conn.outbox_tx.clone(),
                    self.unanswered.token(),
                );
                return self.emit(Event::ArtifactUploadRequest(event)).await;
            }
            Sink::Callbacks(callbacks) => callbacks.artifact.clone(),
        };
        let Some(callback) = callback else {
            tracing::warn!(
                filename = %request.filename,
                "artifact upload request but no on_artifact_upload_request callback"
            );
            return Ok(());
        };
        let limit = self.limits.artifact_upload_callback_timeout;
        let target = self
            .callback(
                callback(request.clone()),
                limit,
                TimeoutKind::ArtifactCallback,
                "on_artifact_upload_request",
            )
            .await?;
        if self.aborted {
            return Ok(());
        }
        let response = ClientMessage::ArtifactUploadResponseMessage(ArtifactUploadResponse {
            filename: request.filename,
            filepath: request.filepath,
            presigned_url: target.presigned_url,
            content_type: target.content_type,
        });
        self.conn.send(&response).await
    }

    /// Awaits a user callback under its own limit and the overall one.
    async fn callback<R>(
        &mut self,
        future: BoxFuture<'static, CallbackResult<R>>,
        limit: Option<Duration>,
        kind: TimeoutKind,
        name: &str,
    ) -> Result<R, Error> {
        self.guarded(future, limit.map(|limit| (limit, kind)))
            .await?
            .map_err(|e| Error::Callback(format!("{name}: {e}")))
    }

    /// Hands an event to the stream consumer (waiting if it is slow).
    async fn emit(&mut self, event: Event<T>) -> Result<(), Error> {
        let Sink::Events(tx) = &self.sink else {
            return Ok(());
        };
        let tx = tx.clone();
        if self.guarded(tx.send(Ok(event)), None).await?.is_err() {
            // Nobody listens any more.
            return Err(self.give_up().await);
        }
        Ok(())
    }

    /// Runs `future` while still honouring an abort (the cancel message goes out at once)
    /// and the overall deadline, plus an optional limit of its own.
    async fn guarded<F: Future>(
        &mut self,
        future: F,
        limit: Option<(Duration, TimeoutKind)>,
    ) -> Result<F::Output, Error> {
        tokio::pin!(future);
        let limit_deadline = limit.map(|(limit, _)| Instant::now() + limit);
        let cancel = self.cancel.clone();
        loop {
            tokio::select! {
                output = &mut future => return Ok(output),
                () = cancel.dropped() => return Err(self.give_up().await),
                () = cancel.aborted(), if !self.aborted => self.abort().await?,
                () = sleep_until(self.deadline) => return Err(self.timeout(TimeoutKind::Overall)),
                () = sleep_until(limit_deadline) => {
                    let kind = limit.map_or(TimeoutKind::Overall, |(_, kind)| kind);
                    return Err(self.timeout(kind));
                }
            }
        }
    }

    async fn abort(&mut self) -> Result<(), Error> {
        self.aborted = true;
        tracing::info!("request aborted; sending cancel_message");
        self.send_cancel().await
    }

    /// The caller went away: stop the runtime's work and return without its terminal
    /// (the request stays open; a session skips its terminal later).
    async fn give_up(&mut self) -> Error {
        if self.request_open && !self.cancel_sent {
            tracing::info!("nobody waits for the request any more; sending cancel_message");
            if let Err(e) = self.send_cancel().await {
                tracing::debug!("could not send cancel_message: {e}");
            }
        }
        Error::Cancelled
    }

    async fn send_cancel(&mut self) -> Result<(), Error> {
        self.cancel_sent = true;
        self.conn.send(&ClientMessage::CancelMessage).await
    }

    fn timeout(&self, kind: TimeoutKind) -> Error {
        let after = match kind {
            TimeoutKind::Overall => self.limits.timeout,
            TimeoutKind::Idle => self.limits.idle_timeout,
            TimeoutKind::AssistantCallback => self.limits.assistant_callback_timeout,
            TimeoutKind::ArtifactCallback => self.limits.artifact_upload_callback_timeout,
            _ => None,
        };
        tracing::warn!(%kind, message_count = self.message_count, "request timed out");
        Error::Timeout {
            kind,
            after: after.unwrap_or_default(),
            last_message_type: self.last_message_type.clone(),
            message_count: self.message_count,
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
/// Resolves once the runtime has been silent for `idle` with a connection up. While a
/// resumable link (`attached`) reconnects the runtime cannot be heard, so that time does
/// not count: the limit starts again when the connection is back. Never without `idle`.
async fn idle_expired(idle: Option<Duration>, attached: Option<watch::Receiver<bool>>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let Some(mut attached) = attached else {
        return tokio::time::sleep(idle).await;
    };
    let mut deadline = Instant::now() + idle;
    loop {
        if !*attached.borrow_and_update() {
            if attached.wait_for(|up| *up).await.is_err() {
                // The link ended: reading it says why.
                return std::future::pending().await;
            }
            deadline = Instant::now() + idle;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            changed = attached.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

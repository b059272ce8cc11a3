//! A session: one client's conversation with the runtime, independent of the socket.
//!
//! The transport hands the session incoming text frames through a channel (closed when the
//! client leaves) and drains the session's [`Outbox`]. The session runs at most one request
//! at a time, sends exactly one terminal per request, and drains artifacts at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use runtimeuse_protocol::{
    ClientMessage, ErrorMessage, Incoming, RequestEnvelope, ServerMessage, parse_client_frame,
    secrets_in_frame,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error_span, info, info_span, warn};

use crate::agent::Agent;
use crate::artifacts::{ArtifactOptions, Artifacts};
use crate::command::CommandOptions;
use crate::http_client::HttpClient;
use crate::logging::add_span_secrets;
use crate::metrics::{RequestKind, SessionGuard, request_finished};
use crate::outbox::{DEFAULT_OUTBOX_CAPACITY, Outbox};
use crate::redact::Redactor;
use crate::request::{RequestContext, run_command_execution, run_invocation};
use crate::result_size::DEFAULT_MAX_RESULT_FRAME_BYTES;
use crate::unzip::UnzipLimits;

/// Added to a cancelled request's graces before it is dropped.
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// Default interval between heartbeats while a request runs.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);

/// Settings shared by every session of a runtime.
pub struct SessionConfig {
    /// The agent that runs invocations.
    pub agent: Arc<dyn Agent>,
    /// How commands run (capture limit, kill grace, default directory).
    pub commands: CommandOptions,
    /// Artifact timings.
    pub artifacts: ArtifactOptions,
    /// Interval between `heartbeat_message`s while a request runs.
    pub heartbeat_interval: Duration,
    /// How long a cancelled agent may take to stop before it is dropped.
    pub agent_cancel_grace: Duration,
    /// HTTP client for downloads and uploads, built on first use.
    pub http: HttpClient,
    /// Frames queued for the socket before producers wait.
    pub outbox_capacity: usize,
    /// Largest encoded `command_execution_result_message`; captured stdout is cut to fit
    /// (see [`crate::result_size`]).
    pub max_result_frame_bytes: usize,
    /// Bounds on what a downloaded `.zip` may expand to.
    pub unzip_limits: UnzipLimits,
    /// Secrets of the whole runtime (its token), redacted from every session's messages.
    pub secrets: Redactor,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("agent", &self.agent.name())
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// Defaults from PROTOCOL.md for everything but the agent.
    pub fn new(agent: Arc<dyn Agent>) -> Self {
        Self {
            agent,
            commands: CommandOptions::default(),
            artifacts: ArtifactOptions::default(),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            agent_cancel_grace: Duration::from_secs(5),
            http: default_http_client(),
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            max_result_frame_bytes: DEFAULT_MAX_RESULT_FRAME_BYTES,
            unzip_limits: UnzipLimits::default(),
            secrets: Redactor::default(),
        }
    }
}

/// The HTTP client used for downloads and uploads: the runtime's, built on first use
/// (see [`crate::http_client`]).
pub fn default_http_client() -> HttpClient {
    HttpClient::default()
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent `end_session_message`; the confirm was sent.
    EndSession,
    /// The client disconnected.
    ClientGone,
    /// The runtime is shutting down.
    Shutdown,
}

struct Running {
    cancel: CancellationToken,
    handle: JoinHandle<ServerMessage>,
    kind: RequestKind,
    started: Instant,
}

/// A session's state. Create with [`Session::new`], then [`Session::run`].
pub struct Session {
    config: Arc<SessionConfig>,
    outbox: Outbox,
    artifacts: Artifacts,
    current: Option<Running>,
    /// Holds the session's secrets for log redaction (at `ERROR` level, so that any log
    /// filter letting the runtime's events through keeps it; see [`crate::logging`]).
    span: tracing::Span,
}

enum Flow {
    Continue,
    EndSession,
}

impl Session {
    /// A session that sends through `outbox`.
    pub fn new(config: Arc<SessionConfig>, outbox: Outbox) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        outbox.add_secrets(&config.secrets);
        let artifacts = Artifacts::new(
            outbox.clone(),
            config.http.clone(),
            config.artifacts.clone(),
        );
        Self {
            config,
            outbox,
            artifacts,
            current: None,
            span: error_span!("session", id),
        }
    }

    /// Serves frames from `inbound` until the client ends the session, leaves, or
    /// `shutdown` fires; then cancels what runs and drains artifacts.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<String>,
        shutdown: CancellationToken,
    ) -> SessionEnd {
        let span = self.span.clone();
        async move {
            let _open = SessionGuard::open();
            info!("session started");
            let end = self.serve(&mut inbound, &shutdown).await;
            self.finish(end, &mut inbound).await;
            info!(?end, "session ended");
            crate::memory::session_ended();
            end
        }
        .instrument(span)
        .await
    }

    async fn serve(
        &mut self,
        inbound: &mut mpsc::Receiver<String>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        loop {
            let request_done = async {
                match self.current.as_mut() {
                    Some(running) => (&mut running.handle).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                joined = request_done => {
                    let terminal = joined.unwrap_or_else(|e| {
                        ServerMessage::error(format!("internal error: request task failed: {e}"))
                    });
                    if let Some(done) = self.current.take() {
                        request_finished(done.kind, &terminal, done.started.elapsed());
                    }
                    debug!(message_type = terminal.message_type(), "request finished");
                    let _ = self.outbox.send(terminal).await;
                }
                frame = inbound.recv() => match frame {
                    None => return SessionEnd::ClientGone,
                    Some(text) => {
                        if let Flow::EndSession = self.handle_frame(&text).await {
                            return SessionEnd::EndSession;
                        }
                    }
                },
            }
        }
    }

    async fn handle_frame(&mut self, text: &str) -> Flow {
        let message = match parse_client_frame(text) {
            Ok(Incoming::Message(message)) => message,
            Ok(Incoming::Unknown { message_type }) => {
                warn!(%message_type, "ignoring message of unknown type");
                return Flow::Continue;
            }
            Err(e) => {
                // The error text may quote the frame's values: they are redacted with the
                // frame's secrets, which a rejected frame does not add to the session.
                let frame_secrets = build_redactor(secrets_in_frame(text)).await;
                let error = format!("Invalid message: {e}");
                let logged = self.outbox.redactor().union(&frame_secrets).redact(&error);
                warn!(error = %logged, "rejecting malformed frame");
                let mut metadata = Map::new();
                metadata.insert("error_name".into(), Value::String("InvalidMessage".into()));
                let message = ServerMessage::ErrorMessage(ErrorMessage { error, metadata });
                let _ = self.outbox.send_redacting(message, &frame_secrets).await;
                return Flow::Continue;
            }
        };
        match message {
            ClientMessage::InvocationMessage(invocation) => {
                let envelope = invocation.envelope();
                self.start(envelope, RequestKind::Invocation, move |ctx| {
                    run_invocation(ctx, invocation)
                })
                .await;
            }
            ClientMessage::CommandExecutionMessage(execution) => {
                let envelope = execution.envelope();
                self.start(envelope, RequestKind::CommandExecution, move |ctx| {
                    run_command_execution(ctx, execution)
                })
                .await;
            }
            ClientMessage::ArtifactUploadResponseMessage(response) => {
                self.artifacts.on_upload_response(response);
            }
            ClientMessage::CancelMessage => match &self.current {
                Some(running) => {
                    info!("cancel requested");
                    running.cancel.cancel();
                }
                None => debug!("cancel with nothing in flight ignored"),
            },
            ClientMessage::EndSessionMessage => return Flow::EndSession,
        }
        Flow::Continue
    }

    async fn start<F, Fut>(&mut self, envelope: RequestEnvelope, kind: RequestKind, work: F)
    where
        F: FnOnce(RequestContext) -> Fut,
        Fut: Future<Output = ServerMessage> + Send + 'static,
    {
        // A refused request's secrets redact its refusal but do not join the session.
        let redactor = build_redactor(envelope.secrets_to_redact.clone()).await;
        if self.current.is_some() {
            let refusal = ServerMessage::error(
                "A request is already in flight on this session; wait for its result or cancel it",
            );
            let _ = self.outbox.send_redacting(refusal, &redactor).await;
            return;
        }
        let ignore = envelope.artifacts_ignore_content.as_deref();
        if let Err(e) = self.artifacts.watch(&envelope.artifacts_dirs, ignore) {
            let refusal = ServerMessage::error(e.to_string());
            let _ = self.outbox.send_redacting(refusal, &redactor).await;
            return;
        }
        self.adopt_secrets(&redactor).await;
        let cancel = CancellationToken::new();
        let ctx = RequestContext {
            config: self.config.clone(),
            outbox: self.outbox.clone(),
            artifacts: self.artifacts.clone(),
            cancel: cancel.clone(),
        };
        let source_id = envelope.source_id.as_deref().unwrap_or("");
        let span = info_span!("request", source_id);
        span.in_scope(|| info!("request started"));
        let handle = tokio::spawn(work(ctx).instrument(span));
        self.current = Some(Running {
            cancel,
            handle,
            kind,
            started: Instant::now(),
        });
    }

    /// Makes `secrets` the session's: redacted from every later message and log line.
    /// Merging rebuilds a matcher, so it runs off the async workers.
    async fn adopt_secrets(&self, secrets: &Redactor) {
        if secrets.is_empty() {
            return;
        }
        let (outbox, span, secrets) = (self.outbox.clone(), self.span.clone(), secrets.clone());
        let merge = move || {
            outbox.add_secrets(&secrets);
            add_span_secrets(&span, &secrets);
        };
        if let Err(e) = tokio::task::spawn_blocking(merge).await {
            warn!(error = %e, "merging secrets failed");
        }
    }

    /// Ends the session: cancels the request in flight, drains artifacts while still
    /// answering upload handshakes, confirms an `end_session_message`.
    async fn finish(&mut self, end: SessionEnd, inbound: &mut mpsc::Receiver<String>) {
        if let Some(mut running) = self.current.take() {
            running.cancel.cancel();
            // A request stops within its own graces; past them it is dropped, so that
            // nothing it does can hold the session (or the runtime's shutdown) open.
            let limit =
                self.config.agent_cancel_grace + self.config.commands.kill_grace + STOP_MARGIN;
            let terminal = match tokio::time::timeout(limit, &mut running.handle).await {
                Ok(joined) => {
                    joined.unwrap_or_else(|e| ServerMessage::error(format!("internal error: {e}")))
                }
                Err(_) => {
                    warn!(?limit, "cancelled request did not stop in time; dropped");
                    running.handle.abort();
                    ServerMessage::error(crate::CANCELLED)
                }
            };
            request_finished(running.kind, &terminal, running.started.elapsed());
            if end != SessionEnd::ClientGone {
                let _ = self.outbox.send(terminal).await;
            }
        }
        let artifacts = self.artifacts.clone();
        let drain = artifacts.drain();
        tokio::pin!(drain);
        let mut inbound_open = end != SessionEnd::ClientGone;
        loop {
            tokio::select! {
                () = &mut drain => break,
                frame = inbound.recv(), if inbound_open => match frame {
                    None => inbound_open = false,
                    Some(text) => self.handle_frame_while_closing(&text).await,
                },
            }
        }
        if end == SessionEnd::EndSession {
            let _ = self
                .outbox
                .send(ServerMessage::EndSessionConfirmMessage)
                .await;
        }
    }

    /// The session's span (carries its secrets for log redaction).
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    async fn handle_frame_while_closing(&mut self, text: &str) {
        match parse_client_frame(text) {
            Ok(Incoming::Message(ClientMessage::ArtifactUploadResponseMessage(response))) => {
                self.artifacts.on_upload_response(response);
            }
            Ok(Incoming::Message(
                ClientMessage::InvocationMessage(_) | ClientMessage::CommandExecutionMessage(_),
            )) => {
                let _ = self
                    .outbox
                    .send(ServerMessage::error(
                        "The session is closing; no new requests are accepted",
                    ))
                    .await;
            }
            _ => debug!("frame ignored while the session closes"),
        }
    }
}

/// A redactor for `secrets`, built off the async workers: thousands of secrets take a
/// while to compile, and other sessions must not wait for it.
async fn build_redactor(secrets: Vec<String>) -> Redactor {
    if secrets.is_empty() {
        return Redactor::default();
    }
    let fallback = secrets.clone();
    match tokio::task::spawn_blocking(move || Redactor::new(secrets)).await {
        Ok(redactor) => redactor,
        // The blocking pool refused (the runtime is shutting down): build it here.
        Err(_) => Redactor::new(fallback),
    }
}

//! The client: configuration, one-shot calls, sessions.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use runtimeuse_protocol::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header};
use tracing::Instrument;

use crate::abort::CancelSignal;
use crate::connection::{ConnectConfig, Connection};
use crate::options::RequestSpec;
use crate::request_loop::{Exchange, Sink, sleep_until};
use crate::result::Outcome;
use crate::stream::{EventStream, StreamGuard};
use crate::url_mask::{mask_url, scrub};
use crate::{
    AbortHandle, CommandExecutionResult, Error, Event, ExecuteCommandsOptions, QueryOptions,
    QueryResult, Session, TimeoutKind,
};

/// How long opening the WebSocket may take by default (the Python client's `open_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Events buffered between the connection and a slow stream consumer.
pub(crate) const STREAM_BUFFER: usize = 64;

/// Client of a runtimeuse runtime.
///
/// One-shot calls ([`query`](Self::query), [`execute_commands`](Self::execute_commands))
/// open a connection, run one request and close it. [`session`](Self::session) keeps one
/// connection for many sequential calls. Clones share the configuration and the abort
/// handle. Its `Debug` output masks credentials in the URL and header values.
#[derive(Debug, Clone)]
pub struct RuntimeUseClient {
    config: Arc<ConnectConfig>,
    abort: AbortHandle,
}

impl RuntimeUseClient {
    /// A client for the runtime at `ws_url` (e.g. `ws://127.0.0.1:8080`), with default
    /// settings. A malformed URL is reported by the first call as [`Error::Connect`].
    ///
    /// An auth token may be given in the URL (`?token=…`; the runtime accepts it there as
    /// well as in the `Authorization` header). Errors, logs and `Debug` output show the URL
    /// with its query values and userinfo masked.
    pub fn new(ws_url: impl Into<String>) -> Self {
        Self {
            config: Arc::new(ConnectConfig {
                url: ws_url.into(),
                headers: Vec::new(),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                transport: None,
                resume: false,
            }),
            abort: AbortHandle::new(),
        }
    }

    /// A builder for a client with an auth token, a connect timeout or extra headers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use runtimeuse_client::RuntimeUseClient;
    ///
    /// let client = RuntimeUseClient::builder("ws://127.0.0.1:8080")
    ///     .auth_token("secret")
    ///     .connect_timeout(Duration::from_secs(10))
    ///     .header("x-sandbox", "42")
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), runtimeuse_client::Error>(())
    /// ```
    pub fn builder(ws_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: ws_url.into(),
            headers: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            transport: None,
            resume: false,
        }
    }

    /// The runtime's URL, as given (credentials included; not for logs).
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// A handle aborting this client's one-shot calls in flight, from any task.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// Aborts the one-shot calls in flight: sends `cancel_message`, waits for the runtime's
    /// terminal, and makes them return [`Error::Cancelled`]. Sessions have their own
    /// [`Session::abort`].
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Sends a prompt to the agent and returns its result.
    ///
    /// # Errors
    /// [`Error::Runtime`] when the runtime reports a failure, [`Error::Cancelled`] after an
    /// abort, [`Error::Timeout`], [`Error::Connect`], [`Error::ConnectionClosed`],
    /// [`Error::Protocol`], [`Error::InvalidOptions`] or [`Error::Callback`].
    pub async fn query(
        &self,
        prompt: impl AsRef<str>,
        options: impl Borrow<QueryOptions>,
    ) -> Result<QueryResult, Error> {
        let options = options.borrow();
        options.validate()?;
        self.one_shot(options.spec(prompt.as_ref()), "query").await
    }

    /// Runs shell commands in the sandbox without the agent.
    ///
    /// A command exiting non-zero is not an error: the runtime stops there and reports it
    /// in the result (see [`CommandExecutionResult::success`]).
    ///
    /// # Errors
    /// As for [`query`](Self::query).
    pub async fn execute_commands(
        &self,
        commands: Vec<Command>,
        options: impl Borrow<ExecuteCommandsOptions>,
    ) -> Result<CommandExecutionResult, Error> {
        let options = options.borrow();
        options.validate()?;
        self.one_shot(options.spec(commands), "execute_commands")
            .await
    }

    /// Like [`query`](Self::query), yielding [`Event`]s instead of calling callbacks
    /// (callbacks set in `options` are not used; artifact requests are answered through
    /// [`ArtifactUploadRequestEvent::respond`](crate::ArtifactUploadRequestEvent::respond)).
    /// Must be called inside a Tokio runtime. Dropping the stream ends the call.
    pub fn query_stream(
        &self,
        prompt: impl AsRef<str>,
        options: impl Borrow<QueryOptions>,
    ) -> EventStream<QueryResult> {
        let options = options.borrow();
        let spec = options
            .check_format()
            .map(|()| options.spec(prompt.as_ref()));
        self.one_shot_stream(spec, "query")
    }

    /// Like [`execute_commands`](Self::execute_commands), yielding [`Event`]s.
    /// Must be called inside a Tokio runtime.
    pub fn execute_commands_stream(
        &self,
        commands: Vec<Command>,
        options: impl Borrow<ExecuteCommandsOptions>,
    ) -> EventStream<CommandExecutionResult> {
        self.one_shot_stream(Ok(options.borrow().spec(commands)), "execute_commands")
    }

    /// Opens a persistent connection for many sequential calls.
    ///
    /// # Errors
    /// [`Error::Connect`] when the runtime cannot be reached.
    pub async fn session(&self) -> Result<Session, Error> {
        Ok(Session::new(Connection::open(&self.config).await?))
    }

    async fn one_shot<T: Outcome>(
        &self,
        spec: RequestSpec,
        kind: &'static str,
    ) -> Result<T, Error> {
        let span = request_span(kind, spec.source_id.as_deref());
        let cancel = CancelSignal::new(self.abort.token(), None);
        let sink = Sink::Callbacks(spec.callbacks.clone());
        run_one_shot(&self.config, spec, sink, cancel)
            .instrument(span)
            .await
    }

    fn one_shot_stream<T: Outcome>(
        &self,
        spec: Result<RequestSpec, Error>,
        kind: &'static str,
    ) -> EventStream<T> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let span = request_span(
            kind,
            spec.as_ref().ok().and_then(|s| s.source_id.as_deref()),
        );
        let cancel = CancelSignal::new(self.abort.token(), None);
        let config = Arc::clone(&self.config);
        let task = tokio::spawn(
            async move {
                let result = match spec {
                    Err(e) => Err(e),
                    Ok(spec) => run_one_shot(&config, spec, Sink::Events(tx.clone()), cancel).await,
                };
                let _ = tx.send(result.map(Event::Result)).await;
            }
            .instrument(span),
        );
        EventStream::new(rx, StreamGuard::task(task))
    }
}

/// Connects, runs one request, closes.
async fn run_one_shot<T: Outcome>(
    config: &ConnectConfig,
    spec: RequestSpec,
    sink: Sink<T>,
    cancel: CancelSignal,
) -> Result<T, Error> {
    let started = Instant::now();
    let deadline = spec.limits.timeout.map(|timeout| started + timeout);
    let mut conn = tokio::select! {
        conn = Connection::open(config) => conn?,
        () = cancel.cancelled() => return Err(Error::Cancelled),
        () = sleep_until(deadline) => {
            return Err(Error::Timeout {
                kind: TimeoutKind::Overall,
                after: spec.limits.timeout.unwrap_or_default(),
                last_message_type: None,
                message_count: 0,
            });
        }
    };
    let finished = Exchange::new(&mut conn, sink, spec.limits, cancel, started)
        .run(&spec.message)
        .await;
    conn.close().await;
    finished.result
}

pub(crate) fn request_span(kind: &'static str, source_id: Option<&str>) -> tracing::Span {
    tracing::info_span!(
        "runtimeuse_request",
        kind,
        source_id = source_id.unwrap_or("")
    )
}

/// Builds a [`RuntimeUseClient`] with non-default settings.
#[derive(Clone)]
#[must_use]
pub struct ClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    connect_timeout: Duration,
    transport: Option<crate::Transport>,
    resume: bool,
}

/// Header values (the auth token among them) and URL credentials stay out of it.
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ClientBuilder")
            .field("url", &mask_url(&self.url))
            .field("headers", &header_names)
            .field("connect_timeout", &self.connect_timeout)
            .field("resume", &self.resume)
            .finish()
    }
}

impl ClientBuilder {
    /// Sends `Authorization: Bearer <token>` with the WebSocket upgrade.
    pub fn auth_token(self, token: impl AsRef<str>) -> Self {
        let value = format!("Bearer {}", token.as_ref());
        self.header(header::AUTHORIZATION.as_str(), value)
    }

    /// How long opening the WebSocket (TCP, TLS and upgrade) may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reaches the runtime through `transport` instead of a WebSocket to the URL (which
    /// then only names the runtime in errors and logs; headers are not used).
    pub fn transport(mut self, transport: crate::Transport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Opens every connection (one-shot calls and sessions) as a **durable session** of
    /// the runtime (the protocol's resumable-sessions extension) and reconnects
    /// transparently when it drops. Off by default; without it nothing on the wire changes.
    ///
    /// With it on, the upgrade carries `X-RuntimeUse-Resumable: 1` and the connection is
    /// open once the runtime's `session_resumable_message` has arrived. A runtime without
    /// the extension (its `101` has no `X-RuntimeUse-Resumable` header) fails the open with
    /// [`Error::Connect`] saying so, within 5 s; one that advertises it but sends nothing,
    /// after the connect timeout. Every frame then carries a sequence number. When the connection
    /// drops (reset, end, a close other than the end of the session), the client dials
    /// again with the session's id, key and last sequence number, with jittered
    /// exponential backoff (100 ms doubling to 5 s, ±50%), for as long as the runtime's
    /// grace period (`grace_ms`) since the drop. The runtime replays what the client
    /// missed and the client re-sends what the runtime missed: callbacks and event streams
    /// see every message once and in order, and the call goes on. A connection that dies
    /// silently is noticed too: the client pings after 15 s without hearing from the
    /// runtime and counts the connection as dropped after 45 s (time spent waiting for a
    /// slow callback or stream consumer does not count).
    ///
    /// A call ends with [`Error::ConnectionClosed`] when the grace period passes without a
    /// resume or another connection took the session over (close 4001), and with
    /// [`Error::Runtime`] whose `metadata["error_name"]` is `"ResumeRefused"` (and
    /// `metadata["reason"]` says why: `expired`, `ended`, `invalid_key`…) when the
    /// runtime refuses the resume. Closing a session, or the end of a one-shot call,
    /// closes with code 1000, which ends the durable session in the runtime.
    ///
    /// Results count the reconnections during the call: `"reconnects"` in
    /// [`QueryResult::metadata`](crate::QueryResult::metadata) and
    /// [`CommandExecutionResult::metadata`](crate::CommandExecutionResult::metadata).
    ///
    /// A custom [`transport`](Self::transport) cannot be resumed (it has no way to carry
    /// the resume headers): [`build`](Self::build) refuses the combination.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Adds a header to the WebSocket upgrade request (replacing one of the same name).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// The client.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for a URL that is not a `ws://`/`wss://` URL, a header
    /// that is not valid HTTP, or [`resume`](Self::resume) with a custom transport.
    pub fn build(self) -> Result<RuntimeUseClient, Error> {
        validate_url(&self.url)?;
        if self.resume && self.transport.is_some() {
            return Err(Error::InvalidOptions(
                "resume is not available with a custom transport (it cannot carry the resume headers)"
                    .into(),
            ));
        }
        let headers = self
            .headers
            .into_iter()
            .map(|(name, value)| {
                let header_name = HeaderName::try_from(name.as_str())
                    .map_err(|e| Error::InvalidOptions(format!("header name {name:?}: {e}")))?;
                let mut header_value = HeaderValue::try_from(value)
                    .map_err(|e| Error::InvalidOptions(format!("header {name:?}: {e}")))?;
                // Keeps the token out of `Debug` output and logs.
                header_value.set_sensitive(header_name == header::AUTHORIZATION);
                Ok((header_name, header_value))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(RuntimeUseClient {
            config: Arc::new(ConnectConfig {
                url: self.url,
                headers,
                connect_timeout: self.connect_timeout,
                transport: self.transport,
                resume: self.resume,
            }),
            abort: AbortHandle::new(),
        })
    }
}

fn validate_url(url: &str) -> Result<(), Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let shown = mask_url(url);
    let request = url.into_client_request().map_err(|e| {
        let reason = e.to_string();
        let reason = scrub(&reason, url).unwrap_or(reason);
        Error::InvalidOptions(format!("ws_url {shown:?}: {reason}"))
    })?;
    match request.uri().scheme_str() {
        Some("ws" | "wss") => Ok(()),
        _ => Err(Error::InvalidOptions(format!(
            "ws_url {shown:?} must start with ws:// or wss://"
        ))),
    }
}

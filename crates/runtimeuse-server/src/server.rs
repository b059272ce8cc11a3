//! The network edge: one port serving `GET /health` and WebSocket sessions, with token
//! auth at the upgrade and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::outbox::Outbox;
use crate::session::{Session, SessionConfig};

/// How the runtime listens.
#[derive(Debug)]
pub struct ServerConfig {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// When set, the upgrade must carry `Authorization: Bearer <token>` or `?token=<token>`.
    pub token: Option<String>,
    /// Settings of every session.
    pub session: SessionConfig,
    /// Upper bound on how long shutdown waits for sessions to drain.
    pub shutdown_timeout: Duration,
}

impl ServerConfig {
    /// A config for `addr` with no token and default session settings.
    pub fn new(addr: SocketAddr, session: SessionConfig) -> Self {
        Self {
            addr,
            token: None,
            session,
            shutdown_timeout: Duration::from_secs(120),
        }
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

#[derive(Clone)]
struct AppState {
    session: Arc<SessionConfig>,
    token: Option<Arc<str>>,
    open_sessions: Arc<AtomicUsize>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// A bound, not yet serving runtime.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    session: Arc<SessionConfig>,
    token: Option<Arc<str>>,
    shutdown_timeout: Duration,
}

/// A runtime serving in a background task (used by tests and embedders).
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// `http://ADDR` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        self.task
            .await
            .unwrap_or_else(|e| Err(ServerError::Serve(std::io::Error::other(e.to_string()))))
    }
}

impl Server {
    /// Binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServerError> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServerError::Bind { addr: config.addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: config.addr, source })?;
        Ok(Self {
            listener,
            addr,
            session: Arc::new(config.session),
            token: config.token.filter(|t| !t.is_empty()).map(Arc::from),
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves in a background task until [`ServerHandle::shutdown`].
    pub fn spawn(self) -> ServerHandle {
        let shutdown = CancellationToken::new();
        let addr = self.addr;
        let task = tokio::spawn(self.run_until(shutdown.clone()));
        ServerHandle { addr, shutdown, task }
    }

    /// Serves until `shutdown` fires; then stops accepting, lets every session cancel its
    /// request and drain its artifacts, and returns.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let state = AppState {
            session: self.session,
            token: self.token,
            open_sessions: Arc::new(AtomicUsize::new(0)),
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
        };
        let app = Router::new()
            .route("/health", get(health))
            .fallback(upgrade)
            .with_state(state.clone());
        info!(addr = %self.addr, agent = state.session.agent.name(), "listening");
        let serve = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let served = serve.await.map_err(ServerError::Serve);
        state.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, state.tracker.wait()).await.is_err() {
            warn!("sessions did not finish within the shutdown timeout");
        }
        info!("stopped");
        served
    }
}

async fn health(State(state): State<AppState>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "agent": state.session.agent.name(),
        "sessions": state.open_sessions.load(Ordering::Relaxed),
    }))
    .into_response()
}

fn presented_token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<std::borrow::Cow<'a, str>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| std::borrow::Cow::Borrowed(t.trim()));
    bearer.or_else(|| {
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    })
}

/// Compares in time independent of where the strings differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn upgrade(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(expected) = &state.token {
        let ok = presented_token(&headers, &uri).is_some_and(|t| same_token(&t, expected));
        if !ok {
            warn!("refused a connection without a valid token");
            return (StatusCode::UNAUTHORIZED, "missing or invalid token\n").into_response();
        }
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "runtime is shutting down\n").into_response();
    }
    let tracker = state.tracker.clone();
    ws.on_upgrade(move |socket| tracker.track_future(serve_socket(socket, state)))
}

/// Bridges one WebSocket to one [`Session`]: a reader feeding the session's inbound
/// channel and a writer draining its outbox.
async fn serve_socket(socket: WebSocket, state: AppState) {
    state.open_sessions.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut outbox_rx) = Outbox::channel(state.session.outbox_capacity);
    let (inbound_tx, inbound_rx) = mpsc::channel::<String>(16);
    let (mut sink, mut stream) = socket.split();
    let close = CancellationToken::new();

    // Set by the reader when the client is gone: nothing more can be written, and
    // producers (artifact handshakes, output) must stop waiting on the socket.
    let client_gone = CancellationToken::new();

    let writer_close = close.clone();
    let writer_gone = client_gone.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                () = writer_gone.cancelled() => break,
                frame = outbox_rx.recv() => match frame {
                    Some(frame) => {
                        if sink.send(Message::Text(frame.into())).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                () = writer_close.cancelled() => {
                    while let Some(frame) = outbox_rx.try_recv() {
                        if sink.send(Message::Text(frame.into())).await.is_err() {
                            break;
                        }
                    }
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
        // From here on producers get OutboxClosed instead of waiting on a dead socket.
        outbox_rx.close();
        let _ = sink.close().await;
    });

    let reader_gone = client_gone.clone();
    let reader = tokio::spawn(async move {
        let _gone = reader_gone.drop_guard();
        while let Some(message) = stream.next().await {
            let text = match message {
                Ok(Message::Text(text)) => text.to_string(),
                Ok(Message::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            if inbound_tx.send(text).await.is_err() {
                break;
            }
        }
    });

    let session = Session::new(state.session.clone(), outbox);
    let _end = session.run(inbound_rx, state.shutdown.clone()).await;
    close.cancel();
    if tokio::time::timeout(Duration::from_secs(10), writer).await.is_err() {
        warn!("socket writer did not finish in time");
    }
    reader.abort();
    state.open_sessions.fetch_sub(1, Ordering::Relaxed);
}

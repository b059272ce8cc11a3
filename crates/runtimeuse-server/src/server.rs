//! The network edge: one port serving `GET /health` and WebSocket sessions, with token
//! auth at the upgrade and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::session::SessionConfig;
use crate::socket::{DEFAULT_PING_INTERVAL, SocketBridge};

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
    /// WebSocket ping interval; a client silent for three intervals is taken as gone
    /// (its request is cancelled). `None` disables pings.
    pub ping_interval: Option<Duration>,
}

impl ServerConfig {
    /// A config for `addr` with no token and default session settings.
    pub fn new(addr: SocketAddr, session: SessionConfig) -> Self {
        Self {
            addr,
            token: None,
            session,
            shutdown_timeout: Duration::from_secs(120),
            ping_interval: Some(DEFAULT_PING_INTERVAL),
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
    ping_interval: Option<Duration>,
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
    ping_interval: Option<Duration>,
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
            .map_err(|source| ServerError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            session: Arc::new(config.session),
            token: config.token.filter(|t| !t.is_empty()).map(Arc::from),
            shutdown_timeout: config.shutdown_timeout,
            ping_interval: config.ping_interval,
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
        ServerHandle {
            addr,
            shutdown,
            task,
        }
    }

    /// Serves until `shutdown` fires; then stops accepting, lets every session cancel its
    /// request and drain its artifacts, and returns.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let state = AppState {
            session: self.session,
            ping_interval: self.ping_interval,
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
        if tokio::time::timeout(self.shutdown_timeout, state.tracker.wait())
            .await
            .is_err()
        {
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
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| std::borrow::Cow::Borrowed(t.trim()));
    bearer.or_else(|| {
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    })
}

/// Compares in time independent of where the strings differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime is shutting down\n",
        )
            .into_response();
    }
    let tracker = state.tracker.clone();
    ws.on_upgrade(move |socket| {
        tracker.track_future(async move {
            state.open_sessions.fetch_add(1, Ordering::Relaxed);
            let bridge = SocketBridge {
                session: state.session.clone(),
                ping_interval: state.ping_interval,
            };
            bridge.serve(socket, state.shutdown.clone()).await;
            state.open_sessions.fetch_sub(1, Ordering::Relaxed);
        })
    })
}

//! The network edge: one port serving `GET /health` and WebSocket sessions, with token
//! auth at the upgrade, limits on what unauthenticated and slow peers can hold, and a
//! bounded graceful shutdown.
//!
//! Shutdown, once asked for: the listener closes and connections still in their HTTP
//! phase are dropped; every session cancels its request, drains its artifacts and closes
//! its socket after flushing what is queued. Sessions still open after
//! [`ServerConfig::shutdown_timeout`] have their connections cut (uploads that really run
//! keep their [`ArtifactOptions::upload_timeout`](crate::artifacts::ArtifactOptions)), and
//! [`HARD_STOP_GRACE`] later the server returns whatever is left.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::listener::{HttpLimits, accept_until};
use crate::resume::ResumeOptions;
use crate::services::SessionServices;
use crate::session::SessionConfig;
use crate::socket::DEFAULT_PING_INTERVAL;
use crate::upgrade::{UpgradeState, upgrade};

/// Default of [`ServerConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 256;
/// Default of [`ServerConfig::max_pending_connections`].
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 128;
/// Default of [`ServerConfig::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServerConfig::max_message_bytes`] (8 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Default of [`ServerConfig::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(8);
/// How long after cutting the connections of sessions that outlived the shutdown timeout
/// the server still waits for them (beyond the upload timeout of running uploads).
pub const HARD_STOP_GRACE: Duration = Duration::from_secs(2);

/// How the runtime listens.
#[derive(Debug)]
pub struct ServerConfig {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// When set, the upgrade must carry `Authorization: Bearer <token>` or `?token=<token>`.
    pub token: Option<String>,
    /// Settings of every session.
    pub session: SessionConfig,
    /// How long shutdown waits for sessions to finish before cutting their connections.
    pub shutdown_timeout: Duration,
    /// WebSocket ping interval. A client that, for three intervals in a row, sends nothing
    /// (not even a pong) and takes none of the bytes waiting for it is taken as gone (its
    /// request is cancelled). `None` disables pings and that rule.
    pub ping_interval: Option<Duration>,
    /// Most sessions at once; a client past it is closed with code 1013 and a reason.
    pub max_sessions: usize,
    /// Most connections that have not finished their HTTP request (upgrade or health
    /// check) at once; past it the oldest such connection is closed.
    pub max_pending_connections: usize,
    /// Time a connection has, from accept, to send its HTTP request and receive the
    /// answer (the upgrade, or the health response).
    pub header_read_timeout: Duration,
    /// Largest incoming WebSocket message (fragments count together); a larger one closes
    /// the connection with code 1009.
    pub max_message_bytes: usize,
    /// Durable sessions (the opt-in resume extension): grace period and replay buffer.
    pub resume: ResumeOptions,
}

impl ServerConfig {
    /// A config for `addr` with no token and default session settings.
    pub fn new(addr: SocketAddr, session: SessionConfig) -> Self {
        Self {
            addr,
            token: None,
            session,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_pending_connections: DEFAULT_MAX_PENDING_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            resume: ResumeOptions::default(),
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

/// A bound, not yet serving runtime.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    session: Arc<SessionConfig>,
    token: Option<Arc<str>>,
    shutdown_timeout: Duration,
    ping_interval: Option<Duration>,
    max_sessions: usize,
    http: HttpLimits,
    max_message_bytes: usize,
    resume: ResumeOptions,
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
            max_sessions: config.max_sessions.max(1),
            http: HttpLimits {
                max_pending: config.max_pending_connections.max(1),
                deadline: config.header_read_timeout,
            },
            max_message_bytes: config.max_message_bytes.max(1),
            resume: config.resume,
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
    /// request, drain its artifacts and close, and returns within the bound described in
    /// the [module documentation](self).
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let hard_stop = CancellationToken::new();
        let state = UpgradeState {
            services: SessionServices {
                session: self.session,
                tracker: TaskTracker::new(),
                shutdown: shutdown.clone(),
                hard_stop: hard_stop.clone(),
                open_sessions: Arc::new(AtomicUsize::new(0)),
            },
            ping_interval: self.ping_interval,
            token: self.token,
            max_message_bytes: self.max_message_bytes,
            max_sessions: self.max_sessions,
            session_slots: Arc::new(Semaphore::new(self.max_sessions)),
            registry: crate::resume::registry::Registry::new(self.resume),
        };
        let app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(crate::metrics::serve))
            .fallback(upgrade)
            .with_state(state.clone());
        info!(addr = %self.addr, agent = state.services.session.agent.name(), "listening");
        accept_until(self.listener, app, self.http, shutdown).await;
        state.services.tracker.close();
        if tokio::time::timeout(self.shutdown_timeout, state.services.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                sessions = state.services.open_sessions.load(Ordering::Relaxed),
                "sessions still open after the shutdown timeout; cutting their connections"
            );
            hard_stop.cancel();
            let rest = state.services.session.artifacts.upload_timeout + HARD_STOP_GRACE;
            if tokio::time::timeout(rest, state.services.tracker.wait())
                .await
                .is_err()
            {
                warn!("sessions did not finish after their connections were cut; stopping anyway");
            }
        }
        info!("stopped");
        Ok(())
    }
}

async fn health(State(state): State<UpgradeState>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "agent": state.services.session.agent.name(),
        "sessions": state.services.open_sessions.load(Ordering::Relaxed),
    }))
    .into_response()
}

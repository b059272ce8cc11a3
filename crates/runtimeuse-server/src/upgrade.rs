//! The WebSocket upgrade: token check, handshake, and the session cap. A client past
//! `max_sessions` (or arriving while the runtime shuts down) is upgraded and closed at once
//! with code 1013 and a reason, so that every WebSocket client can tell it why.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::create_response_with_body;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, warn};

use runtimeuse_protocol::ServerMessage;
use runtimeuse_protocol::resume::{HEADER_RESUMABLE, RESUME_REFUSED};
use serde_json::{Map, Value};

use crate::listener::ConnectionTraffic;
use crate::resume::params::{SessionRequest, query_param};
use crate::resume::registry::{Refusal, Registry};
use crate::services::SessionServices;
use crate::socket::{BridgeSignals, DurableStart, SocketBridge};

/// How long a refused client gets to read its close frame.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// What the upgrade handler needs; one per server.
#[derive(Clone)]
pub(crate) struct UpgradeState {
    /// What every session needs from the server.
    pub services: SessionServices,
    pub ping_interval: Option<Duration>,
    pub token: Option<Arc<str>>,
    pub max_message_bytes: usize,
    pub max_sessions: usize,
    pub session_slots: Arc<Semaphore>,
    /// Durable sessions (the resume extension).
    pub registry: Arc<Registry>,
}

impl UpgradeState {
    /// The WebSocket settings every session uses.
    fn ws_config(&self) -> WebSocketConfig {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(self.max_message_bytes);
        // A single frame can't be larger than the message it belongs to; checking it at
        // the frame header refuses an oversized frame before buffering it.
        config.max_frame_size = Some(self.max_message_bytes);
        config.read_buffer_size = 32 * 1024;
        config
    }
}

fn presented_token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<Cow<'a, str>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| Cow::Borrowed(t.trim()));
    bearer.or_else(|| query_param(uri, "token"))
}

/// Compares in time independent of where the strings differ.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `headers`/`uri` carry the expected token (always true without one).
pub(crate) fn authorized(expected: Option<&str>, headers: &HeaderMap, uri: &Uri) -> bool {
    match expected {
        None => true,
        Some(expected) => presented_token(headers, uri).is_some_and(|t| same_token(&t, expected)),
    }
}

/// The fallback route: every path but `/health` upgrades to a session.
pub(crate) async fn upgrade(State(state): State<UpgradeState>, mut request: Request) -> Response {
    if !authorized(state.token.as_deref(), request.headers(), request.uri()) {
        warn!("refused a connection without a valid token");
        return (StatusCode::UNAUTHORIZED, "missing or invalid token\n").into_response();
    }
    let wanted = match SessionRequest::from_request(request.headers(), request.uri()) {
        Ok(wanted) => wanted,
        Err(problem) => {
            return (StatusCode::BAD_REQUEST, format!("{problem}\n")).into_response();
        }
    };
    let mut response = match create_response_with_body(&request, Body::empty) {
        Ok(response) => response,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("expected a WebSocket upgrade: {e}\n"),
            )
                .into_response();
        }
    };
    // Every 101 says the runtime speaks the resumable-sessions extension, so that a client
    // asking for a durable session can tell a runtime without it at once.
    response.headers_mut().insert(
        HeaderName::from_static(HEADER_RESUMABLE),
        HeaderValue::from_static("1"),
    );
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    let traffic = request
        .extensions()
        .get::<ConnectionTraffic>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    let admission = if state.services.shutdown.is_cancelled() {
        Err("the runtime is shutting down".to_owned())
    } else if let SessionRequest::Resume(_) = wanted {
        // A resumed session holds its slot already.
        Ok(None)
    } else {
        state
            .session_slots
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| {
                format!(
                    "the runtime serves at most {} sessions at once; try again later",
                    state.max_sessions
                )
            })
    };
    let ws_config = state.ws_config();
    let tracker = state.services.tracker.clone();
    tracker.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(error = %e, "the upgrade did not complete");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        let permit = match admission {
            Ok(permit) => permit,
            Err(reason) => {
                warn!(%reason, "refused a session");
                return refuse(ws, None, CloseCode::Again, reason).await;
            }
        };
        let bridge = SocketBridge {
            session: state.services.session.clone(),
            ping_interval: state.ping_interval,
        };
        let signals = BridgeSignals {
            shutdown: state.services.shutdown.clone(),
            hard_stop: state.services.hard_stop.clone(),
            traffic,
        };
        match (wanted, permit) {
            (SessionRequest::Plain, Some(permit)) => {
                state.services.open_sessions.fetch_add(1, Ordering::Relaxed);
                bridge.serve(ws, signals).await;
                state.services.open_sessions.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            }
            (SessionRequest::Durable, Some(permit)) => {
                let registry = state.registry.clone();
                match registry.open(&state.services, permit) {
                    Ok(durable) => {
                        bridge
                            .serve_durable(ws, signals, registry, durable, DurableStart::New)
                            .await
                    }
                    Err(e) => {
                        let reason = format!("no durable session: {e}");
                        refuse(ws, None, CloseCode::Error, reason).await
                    }
                }
            }
            (SessionRequest::Resume(resume), _) => {
                let registry = state.registry.clone();
                match registry.find(&resume) {
                    Ok(durable) => {
                        let start = DurableStart::Resume {
                            last_seq: resume.last_seq,
                        };
                        bridge
                            .serve_durable(ws, signals, registry, durable, start)
                            .await
                    }
                    Err(refusal) => refuse_resume(ws, &refusal).await,
                }
            }
            (_, None) => {}
        }
    });
    response.into_response()
}

/// Refuses a resume: one `error_message` saying why, then a close with 1008.
pub(crate) async fn refuse_resume<S>(ws: WebSocketStream<S>, refusal: &Refusal)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    warn!(reason = refusal.reason(), "refused a resume: {refusal}");
    crate::metrics::durable_event(crate::metrics::DurableEvent::Refused);
    let mut metadata = Map::new();
    metadata.insert("error_name".into(), Value::String(RESUME_REFUSED.into()));
    metadata.insert("reason".into(), Value::String(refusal.reason().into()));
    let text = format!("cannot resume the session: {refusal}");
    let error = ServerMessage::ErrorMessage(runtimeuse_protocol::ErrorMessage {
        error: text.clone(),
        metadata,
    });
    let frame = serde_json::to_string(&error).unwrap_or_default();
    refuse(ws, Some(frame), CloseCode::Policy, text).await;
}

/// Sends `frame` if any, then closes `ws` with `code` and `reason`.
async fn refuse<S>(
    mut ws: WebSocketStream<S>,
    frame: Option<String>,
    code: CloseCode,
    reason: String,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let close = CloseFrame {
        code,
        reason: tungstenite::Utf8Bytes::from(crate::socket::close_reason(reason)),
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        if let Some(frame) = frame {
            let _ = ws.send(Message::text(frame)).await;
        }
        let _ = ws.send(Message::Close(Some(close))).await;
        let _ = ws.close(None).await;
    })
    .await;
}

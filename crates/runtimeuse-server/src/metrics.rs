//! The runtime's metrics, served as `GET /metrics` in the Prometheus text format
//! (OpenMetrics 1.0), behind the token when one is set.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `runtimeuse_sessions_open` | gauge | |
//! | `runtimeuse_sessions_total` | counter | |
//! | `runtimeuse_requests_total` | counter | `kind` (`invocation`, `command_execution`), `outcome` (`ok`, `error`, `cancelled`) |
//! | `runtimeuse_request_duration_seconds` | histogram | `kind` |
//! | `runtimeuse_bytes_streamed_total` | counter | (bytes of every frame sent to clients) |
//! | `runtimeuse_artifacts_total` | counter | `outcome` (`uploaded`, `failed`) |
//! | `runtimeuse_commands_killed_total` | counter | `reason` (`cancelled`, `timeout`) |
//! | `runtimeuse_durable_sessions_total` | counter | `event` (`opened`, `resumed`, `taken_over`, `refused`, `expired`, `ended`) |
//! | `runtimeuse_durable_sessions_detached` | gauge | (durable sessions with no connection now) |
//!
//! The set is process-wide: every server in the process counts into it.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use runtimeuse_protocol::ServerMessage;

use crate::command::{CommandError, CommandOutcome};
use crate::upgrade::{UpgradeState, authorized};

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `invocation_message`.
    Invocation,
    /// `command_execution_message`.
    CommandExecution,
}

impl RequestKind {
    fn label(self) -> &'static str {
        match self {
            Self::Invocation => "invocation",
            Self::CommandExecution => "command_execution",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

/// What happened to a durable session (the resume extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurableEvent {
    /// A client opened one.
    Opened,
    /// A connection resumed one.
    Resumed,
    /// A resume took it over from a live connection.
    TakenOver,
    /// A resume was refused (unknown id, wrong key, expired, ended, replay unavailable).
    Refused,
    /// It stayed detached past its grace period and was ended.
    Expired,
    /// It finished (acknowledged confirm, client close, shutdown).
    Ended,
}

impl DurableEvent {
    fn label(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Resumed => "resumed",
            Self::TakenOver => "taken_over",
            Self::Refused => "refused",
            Self::Expired => "expired",
            Self::Ended => "ended",
        }
    }
}

fn duration_histogram() -> Histogram {
    // 10 ms to about 45 min.
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

struct Metrics {
    registry: Registry,
    sessions_open: Gauge,
    sessions: Counter,
    requests: Family<RequestLabels, Counter>,
    durations: Family<KindLabels, Histogram, fn() -> Histogram>,
    bytes_streamed: Counter,
    artifacts: Family<OutcomeLabels, Counter>,
    commands_killed: Family<ReasonLabels, Counter>,
    durable: Family<EventLabels, Counter>,
    durable_detached: Gauge,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("runtimeuse");
        let m = Metrics {
            registry: Registry::default(),
            sessions_open: Gauge::default(),
            sessions: Counter::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            bytes_streamed: Counter::default(),
            artifacts: Family::default(),
            commands_killed: Family::default(),
            durable: Family::default(),
            durable_detached: Gauge::default(),
        };
        registry.register(
            "sessions_open",
            "Sessions open now",
            m.sessions_open.clone(),
        );
        registry.register("sessions", "Sessions started", m.sessions.clone());
        registry.register("requests", "Requests finished", m.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from a request's start to its terminal message",
            m.durations.clone(),
        );
        registry.register(
            "bytes_streamed",
            "Bytes of every frame sent to clients",
            m.bytes_streamed.clone(),
        );
        registry.register(
            "artifacts",
            "Artifact uploads finished",
            m.artifacts.clone(),
        );
        registry.register(
            "commands_killed",
            "Commands whose process group was killed",
            m.commands_killed.clone(),
        );
        registry.register(
            "durable_sessions",
            "Events of durable (resumable) sessions",
            m.durable.clone(),
        );
        registry.register(
            "durable_sessions_detached",
            "Durable sessions without a connection now",
            m.durable_detached.clone(),
        );
        Metrics { registry, ..m }
    })
}

/// Counts a session as open until the guard drops.
#[derive(Debug)]
#[must_use = "the session counts as open while the guard lives"]
pub struct SessionGuard(());

impl SessionGuard {
    /// A session starts.
    pub fn open() -> Self {
        let m = metrics();
        m.sessions.inc();
        m.sessions_open.inc();
        Self(())
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        metrics().sessions_open.dec();
    }
}

/// A request ended with `terminal` after `elapsed`.
pub fn request_finished(kind: RequestKind, terminal: &ServerMessage, elapsed: Duration) {
    let outcome = match terminal {
        ServerMessage::ErrorMessage(e) if e.error == crate::CANCELLED => "cancelled",
        ServerMessage::ErrorMessage(_) => "error",
        _ => "ok",
    };
    let kind = kind.label();
    let m = metrics();
    m.requests
        .get_or_create(&RequestLabels { kind, outcome })
        .inc();
    m.durations
        .get_or_create(&KindLabels { kind })
        .observe(elapsed.as_secs_f64());
}

/// `bytes` were queued for a client.
pub fn bytes_streamed(bytes: usize) {
    metrics().bytes_streamed.inc_by(bytes as u64);
}

/// An artifact upload ended.
pub fn artifact_finished(uploaded: bool) {
    let outcome = if uploaded { "uploaded" } else { "failed" };
    metrics()
        .artifacts
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// Counts a command killed on cancel or timeout, from what [`crate::command::run_command`]
/// returned.
pub fn observe_command(result: &Result<CommandOutcome, CommandError>) {
    let reason = match result {
        Err(CommandError::Cancelled) => "cancelled",
        Ok(outcome) if outcome.timed_out => "timeout",
        _ => return,
    };
    metrics()
        .commands_killed
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// Counts an event of a durable session.
pub fn durable_event(event: DurableEvent) {
    metrics()
        .durable
        .get_or_create(&EventLabels {
            event: event.label(),
        })
        .inc();
}

/// A durable session lost (`true`) or regained (`false`) its connection.
pub fn durable_detached(detached: bool) {
    let gauge = &metrics().durable_detached;
    if detached {
        gauge.inc();
    } else {
        gauge.dec();
    }
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &metrics().registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    text
}

/// `GET /metrics`: the text format, or 401 without the token when one is set.
pub(crate) async fn serve(
    State(state): State<UpgradeState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if !authorized(state.token.as_deref(), &headers, &uri) {
        return (StatusCode::UNAUTHORIZED, "missing or invalid token\n").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        render(),
    )
        .into_response()
}

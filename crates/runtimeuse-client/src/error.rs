//! The crate's error type.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

/// Everything that can go wrong in a call to the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime ended the request with an `error_message`.
    #[error("{}", runtime_error_text(error, metadata))]
    Runtime {
        /// The runtime's human-readable message.
        error: String,
        /// Whatever the runtime attached (`error_name`, causes, usage so far…).
        metadata: Map<String, Value>,
    },
    /// The call was aborted (see [`AbortHandle`](crate::AbortHandle)); the runtime's terminal
    /// message for it has been consumed.
    #[error("the request was cancelled")]
    Cancelled,
    /// A time limit of the call expired.
    #[error(
        "{kind} timeout of {after:?} expired (last message: {}, {message_count} messages received)",
        last_message_type.as_deref().unwrap_or("none")
    )]
    Timeout {
        /// Which limit expired.
        kind: TimeoutKind,
        /// The configured limit.
        after: Duration,
        /// `message_type` of the last message received from the runtime, if any.
        last_message_type: Option<String>,
        /// How many messages the runtime had sent for this call.
        message_count: u64,
    },
    /// The WebSocket connection could not be opened.
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The URL that was dialled, with its userinfo and query values masked (`***`), so
        /// that an auth token in the URL does not end up in logs.
        url: String,
        /// Why it failed (DNS, refused, TLS, HTTP 401, timeout…).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection closed (or failed) before the runtime sent a terminal message.
    #[error("connection to the runtime closed before the request finished: {reason}")]
    ConnectionClosed {
        /// What was observed (close frame, I/O error…).
        reason: String,
    },
    /// The runtime sent something that breaks the protocol (malformed frame, wrong terminal…).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The options or client configuration are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A user callback returned an error.
    #[error("callback failed: {0}")]
    Callback(String),
    /// A structured result could not be turned into the requested type.
    #[error("could not decode the structured output: {0}")]
    StructuredOutput(String),
}

impl Error {
    /// Whether this error is [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }

    /// The kind of timeout, when this error is [`Error::Timeout`].
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        match self {
            Self::Timeout { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

fn runtime_error_text(error: &str, metadata: &Map<String, Value>) -> String {
    if metadata.is_empty() {
        error.to_owned()
    } else {
        format!("{error}\nmetadata: {}", Value::Object(metadata.clone()))
    }
}

/// Which time limit an [`Error::Timeout`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// The call's overall `timeout`.
    Overall,
    /// `idle_timeout`: no message (heartbeats included) for that long.
    Idle,
    /// `assistant_callback_timeout`: the assistant message callback took too long.
    AssistantCallback,
    /// `artifact_upload_callback_timeout`: the artifact upload callback took too long.
    ArtifactCallback,
    /// The session close waited too long for `end_session_confirm_message`.
    EndSession,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Overall => "overall",
            Self::Idle => "idle",
            Self::AssistantCallback => "assistant callback",
            Self::ArtifactCallback => "artifact upload callback",
            Self::EndSession => "end of session",
        })
    }
}

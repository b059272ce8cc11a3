//! Wire types of the runtimeuse protocol.
//!
//! Every WebSocket frame is one JSON object with a `message_type` field. This crate turns
//! frames into typed messages and back; it does no I/O. Optional fields accept both a
//! missing key and JSON `null` as "absent", unknown fields are ignored, and a frame with an
//! unknown `message_type` parses to [`Incoming::Unknown`] so that callers can ignore it.
//!
//! ```
//! use runtimeuse_protocol::{parse_client_frame, ClientMessage, Incoming};
//!
//! let frame = r#"{"message_type":"cancel_message"}"#;
//! assert!(matches!(parse_client_frame(frame), Ok(Incoming::Message(ClientMessage::CancelMessage))));
//! ```

mod client;
mod parse;
pub mod resume;
#[cfg(feature = "schema")]
pub mod schema;
mod server;

pub use client::{
    ArtifactUploadResponse, ClientMessage, Command, CommandExecution, Downloadable, Invocation,
    RequestEnvelope,
};
pub use parse::{Incoming, ParseError, parse_client_frame, parse_server_frame, secrets_in_frame};
pub use server::{
    ArtifactUploadRequest, AssistantMessage, CommandExecutionResultMessage, CommandOutput,
    CommandResultItem, ErrorMessage, Heartbeat, OutputStream, ResultData, ResultMessage,
    ServerMessage,
};

/// The heartbeat phase sent while a request is running.
pub const PHASE_REQUEST_IN_FLIGHT: &str = "request_in_flight";

/// Deserialises a field where JSON `null` means the type's default (e.g. an empty list).
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

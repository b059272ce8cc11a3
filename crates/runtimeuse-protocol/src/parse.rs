//! Turning raw frames into typed messages, telling bad frames from unknown ones.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{ClientMessage, ServerMessage};

/// A frame that parsed: either a known message or one of an unknown type.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<M> {
    /// A message of a known type.
    Message(M),
    /// A well-formed object whose `message_type` this version does not know.
    Unknown {
        /// The unknown `message_type`.
        message_type: String,
    },
}

/// Why a frame could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame is not JSON at all.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The frame is JSON but not an object.
    #[error("message must be a JSON object")]
    NotAnObject,
    /// The object has no string `message_type`.
    #[error("message has no string field 'message_type'")]
    MissingMessageType,
    /// A known message with missing or mistyped fields.
    #[error("invalid {message_type}: {reason}")]
    InvalidMessage {
        /// The message's type.
        message_type: String,
        /// What serde reported (e.g. "missing field `model`").
        reason: String,
    },
}

fn parse_frame<M: DeserializeOwned>(
    frame: &str,
    known: &[&str],
) -> Result<Incoming<M>, ParseError> {
    let value: Value =
        serde_json::from_str(frame).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(ParseError::NotAnObject);
    };
    let Some(message_type) = object.get("message_type").and_then(Value::as_str) else {
        return Err(ParseError::MissingMessageType);
    };
    if !known.contains(&message_type) {
        return Ok(Incoming::Unknown {
            message_type: message_type.to_owned(),
        });
    }
    let message_type = message_type.to_owned();
    serde_json::from_value(value)
        .map(Incoming::Message)
        .map_err(|e| ParseError::InvalidMessage {
            message_type,
            reason: e.to_string(),
        })
}

/// Parses a frame sent by a client (what the runtime receives).
pub fn parse_client_frame(frame: &str) -> Result<Incoming<ClientMessage>, ParseError> {
    parse_frame(frame, &ClientMessage::KNOWN_TYPES)
}

/// Parses a frame sent by the runtime (what a client receives).
pub fn parse_server_frame(frame: &str) -> Result<Incoming<ServerMessage>, ParseError> {
    parse_frame(frame, &ServerMessage::KNOWN_TYPES)
}

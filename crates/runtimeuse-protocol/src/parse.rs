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

/// Deserialises one message body, reporting the path of the offending field.
fn body<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path.is_empty() || path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

fn decode_client(message_type: &str, value: Value) -> Option<Result<ClientMessage, String>> {
    Some(match message_type {
        "invocation_message" => body(value).map(ClientMessage::InvocationMessage),
        "command_execution_message" => body(value).map(ClientMessage::CommandExecutionMessage),
        "artifact_upload_response_message" => {
            body(value).map(ClientMessage::ArtifactUploadResponseMessage)
        }
        "cancel_message" => Ok(ClientMessage::CancelMessage),
        "end_session_message" => Ok(ClientMessage::EndSessionMessage),
        _ => return None,
    })
}

fn decode_server(message_type: &str, value: Value) -> Option<Result<ServerMessage, String>> {
    Some(match message_type {
        "result_message" => body(value).map(ServerMessage::ResultMessage),
        "command_execution_result_message" => {
            body(value).map(ServerMessage::CommandExecutionResultMessage)
        }
        "error_message" => body(value).map(ServerMessage::ErrorMessage),
        "assistant_message" => body(value).map(ServerMessage::AssistantMessage),
        "command_output_message" => body(value).map(ServerMessage::CommandOutputMessage),
        "heartbeat_message" => body(value).map(ServerMessage::HeartbeatMessage),
        "artifact_upload_request_message" => {
            body(value).map(ServerMessage::ArtifactUploadRequestMessage)
        }
        "end_session_confirm_message" => Ok(ServerMessage::EndSessionConfirmMessage),
        _ => return None,
    })
}

type Decoder<M> = fn(&str, Value) -> Option<Result<M, String>>;

fn parse_frame<M>(frame: &str, decode: Decoder<M>) -> Result<Incoming<M>, ParseError> {
    let value: Value =
        serde_json::from_str(frame).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(ParseError::NotAnObject);
    };
    let Some(message_type) = object.get("message_type").and_then(Value::as_str) else {
        return Err(ParseError::MissingMessageType);
    };
    let message_type = message_type.to_owned();
    match decode(&message_type, value) {
        None => Ok(Incoming::Unknown { message_type }),
        Some(Ok(message)) => Ok(Incoming::Message(message)),
        Some(Err(reason)) => Err(ParseError::InvalidMessage {
            message_type,
            reason,
        }),
    }
}

/// Parses a frame sent by a client (what the runtime receives).
pub fn parse_client_frame(frame: &str) -> Result<Incoming<ClientMessage>, ParseError> {
    parse_frame(frame, decode_client)
}

/// Parses a frame sent by the runtime (what a client receives).
pub fn parse_server_frame(frame: &str) -> Result<Incoming<ServerMessage>, ParseError> {
    parse_frame(frame, decode_server)
}

/// The values under `secrets_to_redact` in a frame, however malformed the rest is (a lone
/// string, strings among other values): a frame rejected for its shape must still not
/// have its secrets echoed back in the error or written to a log.
pub fn secrets_in_frame(frame: &str) -> Vec<String> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(frame) else {
        return Vec::new();
    };
    match object.get("secrets_to_redact") {
        Some(Value::String(secret)) => vec![secret.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_found_in_malformed_frames() {
        let frame = r#"{"message_type":"invocation_message","secrets_to_redact":"s3cr3t"}"#;
        assert_eq!(secrets_in_frame(frame), ["s3cr3t"]);
        let frame = r#"{"secrets_to_redact":["a", 1, "b"]}"#;
        assert_eq!(secrets_in_frame(frame), ["a", "b"]);
        assert!(secrets_in_frame("{broken").is_empty());
    }
}

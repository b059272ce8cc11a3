//! The lines of the handler protocol (version [`PROTOCOL_VERSION`]), one JSON object per
//! line, tagged by `type`. `docs/handler-protocol.md` is the prose contract and
//! `docs/handler-protocol.schema.json` the schema of every line.

use std::collections::BTreeMap;

use runtimeuse_protocol::ResultData;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this runtime speaks; sent in the `invocation` line.
pub const PROTOCOL_VERSION: u32 = 1;

/// A line the runtime writes to the handler's stdin.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToHandler {
    /// Always the first line: what to do.
    Invocation(Invocation),
    /// The outcome of a `command` line, matched by `id`.
    CommandResult(CommandResult),
    /// The request was cancelled: stop now (the process is stopped after a grace period).
    Cancel,
}

/// The invocation, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invocation {
    /// [`PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// System prompt.
    pub system_prompt: String,
    /// User prompt.
    pub user_prompt: String,
    /// Model name.
    pub model: String,
    /// The caller's bare JSON schema; `null` when a text result is wanted.
    pub output_schema: Option<Value>,
    /// The environment the handler runs with (also its process environment).
    pub env: BTreeMap<String, String>,
    /// Values that are redacted from everything the runtime sends to the client.
    pub secrets: Vec<String>,
    /// The caller's id for the request, if any.
    pub source_id: Option<String>,
    /// The handler's working directory, where commands run unless they name another.
    pub cwd: String,
}

/// What a command the handler asked for produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandResult {
    /// The `id` of the `command` line.
    pub id: String,
    /// Exit code (`128 + N` when killed by signal N, 124 when timed out); `null` when the
    /// command could not run at all (then `error` says why).
    pub exit_code: Option<i32>,
    /// Captured stdout (lossy UTF-8, redacted).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8, redacted).
    pub stderr: String,
    /// Whether stdout was cut at the capture limit.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the capture limit.
    pub stderr_truncated: bool,
    /// Whether the command was killed because its `timeout_ms` passed.
    pub timed_out: bool,
    /// Why the command could not run; absent when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A line the handler writes to its stdout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromHandler {
    /// Forwarded to the client as one `assistant_message`.
    AssistantMessage {
        /// The message's text blocks.
        text_blocks: Vec<String>,
    },
    /// Asks the runtime to run a shell command (streamed to the client, killed on cancel).
    Command(CommandRequest),
    /// The answer; ends the invocation.
    Result {
        /// `{"type":"text","text":…}` or `{"type":"structured_output","structured_output":…}`.
        data: ResultData,
        /// Anything to pass on in the result's metadata (usage, cost…).
        #[serde(default)]
        metadata: Option<Map<String, Value>>,
    },
    /// A failure; ends the invocation with this `error_message`.
    Error {
        /// Human-readable message.
        error: String,
        /// Anything to pass on in the error's metadata.
        #[serde(default)]
        metadata: Option<Map<String, Value>>,
    },
}

/// A shell command the handler wants run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommandRequest {
    /// Chosen by the handler; echoed in the `command_result`.
    pub id: String,
    /// Run with `/bin/sh -c`.
    pub command: String,
    /// Working directory (relative to the handler's `cwd`), created if missing.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Variables merged over the handler's environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Kill the command after this many milliseconds (exit code 124).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Encodes one line, newline included.
///
/// # Errors
///
/// Only if serde cannot serialise a value (not expected for these plain types).
pub fn encode(line: &ToHandler) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string(line)?;
    text.push('\n');
    Ok(text)
}

/// Decodes one line, with a message naming what is wrong.
///
/// # Errors
///
/// The line is not JSON, not an object with a known `type`, or lacks a required field.
pub fn decode(line: &str) -> Result<FromHandler, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn handler_lines_decode() {
        assert_eq!(
            decode(r#"{"type":"assistant_message","text_blocks":["a","b"]}"#).unwrap(),
            FromHandler::AssistantMessage {
                text_blocks: vec!["a".into(), "b".into()]
            }
        );
        let FromHandler::Command(command) =
            decode(r#"{"type":"command","id":"1","command":"ls","cwd":null}"#).unwrap()
        else {
            panic!("not a command")
        };
        assert_eq!(command.command, "ls");
        assert_eq!(command.cwd, None);
        assert_eq!(
            decode(r#"{"type":"result","data":{"type":"structured_output","structured_output":{"n":1}}}"#)
                .unwrap(),
            FromHandler::Result {
                data: ResultData::StructuredOutput {
                    structured_output: json!({"n": 1})
                },
                metadata: None
            }
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(decode("hello").unwrap_err().contains("expected"));
        assert!(decode(r#"{"type":"shout"}"#).unwrap_err().contains("shout"));
        assert!(
            decode(r#"{"type":"error"}"#)
                .unwrap_err()
                .contains("missing field `error`")
        );
    }

    #[test]
    fn runtime_lines_encode_with_their_type() {
        assert_eq!(
            encode(&ToHandler::Cancel).unwrap(),
            "{\"type\":\"cancel\"}\n"
        );
        let result = encode(&ToHandler::CommandResult(CommandResult {
            id: "7".into(),
            exit_code: Some(0),
            stdout: "x".into(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            timed_out: false,
            error: None,
        }))
        .unwrap();
        let value: Value = serde_json::from_str(&result).unwrap();
        assert_eq!(value["type"], "command_result");
        assert_eq!(value["id"], "7");
        assert!(value.get("error").is_none());
    }
}

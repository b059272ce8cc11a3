//! Messages sent by the runtime to a client.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The final answer of an invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResultData {
    /// Plain text (no output schema was given).
    Text {
        /// The agent's answer.
        text: String,
    },
    /// JSON matching the requested schema.
    StructuredOutput {
        /// The parsed answer.
        structured_output: Value,
    },
}

/// `result_message`: terminal message of an invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResultMessage {
    /// The answer.
    pub data: ResultData,
    /// Usage, durations, anything the agent reports.
    #[serde(default, deserialize_with = "crate::null_as_default")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Map<String, Value>>"))]
    pub metadata: Map<String, Value>,
}

/// One command's outcome in a command execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandResultItem {
    /// The command string as sent.
    pub command: String,
    /// Exit code; `128 + N` when killed by signal N.
    pub exit_code: i32,
    /// Captured stdout, up to the runtime's limit.
    #[serde(default)]
    pub stdout: Option<String>,
    /// Present and `true` when `stdout` was cut at the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_truncated: Option<bool>,
}

/// `command_execution_result_message`: terminal message of a command execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandExecutionResultMessage {
    /// One item per command that ran, the failing one included.
    pub results: Vec<CommandResultItem>,
}

/// `error_message`: terminal message of a failed request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorMessage {
    /// Human-readable description.
    pub error: String,
    /// `error_name`, causes, usage so far…
    #[serde(default, deserialize_with = "crate::null_as_default")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Map<String, Value>>"))]
    pub metadata: Map<String, Value>,
}

impl ErrorMessage {
    /// An error with empty metadata.
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            metadata: Map::new(),
        }
    }
}

/// `assistant_message`: text the agent produced while working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AssistantMessage {
    /// Text blocks of one model message.
    pub text_blocks: Vec<String>,
}

/// Which pipe a chunk of command output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// `command_output_message`: a chunk of a running command's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandOutput {
    /// The pipe.
    pub stream: OutputStream,
    /// The chunk.
    pub text: String,
    /// The command string that produced it.
    pub command: String,
}

/// `heartbeat_message`: sent periodically while a request runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Heartbeat {
    /// What the runtime is doing (`request_in_flight`).
    pub phase: String,
    /// Milliseconds since the request started.
    pub elapsed_ms: u64,
}

/// `artifact_upload_request_message`: the runtime asks where to upload a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ArtifactUploadRequest {
    /// Base name of the file.
    pub filename: String,
    /// Absolute path of the file.
    pub filepath: String,
}

/// Every message the runtime may send, tagged by `message_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Terminal: invocation result.
    ResultMessage(ResultMessage),
    /// Terminal: command execution result.
    CommandExecutionResultMessage(CommandExecutionResultMessage),
    /// Terminal: failure.
    ErrorMessage(ErrorMessage),
    /// Agent text.
    AssistantMessage(AssistantMessage),
    /// Command output chunk.
    CommandOutputMessage(CommandOutput),
    /// Liveness while a request runs.
    HeartbeatMessage(Heartbeat),
    /// Artifact handshake, first half.
    ArtifactUploadRequestMessage(ArtifactUploadRequest),
    /// Answer to `end_session_message`; the session closes after it.
    EndSessionConfirmMessage,
}

impl ServerMessage {
    /// Whether this message ends a request.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::ResultMessage(_) | Self::CommandExecutionResultMessage(_) | Self::ErrorMessage(_)
        )
    }

    /// The wire `message_type` of this message.
    pub fn message_type(&self) -> &'static str {
        match self {
            Self::ResultMessage(_) => "result_message",
            Self::CommandExecutionResultMessage(_) => "command_execution_result_message",
            Self::ErrorMessage(_) => "error_message",
            Self::AssistantMessage(_) => "assistant_message",
            Self::CommandOutputMessage(_) => "command_output_message",
            Self::HeartbeatMessage(_) => "heartbeat_message",
            Self::ArtifactUploadRequestMessage(_) => "artifact_upload_request_message",
            Self::EndSessionConfirmMessage => "end_session_confirm_message",
        }
    }

    /// Shorthand for an `error_message` with empty metadata.
    pub fn error(error: impl Into<String>) -> Self {
        Self::ErrorMessage(ErrorMessage::new(error))
    }
}

//! Messages sent by a client to the runtime.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::null_as_default;

/// A shell command to run inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Command {
    /// The command line, run with `/bin/sh -c`.
    pub command: String,
    /// Working directory; created if missing. `None` means the runtime's own.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Environment variables merged over the runtime's environment.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
}

impl Command {
    /// A command with no `cwd` and no extra environment.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            cwd: None,
            env: None,
        }
    }
}

/// A file to download into the sandbox before the work starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Downloadable {
    /// HTTP(S) URL fetched with GET.
    pub download_url: String,
    /// Directory the file lands in (created if missing); `.zip` files are extracted there.
    pub working_dir: String,
}

/// `invocation_message`: run the agent once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Invocation {
    /// System prompt for the agent.
    pub system_prompt: String,
    /// The user's prompt.
    pub user_prompt: String,
    /// Model name passed to the agent.
    pub model: String,
    /// Caller-defined id used in logs.
    #[serde(default)]
    pub source_id: Option<String>,
    /// Environment for the agent, merged over the runtime's.
    #[serde(default)]
    pub agent_env: Option<BTreeMap<String, String>>,
    /// Values replaced by `[REDACTED]` in everything the runtime sends or logs.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub secrets_to_redact: Vec<String>,
    /// A JSON string: `{"type":"json_schema","schema":{...}}` or a bare JSON schema.
    #[serde(default)]
    pub output_format_json_schema_str: Option<String>,
    /// Directories watched for artifacts for the rest of the session.
    #[serde(default)]
    pub artifacts_dirs: Option<Vec<String>>,
    /// Deprecated single-directory form of `artifacts_dirs`.
    #[serde(default)]
    pub artifacts_dir: Option<String>,
    /// Gitignore-syntax rules applied to every directory of this message.
    #[serde(default)]
    pub artifacts_ignore_content: Option<String>,
    /// Commands run before the agent; a failure ends the request.
    #[serde(default)]
    pub pre_agent_invocation_commands: Option<Vec<Command>>,
    /// Commands run after the agent; a failure ends the request.
    #[serde(default)]
    pub post_agent_invocation_commands: Option<Vec<Command>>,
    /// Files downloaded before anything else.
    #[serde(default)]
    pub pre_agent_downloadables: Option<Vec<Downloadable>>,
}

/// `command_execution_message`: run shell commands without the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommandExecution {
    /// Commands run in order, stopping after the first non-zero exit.
    pub commands: Vec<Command>,
    /// Caller-defined id used in logs.
    #[serde(default)]
    pub source_id: Option<String>,
    /// Values replaced by `[REDACTED]` in everything the runtime sends or logs.
    #[serde(default, deserialize_with = "null_as_default")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<Vec<String>>"))]
    pub secrets_to_redact: Vec<String>,
    /// Directories watched for artifacts for the rest of the session.
    #[serde(default)]
    pub artifacts_dirs: Option<Vec<String>>,
    /// Deprecated single-directory form of `artifacts_dirs`.
    #[serde(default)]
    pub artifacts_dir: Option<String>,
    /// Gitignore-syntax rules applied to every directory of this message.
    #[serde(default)]
    pub artifacts_ignore_content: Option<String>,
    /// Files downloaded before the commands run.
    #[serde(default)]
    pub pre_execution_downloadables: Option<Vec<Downloadable>>,
}

/// `artifact_upload_response_message`: where to upload a file the runtime announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ArtifactUploadResponse {
    /// Base name, as in the request.
    pub filename: String,
    /// Absolute path, as in the request.
    pub filepath: String,
    /// URL the runtime `PUT`s the file to.
    pub presigned_url: String,
    /// `Content-Type` header of the upload.
    pub content_type: String,
}

/// Every message a client may send, tagged by `message_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Run the agent.
    InvocationMessage(Invocation),
    /// Run commands only.
    CommandExecutionMessage(CommandExecution),
    /// Answer to an artifact upload request.
    ArtifactUploadResponseMessage(ArtifactUploadResponse),
    /// Abort the request in flight.
    CancelMessage,
    /// Drain artifacts, confirm and close.
    EndSessionMessage,
}

/// Merges the deprecated `artifacts_dir` into `artifacts_dirs`, keeping order, no duplicates.
fn merged_dirs(dirs: Option<&Vec<String>>, single: Option<&String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for dir in dirs.into_iter().flatten().chain(single) {
        if !dir.is_empty() && !out.contains(dir) {
            out.push(dir.clone());
        }
    }
    out
}

/// What every request message carries besides its work: how it is logged, what is
/// redacted, which directories are watched for artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestEnvelope {
    /// Caller-defined id, for logs.
    pub source_id: Option<String>,
    /// Values to redact.
    pub secrets_to_redact: Vec<String>,
    /// `artifacts_dirs` plus the deprecated `artifacts_dir`, in order, without duplicates.
    pub artifacts_dirs: Vec<String>,
    /// Gitignore-syntax rules for those directories.
    pub artifacts_ignore_content: Option<String>,
}

impl Invocation {
    /// All artifact directories of this message (`artifacts_dirs` plus `artifacts_dir`).
    pub fn all_artifacts_dirs(&self) -> Vec<String> {
        merged_dirs(self.artifacts_dirs.as_ref(), self.artifacts_dir.as_ref())
    }

    /// The request-wide settings of this message.
    pub fn envelope(&self) -> RequestEnvelope {
        RequestEnvelope {
            source_id: self.source_id.clone(),
            secrets_to_redact: self.secrets_to_redact.clone(),
            artifacts_dirs: self.all_artifacts_dirs(),
            artifacts_ignore_content: self.artifacts_ignore_content.clone(),
        }
    }
}

impl CommandExecution {
    /// All artifact directories of this message (`artifacts_dirs` plus `artifacts_dir`).
    pub fn all_artifacts_dirs(&self) -> Vec<String> {
        merged_dirs(self.artifacts_dirs.as_ref(), self.artifacts_dir.as_ref())
    }

    /// The request-wide settings of this message.
    pub fn envelope(&self) -> RequestEnvelope {
        RequestEnvelope {
            source_id: self.source_id.clone(),
            secrets_to_redact: self.secrets_to_redact.clone(),
            artifacts_dirs: self.all_artifacts_dirs(),
            artifacts_ignore_content: self.artifacts_ignore_content.clone(),
        }
    }
}

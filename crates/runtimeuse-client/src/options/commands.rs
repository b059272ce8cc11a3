//! Options of [`RuntimeUseClient::execute_commands`](crate::RuntimeUseClient::execute_commands).

use std::fmt;
use std::time::Duration;

use runtimeuse_protocol::{ClientMessage, Command, CommandExecution, Downloadable};

use super::{RequestSpec, callback_set, common_setters, non_empty, validate_artifact_pairing};
use crate::Error;
use crate::callbacks::{OnArtifactUploadRequest, OnAssistantMessage, OnCommandOutput};

/// Options of one command execution (shell commands, no agent).
///
/// Fields mirror the Python client's `ExecuteCommandsOptions`; chainable setters exist for
/// each.
///
/// ```
/// use runtimeuse_client::ExecuteCommandsOptions;
///
/// let options = ExecuteCommandsOptions::new().on_command_output(|chunk| async move {
///     print!("{}", chunk.text);
/// });
/// # let _ = options;
/// ```
#[derive(Clone, Default)]
pub struct ExecuteCommandsOptions {
    /// Caller-defined id used in the runtime's logs.
    pub source_id: Option<String>,
    /// Values the runtime replaces by `[REDACTED]`.
    pub secrets_to_redact: Vec<String>,
    /// Directories watched for artifacts; needs `on_artifact_upload_request`.
    pub artifacts_dirs: Vec<String>,
    /// Gitignore-syntax rules for every directory of `artifacts_dirs`.
    pub artifacts_ignore_content: Option<String>,
    /// Files downloaded into the sandbox before the commands run.
    pub pre_execution_downloadables: Vec<Downloadable>,
    /// Called for each assistant message (the runtime sends none for commands today).
    pub on_assistant_message: Option<OnAssistantMessage>,
    /// Called for each chunk of command output.
    pub on_command_output: Option<OnCommandOutput>,
    /// Answers artifact upload requests.
    pub on_artifact_upload_request: Option<OnArtifactUploadRequest>,
    /// Overall time limit; `None` means none.
    pub timeout: Option<Duration>,
    /// Longest wait for the next runtime message (heartbeats count); time spent in this
    /// call's callbacks, and reconnecting a resumable client, is not counted.
    pub idle_timeout: Option<Duration>,
    /// Longest time one assistant message callback may take.
    pub assistant_callback_timeout: Option<Duration>,
    /// Longest time one artifact upload callback may take. With an event stream, also how
    /// long the call waits, after the runtime's terminal, for the answers to the upload
    /// requests it handed out (30 s when `None`).
    pub artifact_upload_callback_timeout: Option<Duration>,
}

impl ExecuteCommandsOptions {
    /// Options with everything unset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds files downloaded before the commands run.
    #[must_use]
    pub fn pre_execution_downloadables(
        mut self,
        downloadables: impl IntoIterator<Item = Downloadable>,
    ) -> Self {
        self.pre_execution_downloadables.extend(downloadables);
        self
    }

    common_setters!();

    /// Checks that artifact directories and the upload callback come together.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when only one of them is set.
    pub fn validate(&self) -> Result<(), Error> {
        validate_artifact_pairing(
            &self.artifacts_dirs,
            self.on_artifact_upload_request.is_some(),
        )
    }

    /// The `command_execution_message` these options produce for `commands`.
    pub fn to_message(&self, commands: Vec<Command>) -> ClientMessage {
        ClientMessage::CommandExecutionMessage(CommandExecution {
            commands,
            source_id: self.source_id.clone(),
            secrets_to_redact: self.secrets_to_redact.clone(),
            artifacts_dirs: non_empty(&self.artifacts_dirs),
            artifacts_dir: None,
            artifacts_ignore_content: self.artifacts_ignore_content.clone(),
            pre_execution_downloadables: non_empty(&self.pre_execution_downloadables),
        })
    }

    pub(crate) fn spec(&self, commands: Vec<Command>) -> RequestSpec {
        RequestSpec {
            message: self.to_message(commands),
            callbacks: self.callbacks(),
            limits: self.limits(),
            source_id: self.source_id.clone(),
        }
    }
}

impl fmt::Debug for ExecuteCommandsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecuteCommandsOptions")
            .field("source_id", &self.source_id)
            .field("secrets_to_redact", &self.secrets_to_redact.len())
            .field("artifacts_dirs", &self.artifacts_dirs)
            .field("artifacts_ignore_content", &self.artifacts_ignore_content)
            .field(
                "pre_execution_downloadables",
                &self.pre_execution_downloadables,
            )
            .field(
                "on_assistant_message",
                &callback_set(self.on_assistant_message.as_ref()),
            )
            .field(
                "on_command_output",
                &callback_set(self.on_command_output.as_ref()),
            )
            .field(
                "on_artifact_upload_request",
                &callback_set(self.on_artifact_upload_request.as_ref()),
            )
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field(
                "assistant_callback_timeout",
                &self.assistant_callback_timeout,
            )
            .field(
                "artifact_upload_callback_timeout",
                &self.artifact_upload_callback_timeout,
            )
            .finish()
    }
}

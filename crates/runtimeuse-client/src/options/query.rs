//! Options of [`RuntimeUseClient::query`](crate::RuntimeUseClient::query).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use runtimeuse_protocol::{ClientMessage, Command, Downloadable, Invocation};

use super::{RequestSpec, callback_set, common_setters, non_empty, validate_artifact_pairing};
use crate::Error;
use crate::callbacks::{OnArtifactUploadRequest, OnAssistantMessage, OnCommandOutput};

/// Options of one agent invocation: what to send and how to handle what comes back.
///
/// Fields mirror the Python client's `QueryOptions`; chainable setters exist for each.
///
/// ```
/// use std::time::Duration;
/// use runtimeuse_client::QueryOptions;
///
/// let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1")
///     .timeout(Duration::from_secs(300))
///     .on_assistant_message(|msg| async move {
///         for block in msg.text_blocks {
///             println!("[assistant] {block}");
///         }
///     });
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct QueryOptions {
    /// System prompt of the agent.
    pub system_prompt: String,
    /// Model identifier passed to the agent (e.g. `gpt-4.1`).
    pub model: String,
    /// JSON string of the wanted output format, usually
    /// `{"type": "json_schema", "schema": {...}}`; the result is then structured output.
    pub output_format_json_schema_str: Option<String>,
    /// Caller-defined id used in the runtime's logs.
    pub source_id: Option<String>,
    /// Environment variables for the agent, merged over the runtime's.
    pub agent_env: BTreeMap<String, String>,
    /// Values the runtime replaces by `[REDACTED]`.
    pub secrets_to_redact: Vec<String>,
    /// Directories watched for artifacts; needs `on_artifact_upload_request`.
    pub artifacts_dirs: Vec<String>,
    /// Gitignore-syntax rules for every directory of `artifacts_dirs`.
    pub artifacts_ignore_content: Option<String>,
    /// Commands run before the agent; a failure ends the call with a runtime error.
    pub pre_agent_invocation_commands: Vec<Command>,
    /// Commands run after the agent; a failure ends the call with a runtime error.
    pub post_agent_invocation_commands: Vec<Command>,
    /// Files downloaded into the sandbox before anything else.
    pub pre_agent_downloadables: Vec<Downloadable>,
    /// Called for each assistant message.
    pub on_assistant_message: Option<OnAssistantMessage>,
    /// Called for each chunk of pre/post command output.
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

impl QueryOptions {
    /// Options with a system prompt and a model, everything else unset.
    pub fn new(system_prompt: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            system_prompt: system_prompt.into(),
            model: model.into(),
            output_format_json_schema_str: None,
            source_id: None,
            agent_env: BTreeMap::new(),
            secrets_to_redact: Vec::new(),
            artifacts_dirs: Vec::new(),
            artifacts_ignore_content: None,
            pre_agent_invocation_commands: Vec::new(),
            post_agent_invocation_commands: Vec::new(),
            pre_agent_downloadables: Vec::new(),
            on_assistant_message: None,
            on_command_output: None,
            on_artifact_upload_request: None,
            timeout: None,
            idle_timeout: None,
            assistant_callback_timeout: None,
            artifact_upload_callback_timeout: None,
        }
    }

    /// Sets the output format as a JSON string (`{"type":"json_schema","schema":{...}}`
    /// or a bare JSON schema).
    #[must_use]
    pub fn output_format_json_schema_str(mut self, schema: impl Into<String>) -> Self {
        self.output_format_json_schema_str = Some(schema.into());
        self
    }

    /// Sets the output format from a JSON schema value, wrapping it as
    /// `{"type": "json_schema", "schema": <schema>}`.
    #[must_use]
    pub fn output_schema(mut self, schema: serde_json::Value) -> Self {
        let wrapped = serde_json::json!({ "type": "json_schema", "schema": schema });
        self.output_format_json_schema_str = Some(wrapped.to_string());
        self
    }

    /// Adds one environment variable for the agent.
    #[must_use]
    pub fn agent_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.agent_env.insert(key.into(), value.into());
        self
    }

    /// Adds commands run before the agent.
    #[must_use]
    pub fn pre_agent_invocation_commands(
        mut self,
        commands: impl IntoIterator<Item = Command>,
    ) -> Self {
        self.pre_agent_invocation_commands.extend(commands);
        self
    }

    /// Adds commands run after the agent.
    #[must_use]
    pub fn post_agent_invocation_commands(
        mut self,
        commands: impl IntoIterator<Item = Command>,
    ) -> Self {
        self.post_agent_invocation_commands.extend(commands);
        self
    }

    /// Adds files downloaded before the agent runs.
    #[must_use]
    pub fn pre_agent_downloadables(
        mut self,
        downloadables: impl IntoIterator<Item = Downloadable>,
    ) -> Self {
        self.pre_agent_downloadables.extend(downloadables);
        self
    }

    common_setters!();

    /// Checks what the runtime would refuse or what is surely a mistake: artifact
    /// directories without an upload callback (or the reverse), an output format that
    /// is not JSON.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] describing the problem.
    pub fn validate(&self) -> Result<(), Error> {
        validate_artifact_pairing(
            &self.artifacts_dirs,
            self.on_artifact_upload_request.is_some(),
        )?;
        self.check_format()
    }

    /// The part of [`Self::validate`] that also applies to event streams (which answer
    /// upload requests through events, not callbacks).
    pub(crate) fn check_format(&self) -> Result<(), Error> {
        if let Some(schema) = &self.output_format_json_schema_str {
            serde_json::from_str::<serde_json::Value>(schema).map_err(|e| {
                Error::InvalidOptions(format!("output_format_json_schema_str is not JSON: {e}"))
            })?;
        }
        Ok(())
    }

    /// The `invocation_message` these options produce for `prompt`.
    pub fn to_message(&self, prompt: &str) -> ClientMessage {
        ClientMessage::InvocationMessage(Invocation {
            system_prompt: self.system_prompt.clone(),
            user_prompt: prompt.to_owned(),
            model: self.model.clone(),
            source_id: self.source_id.clone(),
            agent_env: non_empty(&self.agent_env),
            secrets_to_redact: self.secrets_to_redact.clone(),
            output_format_json_schema_str: self.output_format_json_schema_str.clone(),
            artifacts_dirs: non_empty(&self.artifacts_dirs),
            artifacts_dir: None,
            artifacts_ignore_content: self.artifacts_ignore_content.clone(),
            pre_agent_invocation_commands: non_empty(&self.pre_agent_invocation_commands),
            post_agent_invocation_commands: non_empty(&self.post_agent_invocation_commands),
            pre_agent_downloadables: non_empty(&self.pre_agent_downloadables),
        })
    }

    pub(crate) fn spec(&self, prompt: &str) -> RequestSpec {
        RequestSpec {
            message: self.to_message(prompt),
            callbacks: self.callbacks(),
            limits: self.limits(),
            source_id: self.source_id.clone(),
        }
    }
}

impl fmt::Debug for QueryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryOptions")
            .field("system_prompt", &self.system_prompt)
            .field("model", &self.model)
            .field(
                "output_format_json_schema_str",
                &self.output_format_json_schema_str,
            )
            .field("source_id", &self.source_id)
            .field("agent_env_keys", &self.agent_env.keys().collect::<Vec<_>>())
            .field("secrets_to_redact", &self.secrets_to_redact.len())
            .field("artifacts_dirs", &self.artifacts_dirs)
            .field("artifacts_ignore_content", &self.artifacts_ignore_content)
            .field(
                "pre_agent_invocation_commands",
                &self.pre_agent_invocation_commands,
            )
            .field(
                "post_agent_invocation_commands",
                &self.post_agent_invocation_commands,
            )
            .field("pre_agent_downloadables", &self.pre_agent_downloadables)
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

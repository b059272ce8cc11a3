//! The agent seam: what every agent (echo, OpenAI, Claude, external) implements.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use runtimeuse_protocol::{AssistantMessage, Command, ResultData, ServerMessage};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::artifacts::Artifacts;
use crate::command::{CommandError, CommandOptions, CommandOutcome, run_command};
use crate::outbox::Outbox;
use crate::redact::Redactor;

/// Everything an agent needs to know about one invocation.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// System prompt.
    pub system_prompt: String,
    /// User prompt.
    pub user_prompt: String,
    /// Model name.
    pub model: String,
    /// The caller's JSON schema, already unwrapped from `{"type":"json_schema","schema":…}`.
    pub output_schema: Option<Value>,
    /// The runtime's environment with `agent_env` merged over it: that of
    /// [`Environment::inherited`](crate::process::Environment::inherited) (no `RUNTIMEUSE_*`
    /// settings, no withheld credentials, no variable that is not UTF-8).
    pub env: BTreeMap<String, String>,
    /// The request's secrets.
    pub secrets: Redactor,
    /// Caller-defined id, for logs.
    pub source_id: Option<String>,
}

/// What a successful agent run returns.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutput {
    /// Text or structured output.
    pub data: ResultData,
    /// Usage, durations, turns…
    pub metadata: Map<String, Value>,
}

/// A failed agent run: becomes the request's `error_message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    /// Human-readable message.
    pub message: String,
    /// Anything useful for the caller (error name, usage so far…).
    pub metadata: Map<String, Value>,
}

impl AgentError {
    /// An error with empty metadata.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            metadata: Map::new(),
        }
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_owned(), value.into());
        self
    }
}

/// What an agent may do while it runs: talk to the client, run commands, see artifacts.
#[derive(Clone, Debug)]
pub struct AgentContext {
    cancel: CancellationToken,
    outbox: Outbox,
    commands: CommandOptions,
    artifacts: Artifacts,
}

impl AgentContext {
    /// Builds a context (the session does this for every invocation).
    pub fn new(
        cancel: CancellationToken,
        outbox: Outbox,
        commands: CommandOptions,
        artifacts: Artifacts,
    ) -> Self {
        Self {
            cancel,
            outbox,
            commands,
            artifacts,
        }
    }

    /// Cancelled when the request is cancelled, the client leaves or the runtime stops.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Sends one `assistant_message` (redacted on the way out).
    pub async fn assistant_message(&self, text_blocks: Vec<String>) {
        // A closed outbox means the client left; the request is being cancelled anyway.
        let _ = self
            .outbox
            .send(ServerMessage::AssistantMessage(AssistantMessage {
                text_blocks,
            }))
            .await;
    }

    /// Runs a shell command in its own process group, streaming its output to the client.
    pub async fn run_command(&self, command: &Command) -> Result<CommandOutcome, CommandError> {
        self.run_command_with(command, &self.commands).await
    }

    /// Like [`run_command`](Self::run_command) with other options (a per-call timeout, say),
    /// still streamed to the client and killed when the request is cancelled.
    pub async fn run_command_with(
        &self,
        command: &Command,
        options: &CommandOptions,
    ) -> Result<CommandOutcome, CommandError> {
        let result = run_command(command, options, &self.outbox, &self.cancel).await;
        // Agent-run commands count in the kill metrics like the request's own commands.
        crate::metrics::observe_command(&result);
        result
    }

    /// Adds `secret` to what is redacted from every message sent to the client (and from
    /// the logs) from now on: for credentials the agent finds itself, such as an API key
    /// taken from the runtime's environment, which the caller could not list.
    pub fn add_secret(&self, secret: &str) {
        let secrets = Redactor::new([secret]);
        self.outbox.add_secrets(&secrets);
        crate::logging::register_secrets(&secrets);
    }

    /// The command options (limits, default directory) in force for this request.
    pub fn command_options(&self) -> &CommandOptions {
        &self.commands
    }

    /// Waits until the current version of `path` has been uploaded as an artifact (the
    /// client answered and the `PUT` succeeded), or `timeout` passes. Returns whether it was.
    pub async fn wait_for_artifact_upload(&self, path: &Path, timeout: Duration) -> bool {
        tokio::select! {
            uploaded = self.artifacts.wait_uploaded(path, timeout) => uploaded,
            () = self.cancel.cancelled() => false,
        }
    }
}

/// An agent: turns one invocation into a result.
///
/// The session calls [`run`](Agent::run) once per invocation, after downloads and
/// pre-agent commands and before post-agent commands; many sessions may call it at once.
/// What an agent must honour:
///
/// - **One answer.** Return `Ok` with text, or with structured output when
///   [`AgentRequest::output_schema`] is set (the session validates it against the caller's
///   schema and turns a mismatch, or text where a schema was asked for, into an
///   `error_message`); or return `Err(AgentError)`, which becomes the request's one
///   `error_message` with its metadata. Never send terminal messages yourself.
/// - **Cancellation.** When [`AgentContext::cancel_token`] fires (cancel, client gone,
///   shutdown) return promptly; the result is then ignored and the client gets
///   `"Request cancelled"`. An agent still running after the session's
///   `agent_cancel_grace` is dropped, so cleanup must not rely on running to the end.
/// - **No processes left behind.** Run commands through [`AgentContext::run_command`]
///   (own process group, streamed, redacted, tree killed on cancel and on drop); a
///   process started otherwise must be stopped, with its whole tree, on cancel and on drop.
/// - **Secrets.** Everything sent through the context is redacted with the request's
///   secrets; credentials the agent finds itself (say, an API key from the environment)
///   must be registered with [`AgentContext::add_secret`] before they can reach the client.
/// - **Environment.** Use [`AgentRequest::env`] (the runtime's environment with
///   `agent_env` merged over it) for anything the agent starts, not the process's own.
/// - **Progress.** Send assistant text with [`AgentContext::assistant_message`], in order;
///   the runtime adds heartbeats by itself.
///
/// A runnable example: `crates/runtimeuse-server/examples/custom_agent.rs`
/// (`cargo run -p runtimeuse-server --example custom_agent`).
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Short name (`echo`, `openai`, `claude`), shown by `/health`.
    fn name(&self) -> &str;

    /// Runs the invocation.
    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError>;
}

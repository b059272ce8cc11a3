//! Running the shell commands a handler asks for, through the agent context: streamed to
//! the client, redacted, killed when the request is cancelled.

use std::collections::BTreeMap;
use std::time::Duration;

use runtimeuse_protocol::Command;
use runtimeuse_server::agent::AgentContext;
use runtimeuse_server::command::CommandError;

use super::protocol::{CommandRequest, CommandResult};

/// Runs `request` with the handler's environment (`base_env`, the request's `env` merged
/// over it) and describes its outcome as the `command_result` line; `None` when the
/// request was cancelled (the handler is being stopped anyway).
pub(super) async fn run_requested(
    ctx: &AgentContext,
    base_env: &BTreeMap<String, String>,
    request: CommandRequest,
) -> Option<CommandResult> {
    let mut options = ctx.command_options().clone();
    if let Some(ms) = request.timeout_ms {
        options.timeout = Some(Duration::from_millis(ms));
    }
    let mut env = base_env.clone();
    env.extend(request.env.unwrap_or_default());
    let mut command = Command::new(request.command);
    command.cwd = request.cwd;
    command.env = Some(env);
    tracing::debug!(id = %request.id, command = %command.command, "handler command");
    match ctx.run_command_with(&command, &options).await {
        Ok(outcome) => Some(CommandResult {
            id: request.id,
            exit_code: Some(outcome.exit_code),
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            stdout_truncated: outcome.stdout_truncated,
            stderr_truncated: outcome.stderr_truncated,
            timed_out: outcome.timed_out,
            error: None,
        }),
        Err(CommandError::Cancelled) => None,
        Err(error) => Some(CommandResult {
            id: request.id,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            timed_out: false,
            error: Some(error.to_string()),
        }),
    }
}

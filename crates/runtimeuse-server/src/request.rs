//! One request's lifecycle: an invocation or a command execution, start to terminal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtimeuse_protocol::{
    Command, CommandExecution, CommandExecutionResultMessage, CommandResultItem, Downloadable,
    ErrorMessage, Heartbeat, Invocation, PHASE_REQUEST_IN_FLIGHT, ResultData, ResultMessage,
    ServerMessage,
};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::agent::{AgentContext, AgentOutput, AgentRequest};
use crate::artifacts::Artifacts;
use crate::command::{CommandError, CommandOptions, run_command};
use crate::download::{DownloadError, download_with};
use crate::outbox::Outbox;
use crate::process::Environment;
use crate::result_size::fit_results;
use crate::schema::{parse_output_schema, validate};
use crate::session::SessionConfig;

/// The `error` text of a cancelled request.
pub const CANCELLED: &str = "Request cancelled";

/// Everything a running request can reach.
#[derive(Clone)]
pub(crate) struct RequestContext {
    pub config: Arc<SessionConfig>,
    pub outbox: Outbox,
    pub artifacts: Artifacts,
    pub cancel: CancellationToken,
}

/// Why a request stopped early; turned into its terminal `error_message`.
enum Failure {
    Cancelled,
    Error(ErrorMessage),
}

impl From<ErrorMessage> for Failure {
    fn from(e: ErrorMessage) -> Self {
        Failure::Error(e)
    }
}

impl From<DownloadError> for Failure {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::Cancelled => Failure::Cancelled,
            other => Failure::Error(named_error(other.to_string(), "DownloadError")),
        }
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Cancelled => Failure::Cancelled,
            other => Failure::Error(named_error(other.to_string(), "CommandError")),
        }
    }
}

fn named_error(error: String, name: &str) -> ErrorMessage {
    let mut metadata = Map::new();
    metadata.insert("error_name".into(), Value::String(name.into()));
    ErrorMessage { error, metadata }
}

/// Runs `work`, then waits (bounded) for artifact handshakes, sending heartbeats all the
/// while; returns the request's terminal.
async fn with_heartbeats<F>(ctx: &RequestContext, work: F) -> ServerMessage
where
    F: Future<Output = Result<ServerMessage, Failure>>,
{
    let started = Instant::now();
    let interval = ctx.config.heartbeat_interval.max(Duration::from_millis(10));
    let work = async {
        let outcome = work.await;
        // Some clients (the Python one) stop answering upload requests once they hold the
        // result, so the terminal waits, bounded, for the answers to what was announced.
        let hold = ctx.config.artifacts.result_hold;
        tokio::select! {
            _ = ctx.artifacts.wait_settled(hold) => {}
            () = ctx.cancel.cancelled() => {}
        }
        outcome
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            _ = ticker.tick() => {
                let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let _ = ctx.outbox.send(ServerMessage::HeartbeatMessage(Heartbeat {
                    phase: PHASE_REQUEST_IN_FLIGHT.into(),
                    elapsed_ms,
                })).await;
            }
        }
    };
    // A request whose cancel arrived ends as cancelled, whatever its work returned.
    if ctx.cancel.is_cancelled() {
        return ServerMessage::error(CANCELLED);
    }
    match outcome {
        Ok(terminal) => terminal,
        Err(Failure::Cancelled) => ServerMessage::error(CANCELLED),
        Err(Failure::Error(e)) => ServerMessage::ErrorMessage(e),
    }
}

async fn download_all(
    ctx: &RequestContext,
    items: Option<&Vec<Downloadable>>,
) -> Result<(), Failure> {
    for item in items.into_iter().flatten() {
        let path = download_with(
            &ctx.config.http,
            item,
            &ctx.cancel,
            &ctx.config.unzip_limits,
        )
        .await?;
        info!(path = %path.display(), "downloaded");
    }
    Ok(())
}

async fn run_phase_commands(
    ctx: &RequestContext,
    commands: Option<&Vec<Command>>,
    phase: &str,
) -> Result<(), Failure> {
    // Only the exit code of pre/post commands matters; their output is streamed.
    let options = CommandOptions {
        capture_limit: 0,
        ..ctx.config.commands.clone()
    };
    for command in commands.into_iter().flatten() {
        let result = run_command(command, &options, &ctx.outbox, &ctx.cancel).await;
        crate::metrics::observe_command(&result);
        let outcome = result?;
        if outcome.exit_code != 0 {
            let mut error = named_error(
                format!(
                    "{phase} command failed with exit code: {}",
                    outcome.exit_code
                ),
                "CommandFailed",
            );
            error
                .metadata
                .insert("command".into(), Value::String(command.command.clone()));
            error
                .metadata
                .insert("exit_code".into(), Value::from(outcome.exit_code));
            return Err(error.into());
        }
    }
    Ok(())
}

/// Runs an invocation to its terminal message.
pub(crate) async fn run_invocation(ctx: RequestContext, invocation: Invocation) -> ServerMessage {
    with_heartbeats(&ctx, invocation_steps(&ctx, invocation)).await
}

async fn invocation_steps(ctx: &RequestContext, inv: Invocation) -> Result<ServerMessage, Failure> {
    // A bad schema fails the request before anything runs.
    let schema = inv
        .output_format_json_schema_str
        .as_deref()
        .map(parse_output_schema)
        .transpose()
        .map_err(|e| named_error(e.to_string(), "InvalidOutputSchema"))?;

    download_all(ctx, inv.pre_agent_downloadables.as_ref()).await?;
    run_phase_commands(ctx, inv.pre_agent_invocation_commands.as_ref(), "pre-agent").await?;

    // The runtime's environment minus its own settings and withheld credentials; a
    // variable that is not UTF-8 is left out here (it cannot travel as JSON), never a
    // reason to fail.
    let mut env: BTreeMap<String, String> = Environment::inherited().to_utf8();
    env.extend(inv.agent_env.clone().unwrap_or_default());
    let request = AgentRequest {
        system_prompt: inv.system_prompt.clone(),
        user_prompt: inv.user_prompt.clone(),
        model: inv.model.clone(),
        output_schema: schema.clone(),
        env,
        // Every secret of the session (this request's included), already compiled.
        secrets: ctx.outbox.redactor(),
        source_id: inv.source_id.clone(),
    };
    let agent_ctx = AgentContext::new(
        ctx.cancel.clone(),
        ctx.outbox.clone(),
        ctx.config.commands.clone(),
        ctx.artifacts.clone(),
    );
    let output = run_agent(ctx, request, agent_ctx).await?;
    let data = conform_output(output.data, schema.as_ref())?;

    run_phase_commands(
        ctx,
        inv.post_agent_invocation_commands.as_ref(),
        "post-agent",
    )
    .await?;
    Ok(ServerMessage::ResultMessage(ResultMessage {
        data,
        metadata: output.metadata,
    }))
}

/// Runs the agent; a cancelled agent gets a grace period to wind down before it is dropped.
async fn run_agent(
    ctx: &RequestContext,
    request: AgentRequest,
    agent_ctx: AgentContext,
) -> Result<AgentOutput, Failure> {
    let agent = ctx.config.agent.clone();
    let run = agent.run(request, agent_ctx);
    tokio::pin!(run);
    let result = tokio::select! {
        result = &mut run => result,
        () = ctx.cancel.cancelled() => {
            match tokio::time::timeout(ctx.config.agent_cancel_grace, &mut run).await {
                Ok(result) => result,
                Err(_) => {
                    warn!(agent = agent.name(), "agent ignored cancellation; dropped");
                    return Err(Failure::Cancelled);
                }
            }
        }
    };
    result.map_err(|e| {
        Failure::Error(ErrorMessage {
            error: e.message,
            metadata: e.metadata,
        })
    })
}

/// Makes the agent's answer fit the request: structured output when a schema was given
/// (validated against it), text otherwise.
fn conform_output(data: ResultData, schema: Option<&Value>) -> Result<ResultData, Failure> {
    match (schema, data) {
        (Some(schema), ResultData::StructuredOutput { structured_output }) => {
            validate(schema, &structured_output)
                .map_err(|e| named_error(e.to_string(), "StructuredOutputMismatch"))?;
            Ok(ResultData::StructuredOutput { structured_output })
        }
        (Some(_), ResultData::Text { .. }) => Err(named_error(
            "the agent returned text although an output schema was requested".into(),
            "StructuredOutputMissing",
        )
        .into()),
        (None, ResultData::StructuredOutput { structured_output }) => Ok(ResultData::Text {
            text: structured_output.to_string(),
        }),
        (None, text) => Ok(text),
    }
}

/// Runs a command execution to its terminal message.
pub(crate) async fn run_command_execution(
    ctx: RequestContext,
    execution: CommandExecution,
) -> ServerMessage {
    with_heartbeats(&ctx, command_steps(&ctx, execution)).await
}

async fn command_steps(
    ctx: &RequestContext,
    execution: CommandExecution,
) -> Result<ServerMessage, Failure> {
    download_all(ctx, execution.pre_execution_downloadables.as_ref()).await?;
    // Stdout beyond what fits in the result frame would be cut anyway: don't keep it.
    let options = CommandOptions {
        capture_limit: ctx
            .config
            .commands
            .capture_limit
            .min(ctx.config.max_result_frame_bytes),
        ..ctx.config.commands.clone()
    };
    let mut results = Vec::with_capacity(execution.commands.len());
    for command in &execution.commands {
        let result = run_command(command, &options, &ctx.outbox, &ctx.cancel).await;
        crate::metrics::observe_command(&result);
        let outcome = result?;
        let failed = outcome.exit_code != 0;
        results.push(CommandResultItem {
            command: command.command.clone(),
            exit_code: outcome.exit_code,
            stdout: Some(outcome.stdout),
            stdout_truncated: outcome.stdout_truncated.then_some(true),
        });
        if failed {
            break;
        }
    }
    // Sized as sent: redaction can lengthen text (a short secret becomes `[REDACTED]`).
    let redactor = ctx.outbox.redactor();
    for item in &mut results {
        if let Some(stdout) = item.stdout.as_mut() {
            redactor.redact_in_place(stdout);
        }
    }
    fit_results(&mut results, ctx.config.max_result_frame_bytes);
    Ok(ServerMessage::CommandExecutionResultMessage(
        CommandExecutionResultMessage { results },
    ))
}

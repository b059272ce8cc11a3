//! One invocation served by a handler process: write the invocation, follow its lines
//! (assistant messages, command requests, the result), stop it afterwards.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use runtimeuse_server::agent::{AgentContext, AgentError, AgentOutput, AgentRequest};
use runtimeuse_server::process::ProcessError;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::ChildStdout;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::HandlerConfig;
use super::child::HandlerChild;
use super::commands::run_requested;
use super::protocol::{FromHandler, Invocation, PROTOCOL_VERSION, ToHandler, decode, encode};

/// `error_name` of every failure the runtime reports for a handler.
const ERROR_NAME: &str = "HandlerError";

/// How long a handler that exited may take to close its stderr before its tail is read.
const STDERR_SETTLE: Duration = Duration::from_secs(2);

/// The longest excerpt of a bad line quoted in an error.
const EXCERPT: usize = 200;

/// How a conversation ended.
enum End {
    /// The handler's result.
    Output(AgentOutput),
    /// The handler's own `error` line, passed on as it is.
    Reported(AgentError),
    /// A failure the runtime detected (crash, garbage, silence, cancel).
    Failed(AgentError),
}

/// Runs `request` through a fresh handler process.
pub(super) async fn run_invocation(
    config: &HandlerConfig,
    request: AgentRequest,
    ctx: AgentContext,
) -> Result<AgentOutput, AgentError> {
    let cwd = ctx.command_options().default_cwd.clone();
    let env = request.env.clone();
    let mut child = HandlerChild::spawn(&config.program, &env, &cwd).map_err(|error| {
        let ProcessError::Spawn { source, .. } = error;
        failure(format!(
            "could not start the handler {}: {source}",
            config.program.program.display()
        ))
    })?;
    let invocation = ToHandler::Invocation(Invocation {
        protocol_version: PROTOCOL_VERSION,
        system_prompt: request.system_prompt,
        user_prompt: request.user_prompt,
        model: request.model,
        output_schema: request.output_schema,
        env: env.clone(),
        secrets: request.secrets.secrets().to_vec(),
        source_id: request.source_id,
        cwd: cwd.display().to_string(),
    });
    // A handler that exits at once makes this write fail; its exit is reported below
    // with its stderr, which says more than a broken pipe.
    send(&mut child, &invocation).await;

    let end = match child.take_stdout() {
        Some(stdout) => {
            let lines = FramedRead::new(
                stdout,
                LinesCodec::new_with_max_length(config.max_line_bytes),
            );
            converse(config, &ctx, &env, &mut child, lines).await
        }
        None => End::Failed(failure("the handler's stdout is missing".into())),
    };
    let status = child.stop(config.stop_grace).await;
    match end {
        End::Output(output) => Ok(output),
        End::Reported(error) => Err(error),
        End::Failed(mut error) => {
            if let Some(status) = status {
                error
                    .metadata
                    .entry("exit_status")
                    .or_insert_with(|| Value::String(status.to_string()));
            }
            Err(error)
        }
    }
}

/// Follows the handler's lines until it sends its result or error, fails, or is cancelled.
async fn converse(
    config: &HandlerConfig,
    ctx: &AgentContext,
    env: &BTreeMap<String, String>,
    child: &mut HandlerChild,
    lines: FramedRead<ChildStdout, LinesCodec>,
) -> End {
    let mut lines = pin!(lines);
    let mut commands = FuturesUnordered::new();
    let mut number = 0_usize;
    let cancel = ctx.cancel_token().clone();
    loop {
        let idle = tokio::time::sleep(config.idle_timeout);
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                send(child, &ToHandler::Cancel).await;
                return End::Failed(failure(runtimeuse_server::CANCELLED.to_owned()));
            }
            Some(result) = commands.next() => {
                if let Some(result) = result {
                    send(child, &ToHandler::CommandResult(result)).await;
                }
            }
            line = lines.next() => {
                number += 1;
                match line {
                    Some(Ok(text)) => {
                        if text.trim().is_empty() {
                            continue;
                        }
                        match decode(&text) {
                            Ok(FromHandler::AssistantMessage { text_blocks }) => {
                                ctx.assistant_message(text_blocks).await;
                            }
                            Ok(FromHandler::Command(request)) => {
                                commands.push(run_requested(ctx, env, request));
                            }
                            Ok(FromHandler::Result { data, metadata }) => {
                                return End::Output(AgentOutput {
                                    data,
                                    metadata: metadata.unwrap_or_default(),
                                });
                            }
                            Ok(FromHandler::Error { error, metadata }) => {
                                return End::Reported(AgentError {
                                    message: error,
                                    metadata: metadata.unwrap_or_default(),
                                });
                            }
                            Err(problem) => {
                                return End::Failed(with_stderr(
                                    failure(format!(
                                        "the handler printed line {number}, which is not a protocol line ({problem}): {}",
                                        excerpt(&text)
                                    )),
                                    child,
                                ));
                            }
                        }
                    }
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                        return End::Failed(with_stderr(
                            failure(format!(
                                "the handler printed a line longer than {} bytes",
                                config.max_line_bytes
                            )),
                            child,
                        ));
                    }
                    Some(Err(LinesCodecError::Io(error))) => {
                        return End::Failed(with_stderr(
                            failure(format!("could not read the handler's output: {error}")),
                            child,
                        ));
                    }
                    None => return End::Failed(exited_early(config, child).await),
                }
            }
            () = idle, if commands.is_empty() => {
                return End::Failed(with_stderr(
                    failure(format!(
                        "the handler sent nothing for {} s and was stopped",
                        config.idle_timeout.as_secs_f64()
                    )),
                    child,
                ));
            }
        }
    }
}

/// The handler closed its stdout without a result: report how it exited.
async fn exited_early(config: &HandlerConfig, child: &mut HandlerChild) -> AgentError {
    let status = tokio::time::timeout(config.stop_grace, child.wait()).await;
    let how = match status {
        Ok(Ok(status)) => format!("exited ({status})"),
        _ => "closed its output".to_owned(),
    };
    let tail = child.final_stderr_tail(STDERR_SETTLE).await;
    with_tail(
        failure(format!("the handler {how} without sending a result")),
        &tail,
    )
}

/// Writes one line to the handler; a handler that stopped reading is noticed elsewhere.
async fn send(child: &mut HandlerChild, line: &ToHandler) {
    let Some(stdin) = child.stdin.as_mut() else {
        return;
    };
    let Ok(text) = encode(line) else {
        return;
    };
    if let Err(error) = stdin.write_all(text.as_bytes()).await {
        tracing::debug!(%error, "could not write to the handler");
        child.stdin = None;
    } else if let Err(error) = stdin.flush().await {
        tracing::debug!(%error, "could not flush the handler's input");
        child.stdin = None;
    }
}

fn failure(message: String) -> AgentError {
    AgentError::new(message).with_metadata("error_name", ERROR_NAME)
}

/// Adds the handler's stderr tail so far to the message and the metadata.
fn with_stderr(error: AgentError, child: &HandlerChild) -> AgentError {
    with_tail(error, &child.stderr_tail())
}

fn with_tail(mut error: AgentError, tail: &str) -> AgentError {
    let tail = tail.trim_end();
    if !tail.is_empty() {
        error.message = format!("{}; stderr: {tail}", error.message);
        error
            .metadata
            .insert("stderr".into(), Value::String(tail.to_owned()));
    }
    error
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

//! One invocation: start the CLI, initialize it with the system prompt, send the user
//! turn, forward text blocks until the `result` line, then close stdin and stop it.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt as _;
use runtimeuse_server::agent::{AgentContext, AgentError, AgentOutput, AgentRequest};
use runtimeuse_server::process::{Environment, Process, Spawn};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::process::ChildStdin;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::ClaudeConfig;
use super::args::cli_args;
use super::env::prepare_env;
use super::input::{INITIALIZE_ID, initialize, refuse, user_turn};
use super::outcome::{Seen, failure, from_result, with_stderr};
use super::stream::{CliLine, decode};

/// Bytes of the CLI's stderr kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// How long a CLI that exited may take to close its stderr before its tail is read.
const STDERR_SETTLE: Duration = Duration::from_secs(2);

/// The longest excerpt of a bad line quoted in an error.
const EXCERPT: usize = 200;

/// Runs `request` through a fresh `claude` process.
pub(super) async fn run_invocation(
    config: &ClaudeConfig,
    request: AgentRequest,
    ctx: AgentContext,
) -> Result<AgentOutput, AgentError> {
    let env = prepare_env(&request.env, &ctx);
    let mut environment = Environment::empty();
    environment.extend(env);
    let args = cli_args(
        &request.model,
        request.output_schema.as_ref(),
        config.max_turns,
    );
    let mut process = Spawn::new(&config.program)
        .args(args)
        .env(environment)
        .current_dir(ctx.command_options().default_cwd.clone())
        .stdin_piped()
        .stderr_tail(STDERR_TAIL)
        .spawn()
        .map_err(|e| failure(format!("{e} (is Claude Code installed? {INSTALL_HINT})")))?;
    let mut conversation = Conversation {
        config,
        stdin: process.take_stdin(),
        seen: Seen::default(),
    };
    conversation.send(&initialize(&request.system_prompt)).await;
    let outcome = match process.take_stdout() {
        Some(stdout) => {
            let lines = FramedRead::new(
                stdout,
                LinesCodec::new_with_max_length(config.max_line_bytes),
            );
            conversation
                .follow(&request, &ctx, &mut process, lines)
                .await
        }
        None => Err(failure("the CLI's stdout is missing".into())),
    };
    // After the result the CLI exits once its stdin is closed; give it the grace, then
    // the process primitive's TERM -> KILL takes the rest of its tree.
    // On a cancel there is nothing to wait for: stdin closed, SIGTERM, SIGKILL after the
    // grace, at once.
    conversation.stdin = None;
    let exited = if ctx.cancel_token().is_cancelled() {
        None
    } else {
        tokio::time::timeout(config.stop_grace, process.wait())
            .await
            .ok()
            .and_then(Result::ok)
    };
    let status = match exited {
        Some(status) => Some(status),
        None => process.stop(config.stop_grace).await.ok(),
    };
    // A normal exit still may leave Bash tools' background processes: the request is
    // over, so they go too (dropping the process kills what is left of its tree).
    drop(process);
    outcome.map_err(|mut error| {
        if let Some(status) = status {
            error
                .metadata
                .entry("exit_status")
                .or_insert_with(|| Value::String(status.to_string()));
        }
        error
    })
}

/// The install hint shown when the CLI cannot be started.
pub const INSTALL_HINT: &str =
    "install it with `npm install -g @anthropic-ai/claude-code`, or pass --claude-path";

struct Conversation<'a> {
    config: &'a ClaudeConfig,
    stdin: Option<ChildStdin>,
    seen: Seen,
}

impl Conversation<'_> {
    /// Follows the CLI's lines until its result, a failure, or a cancel.
    async fn follow<R>(
        &mut self,
        request: &AgentRequest,
        ctx: &AgentContext,
        process: &mut Process,
        lines: FramedRead<R, LinesCodec>,
    ) -> Result<AgentOutput, AgentError>
    where
        R: tokio::io::AsyncRead,
    {
        let mut lines = pin!(lines);
        let mut number = 0_usize;
        let mut user_sent = false;
        let cancel = ctx.cancel_token().clone();
        loop {
            let idle = tokio::time::sleep(self.config.idle_timeout);
            let line = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    return Err(failure(runtimeuse_server::CANCELLED.to_owned()));
                }
                line = lines.next() => line,
                () = idle => {
                    return Err(self.failed(process, format!(
                        "Claude Code printed nothing for {} s and was stopped",
                        self.config.idle_timeout.as_secs_f64()
                    )));
                }
            };
            number += 1;
            let text = match line {
                Some(Ok(text)) => text,
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                    return Err(self.failed(
                        process,
                        format!(
                            "Claude Code printed a line longer than {} bytes",
                            self.config.max_line_bytes
                        ),
                    ));
                }
                Some(Err(LinesCodecError::Io(error))) => {
                    return Err(self.failed(
                        process,
                        format!("could not read Claude Code's output: {error}"),
                    ));
                }
                None => return Err(self.exited_early(process).await),
            };
            if text.trim().is_empty() {
                continue;
            }
            let decoded = match decode(&text) {
                Ok(decoded) => decoded,
                Err(problem) => {
                    return Err(self.failed(process, format!(
                        "Claude Code printed line {number}, which is not stream-json ({problem}): {}",
                        excerpt(&text)
                    )));
                }
            };
            match decoded {
                CliLine::ControlResponse { request_id, error } if request_id == INITIALIZE_ID => {
                    if let Some(error) = error {
                        return Err(self.failed(
                            process,
                            format!("Claude Code refused to initialize: {error}"),
                        ));
                    }
                    if !user_sent {
                        user_sent = true;
                        self.send(&user_turn(&request.user_prompt)).await;
                    }
                }
                CliLine::ControlResponse { .. } | CliLine::Other => {}
                CliLine::ControlRequest {
                    request_id,
                    subtype,
                } => {
                    tracing::debug!(%subtype, "refusing a control request from Claude Code");
                    self.send(&refuse(&request_id, &subtype)).await;
                }
                CliLine::Init { session_id, model } => {
                    self.seen.session_id = session_id.or(self.seen.session_id.take());
                    self.seen.model = model.or(self.seen.model.take());
                }
                CliLine::Assistant { texts, model } => {
                    if let Some(model) = model.filter(|m| !m.starts_with('<')) {
                        self.seen.model = Some(model);
                    }
                    for text in texts {
                        ctx.assistant_message(vec![text]).await;
                    }
                }
                CliLine::Result(result) => {
                    return from_result(result, &self.seen, request.output_schema.as_ref())
                        .map_err(|error| with_stderr(error, &tail(process)));
                }
            }
        }
    }

    /// Writes one line; a CLI that stopped reading is noticed through its output.
    async fn send(&mut self, line: &str) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        let written = match stdin.write_all(line.as_bytes()).await {
            Ok(()) => stdin.flush().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            tracing::debug!(%error, "could not write to Claude Code");
            self.stdin = None;
        }
    }

    fn failed(&self, process: &Process, message: String) -> AgentError {
        let mut error = with_stderr(failure(message), &tail(process));
        error.metadata.extend(self.seen.metadata());
        error
    }

    /// The CLI closed its stdout without a result: report how it exited.
    async fn exited_early(&self, process: &mut Process) -> AgentError {
        let how = match tokio::time::timeout(self.config.stop_grace, process.wait()).await {
            Ok(Ok(status)) => format!("exited ({status})"),
            _ => "closed its output".to_owned(),
        };
        if let Some(stderr) = process.stderr_tail() {
            let _ = tokio::time::timeout(STDERR_SETTLE, stderr.closed()).await;
        }
        self.failed(process, format!("Claude Code {how} without a result"))
    }
}

fn tail(process: &Process) -> String {
    process.stderr_tail().map(|t| t.text()).unwrap_or_default()
}

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

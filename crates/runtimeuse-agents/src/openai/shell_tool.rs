//! The shell tool: runs the model's commands in the sandbox and words their results.
//!
//! It is offered as a *function* tool named `shell` rather than as OpenAI's native shell
//! tool (`{"type":"shell"}`): function tools work with every model and with
//! OpenAI-compatible servers, while the native tool exists only for some models. Native
//! `shell_call` items are answered all the same, should a server send them.
//!
//! Commands run through the request's [`AgentContext`], so they stream to the client as
//! `command_output_message`s, run in their own process group and die with the request.
//! The model gets exit code, stdout and stderr, shortened to a limit.
//!
//! The agent's credentials ([`CREDENTIAL_VARS`]) are removed from the commands'
//! environment, the runtime's inherited one included, and the API key is redacted from
//! the output the model reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use runtimeuse_protocol::Command;
use runtimeuse_server::agent::AgentContext;
use runtimeuse_server::command::{CommandError, CommandOutcome};
use runtimeuse_server::redact::Redactor;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::CREDENTIAL_VARS;
use super::config::OpenAiConfig;
use super::error::OpenAiError;
use super::items::ShellAction;

/// Name of the function tool.
pub(crate) const SHELL_TOOL: &str = "shell";

/// The function tool definition sent with every request (strict: both arguments are
/// required, `timeout_ms` may be null).
pub(crate) fn definition() -> Value {
    json!({
        "type": "function",
        "name": SHELL_TOOL,
        "description": "Runs a shell command with /bin/sh -c in the sandbox and returns its exit \
            code, stdout and stderr (long output is shortened in the middle). Commands do not \
            share state: use `cd dir && …` in one command. Set timeout_ms for long commands, \
            or null for the default.",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line."},
                "timeout_ms": {
                    "type": ["integer", "null"],
                    "description": "Kill the command after this many milliseconds; null for the default."
                }
            },
            "required": ["command", "timeout_ms"],
            "additionalProperties": false
        },
        "strict": true
    })
}

#[derive(Deserialize)]
struct ShellArguments {
    command: String,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

/// Runs tool calls for one invocation.
pub(crate) struct ShellRunner<'a> {
    /// The request's context.
    ctx: &'a AgentContext,
    /// Environment for the commands: the invocation's (runtime env + `agent_env`) without
    /// the agent's credentials.
    env: BTreeMap<String, String>,
    /// Limits.
    config: &'a OpenAiConfig,
    /// The API key, taken out of what the model reads of a command's output.
    redactor: Redactor,
}

/// How running one command ended, short of cancellation.
enum Ran {
    Finished(CommandOutcome),
    NotStarted(String),
}

impl<'a> ShellRunner<'a> {
    /// A runner whose commands get `env` minus [`CREDENTIAL_VARS`], and whose outputs
    /// never show the model `api_key`.
    pub fn new(
        ctx: &'a AgentContext,
        env: &BTreeMap<String, String>,
        config: &'a OpenAiConfig,
        api_key: &str,
    ) -> Self {
        let mut env = env.clone();
        for name in CREDENTIAL_VARS {
            env.remove(name);
        }
        Self {
            ctx,
            env,
            config,
            redactor: Redactor::new([api_key]),
        }
    }

    /// The `function_call_output` item answering a function call.
    pub async fn answer_function_call(
        &self,
        call_id: &str,
        name: &str,
        arguments: &str,
    ) -> Result<Value, OpenAiError> {
        let output = if name == SHELL_TOOL {
            match serde_json::from_str::<ShellArguments>(arguments) {
                Ok(args) => {
                    let timeout = self.timeout(args.timeout_ms);
                    let ran = self.run(&args.command, timeout).await?;
                    describe(&ran, timeout, self.config.tool_output_max_chars)
                }
                Err(e) => format!("error: the arguments are not valid for `{SHELL_TOOL}`: {e}"),
            }
        } else {
            format!("error: there is no tool named `{name}`; the only tool is `{SHELL_TOOL}`")
        };
        Ok(json!({"type": "function_call_output", "call_id": call_id, "output": output}))
    }

    /// The `shell_call_output` item answering a native shell call: one entry per command.
    pub async fn answer_shell_call(
        &self,
        call_id: &str,
        action: &ShellAction,
    ) -> Result<Value, OpenAiError> {
        let limit = action
            .max_output_length
            .unwrap_or(self.config.tool_output_max_chars);
        let mut entries = Vec::with_capacity(action.commands.len());
        for command in &action.commands {
            let entry = match self.run(command, self.timeout(action.timeout_ms)).await? {
                Ran::Finished(outcome) => {
                    // The API's `max_output_length` counts stdout and stderr together.
                    let (stdout, stderr) = shorten_both(&outcome, limit);
                    let result = if outcome.timed_out {
                        json!({"type": "timeout"})
                    } else {
                        json!({"type": "exit", "exit_code": outcome.exit_code})
                    };
                    json!({
                        "stdout": stdout,
                        "stderr": stderr,
                        "outcome": result,
                    })
                }
                Ran::NotStarted(reason) => json!({
                    "stdout": "",
                    "stderr": reason,
                    "outcome": {"type": "exit", "exit_code": 127},
                }),
            };
            entries.push(entry);
        }
        let mut item = json!({"type": "shell_call_output", "call_id": call_id, "output": entries});
        if let Some(max) = action.max_output_length {
            item["max_output_length"] = json!(max);
        }
        Ok(item)
    }

    /// The timeout asked for (or the default), capped.
    fn timeout(&self, timeout_ms: Option<u64>) -> Duration {
        timeout_ms
            .map_or(self.config.command_timeout, Duration::from_millis)
            .min(self.config.max_command_timeout)
    }

    async fn run(&self, command: &str, timeout: Duration) -> Result<Ran, OpenAiError> {
        let mut options = self.ctx.command_options().clone();
        options.timeout = Some(timeout);
        // The runtime's own environment is inherited: leaving the credentials out of
        // `env` is not enough.
        options
            .env_remove
            .extend(CREDENTIAL_VARS.iter().map(|name| (*name).to_owned()));
        let mut request = Command::new(command);
        request.env = Some(self.env.clone());
        tracing::debug!(command, timeout_ms = timeout.as_millis(), "shell tool call");
        match self.ctx.run_command_with(&request, &options).await {
            Ok(mut outcome) => {
                // The key can still be read elsewhere (a file, the runtime's /proc entry):
                // what the model reads must not hold it, or a web search could carry it off.
                self.redactor.redact_in_place(&mut outcome.stdout);
                self.redactor.redact_in_place(&mut outcome.stderr);
                Ok(Ran::Finished(outcome))
            }
            Err(CommandError::Cancelled) => Err(OpenAiError::Cancelled),
            Err(e) => Ok(Ran::NotStarted(e.to_string())),
        }
    }
}

/// What the model reads about a finished command: exit code, then stdout and stderr
/// sharing `max_chars`.
fn describe(ran: &Ran, timeout: Duration, max_chars: usize) -> String {
    let outcome = match ran {
        Ran::Finished(outcome) => outcome,
        Ran::NotStarted(reason) => return format!("error: the command could not run: {reason}"),
    };
    let mut text = String::new();
    // Writing to a String cannot fail.
    if outcome.timed_out {
        let ms = timeout.as_millis();
        let _ = writeln!(text, "timed out after {ms} ms; the command was killed");
    }
    let _ = writeln!(text, "exit_code: {}", outcome.exit_code);
    let (stdout, stderr) = shorten_both(outcome, max_chars);
    for (name, body, cut) in [
        ("stdout", stdout, outcome.stdout_truncated),
        ("stderr", stderr, outcome.stderr_truncated),
    ] {
        if body.is_empty() {
            let _ = writeln!(text, "{name}: (empty)");
            continue;
        }
        let _ = write!(text, "{name}:\n{body}");
        if !body.ends_with('\n') {
            text.push('\n');
        }
        if cut {
            let _ = writeln!(
                text,
                "[{name} capture limit reached; the rest is not shown]"
            );
        }
    }
    text
}

/// stdout and stderr shortened to share `max_chars`; stderr keeps at least a quarter of
/// it when both are long, and what one stream does not need goes to the other.
fn shorten_both(outcome: &CommandOutcome, max_chars: usize) -> (String, String) {
    let stdout_len = outcome.stdout.chars().count();
    let stderr_len = outcome.stderr.chars().count();
    let stderr_budget = stderr_len.min((max_chars / 4).max(max_chars.saturating_sub(stdout_len)));
    (
        shorten(&outcome.stdout, max_chars - stderr_budget),
        shorten(&outcome.stderr, stderr_budget),
    )
}

/// `text` cut to at most about `max_chars` characters: its head and tail with a note on
/// how much was left out in between (the end of output is often what matters).
pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_owned();
    }
    let head_len = max_chars / 2;
    let tail_len = max_chars - head_len;
    let head: String = text.chars().take(head_len).collect();
    let tail: String = text.chars().skip(total - tail_len).collect();
    let omitted = total - head_len - tail_len;
    format!("{head}\n[… {omitted} characters omitted …]\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_head_and_tail() {
        assert_eq!(shorten("short", 10), "short");
        let text = "a".repeat(50) + &"é".repeat(50);
        let cut = shorten(&text, 20);
        assert!(cut.starts_with(&"a".repeat(10)), "{cut}");
        assert!(cut.ends_with(&"é".repeat(10)), "{cut}");
        assert!(cut.contains("80 characters omitted"), "{cut}");
    }

    #[test]
    fn results_name_exit_code_and_streams() {
        let ran = Ran::Finished(CommandOutcome {
            exit_code: 2,
            stdout: "42\n".into(),
            stderr: String::new(),
            ..CommandOutcome::default()
        });
        assert_eq!(
            describe(&ran, Duration::from_secs(1), 100),
            "exit_code: 2\nstdout:\n42\nstderr: (empty)\n"
        );
        let timed_out = Ran::Finished(CommandOutcome {
            exit_code: 124,
            timed_out: true,
            ..CommandOutcome::default()
        });
        assert!(
            describe(&timed_out, Duration::from_millis(50), 100)
                .starts_with("timed out after 50 ms")
        );
    }

    #[test]
    fn stdout_and_stderr_share_the_budget() {
        let ran = Ran::Finished(CommandOutcome {
            stdout: "o".repeat(1_000),
            stderr: "e".repeat(1_000),
            ..CommandOutcome::default()
        });
        let text = describe(&ran, Duration::from_secs(1), 100);
        assert!(
            text.contains("925 characters omitted"),
            "stdout keeps 75: {text}"
        );
        assert!(
            text.contains("975 characters omitted"),
            "stderr keeps 25: {text}"
        );
    }

    #[test]
    fn the_tool_definition_is_strict() {
        let tool = definition();
        assert_eq!(tool["strict"], true);
        assert_eq!(
            tool["parameters"]["required"],
            json!(["command", "timeout_ms"])
        );
    }
}

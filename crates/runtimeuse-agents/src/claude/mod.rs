//! Claude Code: `--agent claude` drives the `claude` CLI the way the Claude Agent SDK
//! does.
//!
//! For each invocation the agent starts `claude --output-format stream-json --verbose
//! --input-format stream-json --model=… [--json-schema=…] [--max-turns=…]` with
//! permissions bypassed (the sandbox is the boundary), through the runtime's process
//! primitive ([`runtimeuse_server::process`]). On stdin it writes the initialize control
//! request carrying the system prompt and, once the CLI has answered it, the user turn.
//! Every text block the CLI prints becomes one `assistant_message`; the `result` line
//! becomes the result (structured output validated against the caller's schema), and
//! then stdin is closed so that the CLI exits.
//!
//! The CLI's environment is the request's (the runtime's own without its settings, with
//! `agent_env` over it), plus `CLAUDE_CODE_ENTRYPOINT=sdk-ts`, and `IS_SANDBOX=1` when
//! running as root (without it the CLI refuses to skip permissions). Credentials in it
//! (`ANTHROPIC_API_KEY`, …) are redacted from everything sent back.
//!
//! Failures (an error result, a crash, a non-zero exit without a result, lines that are
//! not stream-json, silence past [`ClaudeConfig::idle_timeout`]) end the request with one
//! error carrying the CLI's stderr tail. Cancel closes stdin, sends SIGTERM (the CLI
//! stops its Bash tools itself) and SIGKILLs whatever of the tree is left after the grace.
//!
//! ```no_run
//! # async fn demo() -> Result<(), runtimeuse_agents::claude::ClaudeError> {
//! use runtimeuse_agents::claude::{ClaudeAgent, ClaudeConfig, probe};
//!
//! let config = ClaudeConfig::new("claude");
//! let version = probe(&config.program).await?; // fails clearly when the CLI is missing
//! println!("using Claude Code {version}");
//! let agent = ClaudeAgent::new(config);
//! # Ok(())
//! # }
//! ```

mod args;
mod env;
mod input;
mod outcome;
mod probe;
mod run;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};

pub use env::CREDENTIAL_VARS;
pub use outcome::ERROR_NAME;
pub use probe::{ClaudeError, probe};
pub use run::INSTALL_HINT;

/// Default [`ClaudeConfig::idle_timeout`]: thirty minutes (the CLI prints nothing while
/// a long tool runs).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Default [`ClaudeConfig::max_line_bytes`]: 64 MiB (a line carries a whole message,
/// tool results included).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// How the CLI is run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaudeConfig {
    /// The `claude` executable (looked up on `PATH` when it has no `/`).
    pub program: PathBuf,
    /// `--max-turns`, when set.
    pub max_turns: Option<u32>,
    /// A CLI that prints nothing for this long is stopped and the request fails.
    pub idle_timeout: Duration,
    /// After the result, how long the CLI gets to exit once stdin is closed; on a stop,
    /// the delay between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The longest line the CLI may print.
    pub max_line_bytes: usize,
}

impl ClaudeConfig {
    /// Defaults for the CLI at `program`.
    #[must_use]
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            max_turns: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            stop_grace: Duration::from_secs(2),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The agent behind `--agent claude`: one CLI process per invocation.
#[derive(Debug, Clone)]
pub struct ClaudeAgent {
    config: ClaudeConfig,
}

impl ClaudeAgent {
    /// An agent that runs the CLI as `config` says.
    #[must_use]
    pub fn new(config: ClaudeConfig) -> Self {
        Self { config }
    }
}

#[async_trait::async_trait]
impl Agent for ClaudeAgent {
    fn name(&self) -> &'static str {
        "claude"
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        run::run_invocation(&self.config, request, ctx).await
    }
}

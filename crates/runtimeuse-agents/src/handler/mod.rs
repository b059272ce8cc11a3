//! Agents in any language: `--handler PROGRAM [ARGS…]`.
//!
//! For each invocation the runtime starts the program and speaks a small, versioned
//! JSON-lines protocol over its stdin and stdout (`docs/handler-protocol.md`): it writes
//! the invocation; the handler answers with assistant messages, command requests that the
//! runtime runs for it (streamed to the client, redacted, killed on cancel), and then one
//! result or one error. A cancel is a `cancel` line, then the process is stopped (stdin
//! closed, a grace period, then [`Process::stop`]: TERM, KILL, and its whole tree, `setsid`
//! escapes included). A handler that crashes, prints garbage or goes silent ends the
//! request with a clear error carrying its stderr tail. The process is started through
//! [`runtimeuse_server::process`], like every child of the runtime.
//!
//! [`Process::stop`]: runtimeuse_server::process::Process::stop
//!
//! A module ending in `.js`, `.mjs`, `.cjs`, `.ts`, `.mts` or `.cts` runs through the Node
//! adapter the runtime carries, so upstream's `AgentHandler` modules run unchanged.
//!
//! ```no_run
//! use runtimeuse_agents::handler::{HandlerAgent, HandlerConfig, HandlerProgram};
//!
//! # async fn demo() -> Result<(), runtimeuse_agents::handler::HandlerError> {
//! let program = HandlerProgram::resolve(
//!     "python3",
//!     &["my_handler.py".to_owned()],
//!     "node",
//!     std::env::var("PATH").ok().as_deref(),
//! )
//! .await?;
//! let agent = HandlerAgent::new(HandlerConfig::new(program));
//! # Ok(())
//! # }
//! ```

mod child;
mod commands;
mod program;
pub mod protocol;
mod run;

use std::time::Duration;

use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};

pub use program::{HandlerError, HandlerProgram};

/// Default [`HandlerConfig::idle_timeout`]: ten minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Default [`HandlerConfig::max_line_bytes`]: 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// How handler processes are run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HandlerConfig {
    /// What to start for each invocation.
    pub program: HandlerProgram,
    /// A handler that prints no protocol line for this long (while none of its commands
    /// runs) is stopped and the request fails. Only stdout lines count: stderr output is
    /// logging, not a sign of progress.
    pub idle_timeout: Duration,
    /// After the result, after a `cancel` line, and between SIGTERM and SIGKILL: how long
    /// the handler gets to exit by itself.
    pub stop_grace: Duration,
    /// The longest line the handler may print.
    pub max_line_bytes: usize,
}

impl HandlerConfig {
    /// Defaults for `program`.
    #[must_use]
    pub fn new(program: HandlerProgram) -> Self {
        Self {
            program,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            stop_grace: Duration::from_secs(1),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The agent behind `--handler`: one handler process per invocation.
#[derive(Debug, Clone)]
pub struct HandlerAgent {
    config: HandlerConfig,
}

impl HandlerAgent {
    /// An agent that runs `config.program` for each invocation.
    #[must_use]
    pub fn new(config: HandlerConfig) -> Self {
        Self { config }
    }
}

#[async_trait::async_trait]
impl Agent for HandlerAgent {
    fn name(&self) -> &'static str {
        "handler"
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        run::run_invocation(&self.config, request, ctx).await
    }
}

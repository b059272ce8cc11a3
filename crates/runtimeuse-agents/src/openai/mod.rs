//! The OpenAI agent: an agent loop on the [Responses API], with a shell tool that runs
//! commands in the sandbox, the hosted web search tool, and structured output.
//!
//! Each invocation reads `OPENAI_API_KEY` (required), `OPENAI_BASE_URL` (default
//! `https://api.openai.com/v1`, so OpenAI-compatible servers work), and optionally
//! `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` from its environment: the runtime's, with the
//! invocation's `agent_env` over it. Then, turn after turn, it streams a response,
//! forwards each finished assistant message as one `assistant_message`, runs the shell
//! commands the model asks for (streamed to the client as `command_output_message`s) and
//! sends their results back, until the model answers without calling a tool or
//! [`OpenAiConfig::max_turns`] is reached.
//!
//! The result's metadata holds `usage` (`input_tokens`, `output_tokens`, `total_tokens`,
//! summed over turns), `turns`, `model`, `duration_ms` and the last `response_id`;
//! errors carry the same plus `error_name` and, for API errors, the provider's `status`,
//! `type` and `code`.
//!
//! # Running it with a real key
//!
//! ```text
//! OPENAI_API_KEY=sk-... runtimeuse --agent openai
//! ```
//!
//! then send an invocation with `"model": "gpt-5-mini"` (any Responses API model). The
//! key may instead travel in the invocation's `agent_env`.
//!
//! Wherever the key comes from, the model's commands run without `OPENAI_API_KEY`,
//! `OPENAI_ORG_ID` and `OPENAI_PROJECT_ID` in their environment, and the key is redacted
//! from everything sent to the client (and from the command output the model reads), as
//! if it had been listed in `secrets_to_redact`.
//!
//! [Responses API]: https://platform.openai.com/docs/api-reference/responses

mod client;
mod config;
mod error;
mod events;
mod items;
mod request_body;
mod retry;
mod run;
mod schema_strict;
mod shell_tool;
mod turn;

use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentOutput, AgentRequest};

pub use config::{DEFAULT_BASE_URL, OpenAiConfig, RetryPolicy};
pub use error::OpenAiError;

/// The OpenAI agent (`--agent openai`).
///
/// ```
/// use std::sync::Arc;
/// use runtimeuse_agents::openai::{OpenAiAgent, OpenAiConfig};
/// use runtimeuse_server::agent::Agent;
///
/// let agent: Arc<dyn Agent> = Arc::new(OpenAiAgent::new(OpenAiConfig::default()));
/// assert_eq!(agent.name(), "openai");
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiAgent {
    config: OpenAiConfig,
    http: reqwest::Client,
}

impl OpenAiAgent {
    /// An agent with these settings; one HTTP connection pool serves all invocations.
    #[must_use]
    pub fn new(config: OpenAiConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            // Building fails only when the TLS backend cannot start; the plain
            // constructor reports that the same way reqwest always does.
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { config, http }
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }
}

impl Default for OpenAiAgent {
    fn default() -> Self {
        Self::new(OpenAiConfig::default())
    }
}

#[async_trait::async_trait]
impl Agent for OpenAiAgent {
    fn name(&self) -> &str {
        "openai"
    }

    async fn run(
        &self,
        request: AgentRequest,
        ctx: AgentContext,
    ) -> Result<AgentOutput, AgentError> {
        run::run(&self.config, &self.http, &request, &ctx).await
    }
}

//! Settings of the OpenAI agent: turn limit, timeouts, retries, shell tool limits.

use std::time::Duration;

/// Where requests go when `OPENAI_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How the OpenAI agent behaves. Credentials are not part of it: they are read from each
/// invocation's environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`), so that `agent_env`
/// can carry them.
///
/// ```
/// use std::time::Duration;
/// use runtimeuse_agents::openai::OpenAiConfig;
///
/// let config = OpenAiConfig {
///     max_turns: 25,
///     command_timeout: Duration::from_secs(600),
///     ..OpenAiConfig::default()
/// };
/// assert!(config.web_search);
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Model calls per invocation; a model still calling tools after this many fails the
    /// invocation with "max turns (N) reached". Default 10, as in the Agents SDK.
    pub max_turns: u32,
    /// Used when the environment has no `OPENAI_BASE_URL`.
    pub default_base_url: String,
    /// Time allowed to open a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed for the API to answer a request with its status and headers.
    pub request_timeout: Duration,
    /// Longest silence tolerated between two events of a streamed response.
    pub stream_idle_timeout: Duration,
    /// Retries of failed requests (408, 409, 429, 5xx, connection errors).
    pub retry: RetryPolicy,
    /// Characters of a tool call's output given back to the model; longer output keeps
    /// its head and tail with a note in between. The client always gets all of it.
    pub tool_output_max_chars: usize,
    /// Timeout of a shell command when the model asks for none.
    pub command_timeout: Duration,
    /// Upper bound for the timeout the model may ask for.
    pub max_command_timeout: Duration,
    /// Offer the hosted `web_search` tool. Turn off for OpenAI-compatible servers that
    /// do not have it.
    pub web_search: bool,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            max_turns: 10,
            default_base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            stream_idle_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            tool_output_max_chars: 20_000,
            command_timeout: Duration::from_secs(300),
            max_command_timeout: Duration::from_secs(3600),
            web_search: true,
        }
    }
}

/// Exponential backoff for retried requests, as the official SDKs do it.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Cap of the computed delay.
    pub max_backoff: Duration,
    /// A `retry-after-ms` / `retry-after` header asking for longer than this is ignored
    /// in favour of the computed delay.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

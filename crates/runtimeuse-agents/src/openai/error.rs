//! Why an OpenAI run failed, and how that becomes the request's `error_message`.

use runtimeuse_server::agent::AgentError;
use serde_json::Value;

/// Everything that can end an OpenAI run early.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpenAiError {
    /// No `OPENAI_API_KEY` in `agent_env` nor in the runtime's environment.
    #[error(
        "OPENAI_API_KEY is not set: pass it in the invocation's agent_env or the runtime's environment"
    )]
    MissingApiKey,
    /// The API answered with an error status (after retries, for retryable ones).
    #[error("OpenAI API error: status {status}{}: {message}", kind.as_deref().map(|k| format!(" ({k})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// `error.type`, e.g. `invalid_request_error`.
        kind: Option<String>,
        /// `error.code`, e.g. `rate_limit_exceeded`.
        code: Option<String>,
        /// `error.param`.
        param: Option<String>,
        /// `error.message`, or the raw body when it is not the usual JSON.
        message: String,
    },
    /// The API could not be reached (after retries).
    #[error("could not reach the OpenAI API: {0}")]
    Connection(String),
    /// The API took too long to answer or went silent mid-stream.
    #[error("the OpenAI API timed out: {0}")]
    Timeout(String),
    /// The event stream broke or ended before `response.completed`.
    #[error("the OpenAI response stream failed: {0}")]
    Stream(String),
    /// The stream carried an `error` event.
    #[error("the OpenAI API reported an error mid-stream{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    StreamError {
        /// The event's `code`.
        code: Option<String>,
        /// The event's `message`.
        message: String,
    },
    /// `response.failed`: the model run failed on the provider's side.
    #[error("the OpenAI response failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    ResponseFailed {
        /// `response.error.code`.
        code: Option<String>,
        /// `response.error.message`.
        message: String,
    },
    /// `response.incomplete`, e.g. because of `max_output_tokens` or a content filter.
    #[error("the OpenAI response is incomplete: {reason}")]
    ResponseIncomplete {
        /// `response.incomplete_details.reason`.
        reason: String,
    },
    /// The model kept calling tools for `max_turns` turns.
    #[error("max turns ({0}) reached")]
    MaxTurns(u32),
    /// The model refused to answer.
    #[error("the model refused to answer: {0}")]
    Refusal(String),
    /// The final answer is not JSON matching the requested schema.
    #[error("structured output is invalid: {0}")]
    StructuredOutputInvalid(String),
    /// The request was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl OpenAiError {
    /// The `error_name` put into the error's metadata.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::MissingApiKey => "MissingApiKey",
            Self::Api { .. } => "OpenAIAPIError",
            Self::Connection(_) => "OpenAIConnectionError",
            Self::Timeout(_) => "OpenAITimeout",
            Self::Stream(_) => "OpenAIStreamError",
            Self::StreamError { .. } => "OpenAIStreamErrorEvent",
            Self::ResponseFailed { .. } => "ResponseFailed",
            Self::ResponseIncomplete { .. } => "ResponseIncomplete",
            Self::MaxTurns(_) => "MaxTurnsExceeded",
            Self::Refusal(_) => "Refusal",
            Self::StructuredOutputInvalid(_) => "StructuredOutputInvalid",
            Self::Cancelled => "Cancelled",
        }
    }

    /// The agent error: this message, `error_name`, and the provider's details.
    #[must_use]
    pub fn into_agent_error(self) -> AgentError {
        let mut error = AgentError::new(self.to_string()).with_metadata("error_name", self.name());
        let optional = |v: Option<String>| v.map_or(Value::Null, Value::String);
        match self {
            Self::Api {
                status,
                kind,
                code,
                param,
                ..
            } => {
                error = error
                    .with_metadata("status", status)
                    .with_metadata("type", optional(kind))
                    .with_metadata("code", optional(code))
                    .with_metadata("param", optional(param));
            }
            Self::StreamError { code, .. } | Self::ResponseFailed { code, .. } => {
                error = error.with_metadata("code", optional(code));
            }
            Self::ResponseIncomplete { reason } => {
                error = error.with_metadata("reason", reason);
            }
            Self::MaxTurns(turns) => error = error.with_metadata("max_turns", turns),
            _ => {}
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_carry_status_type_and_message() {
        let error = OpenAiError::Api {
            status: 400,
            kind: Some("invalid_request_error".into()),
            code: None,
            param: Some("model".into()),
            message: "The model `nope` does not exist".into(),
        };
        assert_eq!(
            error.to_string(),
            "OpenAI API error: status 400 (invalid_request_error): The model `nope` does not exist"
        );
        let agent_error = error.into_agent_error();
        assert_eq!(agent_error.metadata["status"], 400);
        assert_eq!(agent_error.metadata["type"], "invalid_request_error");
        assert_eq!(agent_error.metadata["code"], Value::Null);
        assert_eq!(agent_error.metadata["error_name"], "OpenAIAPIError");
    }
}

//! HTTP to the Responses API: the endpoint and key from the invocation's environment,
//! `POST /responses` with retries, and the response body as a stream of typed events.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{ACCEPT, HeaderMap};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::config::{OpenAiConfig, RetryPolicy};
use super::error::OpenAiError;
use super::events::{ApiErrorBody, ApiErrorEnvelope, StreamEvent, parse_event, value_text};
use super::retry;

/// The variables holding the agent's credentials. They are kept from the commands the
/// model runs: a prompt injection must not be able to print or send them anywhere.
pub(crate) const CREDENTIAL_VARS: [&str; 3] =
    ["OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"];

/// Where requests go and how they are authenticated.
#[derive(Clone)]
pub(crate) struct Endpoint {
    url: String,
    api_key: String,
    organization: Option<String>,
    project: Option<String>,
}

// The key must never reach a log line, so no derived Debug.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Reads `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_ORG_ID` and `OPENAI_PROJECT_ID`
    /// from the invocation's environment (empty values count as unset).
    pub fn from_env(
        env: &BTreeMap<String, String>,
        default_base_url: &str,
    ) -> Result<Self, OpenAiError> {
        let get = |name: &str| {
            env.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let api_key = get("OPENAI_API_KEY").ok_or(OpenAiError::MissingApiKey)?;
        let base = get("OPENAI_BASE_URL").unwrap_or_else(|| default_base_url.to_owned());
        Ok(Self {
            url: format!("{}/responses", base.trim_end_matches('/')),
            api_key,
            organization: get("OPENAI_ORG_ID"),
            project: get("OPENAI_PROJECT_ID"),
        })
    }

    /// The `/responses` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API key (a secret: to be redacted, never logged).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }
}

type SseItem = Result<Event, EventStreamError<reqwest::Error>>;

/// The events of one streamed response.
pub(crate) struct ResponseStream {
    events: Pin<Box<dyn Stream<Item = SseItem> + Send>>,
    idle_timeout: Duration,
}

impl ResponseStream {
    /// The next event the agent cares about (`None` once the body ends). Waits at most the
    /// idle timeout for it.
    pub async fn next_event(&mut self) -> Result<Option<StreamEvent>, OpenAiError> {
        loop {
            let next = tokio::time::timeout(self.idle_timeout, self.events.next())
                .await
                .map_err(|_| {
                    OpenAiError::Timeout(format!(
                        "no event for {} s while streaming",
                        self.idle_timeout.as_secs()
                    ))
                })?;
            let event = match next {
                None => return Ok(None),
                Some(Err(e)) => return Err(OpenAiError::Stream(e.to_string())),
                Some(Ok(event)) => event,
            };
            match parse_event(&event.event, &event.data) {
                None => {}
                Some(Ok(event)) => return Ok(Some(event)),
                // A malformed known event is dropped; should it be the final one, the
                // stream ends without completion and that is reported.
                Some(Err(problem)) => tracing::warn!(%problem, "ignoring event"),
            }
        }
    }
}

/// Sends `body` to the endpoint and returns the event stream, retrying retryable failures
/// per `config.retry`. Returns [`OpenAiError::Cancelled`] as soon as `cancel` fires.
pub(crate) async fn open_stream(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    body: &Value,
    config: &OpenAiConfig,
    cancel: &CancellationToken,
) -> Result<ResponseStream, OpenAiError> {
    let policy: &RetryPolicy = &config.retry;
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        let failure = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(OpenAiError::Cancelled),
            outcome = attempt_once(http, endpoint, body, config.request_timeout) => match outcome {
                Ok(response) => {
                    let events = response.bytes_stream().eventsource();
                    return Ok(ResponseStream {
                        events: Box::pin(events),
                        idle_timeout: config.stream_idle_timeout,
                    });
                }
                Err(failure) => failure,
            },
        };
        if !failure.retryable || attempt >= attempts {
            return Err(failure.error);
        }
        let wait = retry::delay(policy, attempt, failure.retry_after);
        tracing::warn!(
            attempt,
            attempts,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            error = %failure.error,
            "OpenAI request failed; retrying"
        );
        tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(OpenAiError::Cancelled),
            () = tokio::time::sleep(wait) => {}
        }
        attempt += 1;
    }
}

/// One failed attempt.
struct Failure {
    error: OpenAiError,
    retryable: bool,
    retry_after: Option<Duration>,
}

async fn attempt_once(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    body: &Value,
    timeout: Duration,
) -> Result<reqwest::Response, Failure> {
    let mut request = http
        .post(&endpoint.url)
        .bearer_auth(&endpoint.api_key)
        .header(ACCEPT, "text/event-stream")
        .json(body);
    if let Some(organization) = &endpoint.organization {
        request = request.header("OpenAI-Organization", organization);
    }
    if let Some(project) = &endpoint.project {
        request = request.header("OpenAI-Project", project);
    }
    let transient = |error| Failure {
        error,
        retryable: true,
        retry_after: None,
    };
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => {
            let secs = timeout.as_secs();
            return Err(transient(OpenAiError::Timeout(format!(
                "no answer within {secs} s"
            ))));
        }
        Ok(Err(e)) => {
            let error = OpenAiError::Connection(error_chain(&e));
            return Err(Failure {
                retryable: !e.is_builder(),
                ..transient(error)
            });
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers: HeaderMap = response.headers().clone();
    // The body of an error is small; a server that never finishes it is cut short.
    let text = tokio::time::timeout(timeout, response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Err(Failure {
        error: api_error(status.as_u16(), &text),
        retryable: retry::should_retry(status, &headers),
        retry_after: retry::retry_after(&headers),
    })
}

/// The error for a non-2xx answer: `{"error": {...}}` when the body has it, else the raw
/// body (shortened) as the message.
fn api_error(status: u16, body: &str) -> OpenAiError {
    let parsed: ApiErrorBody = serde_json::from_str::<ApiErrorEnvelope>(body)
        .map(|envelope| envelope.error)
        .unwrap_or_default();
    let message = parsed.message.clone().unwrap_or_else(|| {
        let raw: String = body.trim().chars().take(500).collect();
        if raw.is_empty() {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no details")
                .to_owned()
        } else {
            raw
        }
    });
    OpenAiError::Api {
        status,
        kind: parsed.kind,
        code: value_text(parsed.code.as_ref()),
        param: value_text(parsed.param.as_ref()),
        message,
    }
}

/// A reqwest error with its causes (reqwest's own Display hides the useful part).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_reads_key_and_base_url_from_the_environment() {
        let mut env = BTreeMap::new();
        assert_eq!(
            Endpoint::from_env(&env, "https://x/v1").unwrap_err(),
            OpenAiError::MissingApiKey
        );
        env.insert("OPENAI_API_KEY".to_owned(), "  ".to_owned());
        assert!(Endpoint::from_env(&env, "https://x/v1").is_err());
        env.insert("OPENAI_API_KEY".to_owned(), "sk-test".to_owned());
        let endpoint = Endpoint::from_env(&env, "https://x/v1").unwrap();
        assert_eq!(endpoint.url(), "https://x/v1/responses");
        assert!(!format!("{endpoint:?}").contains("sk-test"));
        env.insert(
            "OPENAI_BASE_URL".to_owned(),
            "http://127.0.0.1:9/v1/".to_owned(),
        );
        let endpoint = Endpoint::from_env(&env, "https://x/v1").unwrap();
        assert_eq!(endpoint.url(), "http://127.0.0.1:9/v1/responses");
    }

    #[test]
    fn error_bodies_are_parsed_or_quoted() {
        let body = r#"{"error":{"message":"Rate limit","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        let OpenAiError::Api {
            status,
            kind,
            code,
            message,
            ..
        } = api_error(429, body)
        else {
            panic!("not an API error");
        };
        assert_eq!(
            (status, kind.as_deref(), code.as_deref()),
            (429, Some("requests"), Some("rate_limit_exceeded"))
        );
        assert_eq!(message, "Rate limit");
        let OpenAiError::Api { message, .. } = api_error(502, "<html>bad gateway</html>") else {
            panic!("not an API error");
        };
        assert_eq!(message, "<html>bad gateway</html>");
        let OpenAiError::Api { message, .. } = api_error(503, "") else {
            panic!("not an API error");
        };
        assert_eq!(message, "Service Unavailable");
    }
}

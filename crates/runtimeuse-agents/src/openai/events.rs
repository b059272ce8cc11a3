//! The Responses API's streamed events, typed: only those the agent acts on; every other
//! type (`response.created`, `response.content_part.added`, …) is [`StreamEvent::Other`].

use serde::Deserialize;
use serde_json::Value;

/// One event of a streamed response (the JSON in an SSE `data:` field).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum StreamEvent {
    /// A piece of a message's text.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        /// Which output item the text belongs to.
        #[serde(default)]
        output_index: Option<usize>,
        /// The text.
        delta: String,
    },
    /// An output item is complete.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        /// Its position in the response's output.
        #[serde(default)]
        output_index: Option<usize>,
        /// The whole item, kept as JSON to be sent back verbatim in the next turn.
        item: Value,
    },
    /// The response is complete.
    #[serde(rename = "response.completed")]
    Completed {
        /// The final response.
        response: ResponseBody,
    },
    /// The response failed.
    #[serde(rename = "response.failed")]
    Failed {
        /// The failed response, with `error`.
        response: ResponseBody,
    },
    /// The response stopped early.
    #[serde(rename = "response.incomplete")]
    Incomplete {
        /// The response, with `incomplete_details`.
        response: ResponseBody,
    },
    /// An error; its fields are at the top level, or (on some servers) under `error`.
    #[serde(rename = "error")]
    Error {
        /// Error code.
        #[serde(default)]
        code: Option<Value>,
        /// Error message.
        #[serde(default)]
        message: Option<String>,
        /// The nested form.
        #[serde(default)]
        error: Option<ApiErrorBody>,
    },
    /// Any other event type.
    #[serde(other)]
    Other,
}

/// The `response` object carried by the final events.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ResponseBody {
    /// `resp_…`.
    #[serde(default)]
    pub id: Option<String>,
    /// All output items.
    #[serde(default)]
    pub output: Vec<Value>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Why the response failed.
    #[serde(default)]
    pub error: Option<ApiErrorBody>,
    /// Why the response is incomplete.
    #[serde(default)]
    pub incomplete_details: Option<IncompleteDetails>,
}

/// `{"reason": …}` of an incomplete response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct IncompleteDetails {
    /// E.g. `max_output_tokens`, `content_filter`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The error object of the API: `{"message", "type", "param", "code"}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ApiErrorBody {
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Error type, e.g. `invalid_request_error`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<Value>,
    /// Machine-readable code (a string, sometimes a number).
    #[serde(default)]
    pub code: Option<Value>,
}

/// `{"error": {...}}`: the body of an error response.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiErrorEnvelope {
    pub error: ApiErrorBody,
}

/// Token usage of one response; summed over turns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: InputTokensDetails,
    #[serde(default)]
    pub output_tokens_details: OutputTokensDetails,
}

/// Part of [`Usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct InputTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
}

/// Part of [`Usage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct OutputTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Adds another response's usage.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.input_tokens_details.cached_tokens += other.input_tokens_details.cached_tokens;
        self.output_tokens_details.reasoning_tokens += other.output_tokens_details.reasoning_tokens;
    }

    /// The metadata form.
    pub fn to_json(self) -> Value {
        serde_json::json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "input_tokens_details": {"cached_tokens": self.input_tokens_details.cached_tokens},
            "output_tokens_details": {"reasoning_tokens": self.output_tokens_details.reasoning_tokens},
        })
    }
}

/// A JSON value that should be a string (codes are sometimes numbers), as text.
pub(crate) fn value_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parses one SSE event. Returns `None` for what carries no event: empty data, the
/// `[DONE]` sentinel some compatible servers send, or data that is not a JSON object.
/// The event's `type` is taken from the JSON, or else from the SSE `event:` field.
pub(crate) fn parse_event(sse_event: &str, data: &str) -> Option<Result<StreamEvent, String>> {
    let data = data.trim();
    if data.is_empty() || data == "[DONE]" {
        return None;
    }
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(data) else {
        return None;
    };
    if !object.contains_key("type") && !sse_event.is_empty() && sse_event != "message" {
        object.insert("type".into(), Value::String(sse_event.to_owned()));
    }
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Some(
        serde_json::from_value(Value::Object(object))
            .map_err(|e| format!("malformed {kind} event: {e}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_events_parse_and_unknown_ones_are_other() {
        let delta = parse_event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","output_index":0,"delta":"Hi","sequence_number":3}"#,
        );
        assert_eq!(
            delta,
            Some(Ok(StreamEvent::OutputTextDelta {
                output_index: Some(0),
                delta: "Hi".into()
            }))
        );
        let other = parse_event(
            "",
            r#"{"type":"response.reasoning_summary_text.delta","delta":"x"}"#,
        );
        assert_eq!(other, Some(Ok(StreamEvent::Other)));
        assert_eq!(parse_event("", "[DONE]"), None);
    }

    #[test]
    fn type_falls_back_to_the_sse_event_name() {
        let event = parse_event("response.completed", r#"{"response":{"output":[]}}"#);
        assert!(
            matches!(event, Some(Ok(StreamEvent::Completed { .. }))),
            "{event:?}"
        );
    }

    #[test]
    fn usage_sums_over_turns() {
        let mut total = Usage::default();
        let one: Usage = serde_json::from_value(json!({
            "input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens_details": {"reasoning_tokens": 1}
        }))
        .unwrap();
        total.add(&one);
        total.add(&one);
        assert_eq!(total.to_json()["total_tokens"], 30);
        assert_eq!(total.to_json()["input_tokens_details"]["cached_tokens"], 4);
    }
}

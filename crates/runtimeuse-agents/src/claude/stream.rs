//! The CLI's stdout: one JSON object per line (`--output-format stream-json`), decoded
//! into the few kinds the agent acts on. Unknown types and fields are ignored, as the
//! Agent SDK does, so newer CLIs keep working.

use serde::Deserialize;
use serde_json::{Map, Value};

/// One line the CLI printed, as far as the agent cares.
#[derive(Debug, Clone, PartialEq)]
pub enum CliLine {
    /// The answer to one of our control requests.
    ControlResponse {
        /// The id we sent.
        request_id: String,
        /// The CLI's error, when it refused the request.
        error: Option<String>,
    },
    /// A control request from the CLI (a permission question, a hook…): answered with
    /// an error, since the runtime registers no callbacks.
    ControlRequest {
        /// The CLI's id, echoed in the answer.
        request_id: String,
        /// What it asked for, for the log.
        subtype: String,
    },
    /// `system`/`init`: the session and the model the CLI runs.
    Init {
        /// The CLI's session id.
        session_id: Option<String>,
        /// The model it uses.
        model: Option<String>,
    },
    /// An `assistant` line: its text blocks, in order (tool use and thinking dropped).
    Assistant {
        /// The text of each text block.
        texts: Vec<String>,
        /// The model that wrote it.
        model: Option<String>,
    },
    /// The final `result` line.
    Result(ResultLine),
    /// Any other line (`user` tool results, `stream_event`, newer types).
    Other,
}

/// The CLI's `result` line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultLine {
    /// `success`, `error_max_turns`, `error_during_execution`, …
    pub subtype: String,
    /// Whether the run failed (also set on a `success` that ended in an API error).
    pub is_error: bool,
    /// The final text.
    pub result: Option<String>,
    /// The parsed structured answer, when a schema was given.
    pub structured_output: Option<Value>,
    /// Error messages of a failed run.
    pub errors: Vec<String>,
    /// Every other field (`duration_ms`, `usage`, `total_cost_usd`, …).
    pub fields: Map<String, Value>,
}

/// Why a line could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object with a string `type`.
    #[error("not a stream-json message (no \"type\")")]
    NoType,
    /// A known type whose shape is wrong.
    #[error("malformed {kind} line: {reason}")]
    Malformed {
        /// The line's `type`.
        kind: String,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct ControlResponseBody {
    #[serde(default)]
    subtype: String,
    request_id: String,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct AssistantBody {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    model: Option<String>,
}

/// Decodes one stdout line.
///
/// # Errors
///
/// [`LineError`] when the line is not JSON, has no `type`, or a line the agent acts on
/// (`control_response`, `assistant`, `result`) has the wrong shape.
pub fn decode(line: &str) -> Result<CliLine, LineError> {
    let value: Value = serde_json::from_str(line).map_err(|e| LineError::NotJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(LineError::NoType);
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        _ => return Err(LineError::NoType),
    };
    let malformed = |reason: String| LineError::Malformed {
        kind: kind.clone(),
        reason,
    };
    match kind.as_str() {
        "control_response" => {
            let body: ControlResponseBody = take(&mut object, "response")
                .ok_or_else(|| malformed("no \"response\"".into()))
                .and_then(|v| serde_json::from_value(v).map_err(|e| malformed(e.to_string())))?;
            let error = (body.subtype == "error").then(|| match body.error {
                Some(Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => "the CLI refused the request".to_owned(),
            });
            Ok(CliLine::ControlResponse {
                request_id: body.request_id,
                error,
            })
        }
        "control_request" => {
            let request_id = object
                .get("request_id")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("no \"request_id\"".into()))?
                .to_owned();
            let subtype = object
                .get("request")
                .and_then(|r| r.get("subtype"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(CliLine::ControlRequest {
                request_id,
                subtype,
            })
        }
        "system" if object.get("subtype").and_then(Value::as_str) == Some("init") => {
            Ok(CliLine::Init {
                session_id: string(&object, "session_id"),
                model: string(&object, "model"),
            })
        }
        "assistant" => {
            let body: AssistantBody = take(&mut object, "message")
                .ok_or_else(|| malformed("no \"message\"".into()))
                .and_then(|v| serde_json::from_value(v).map_err(|e| malformed(e.to_string())))?;
            let texts = body
                .content
                .iter()
                .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            Ok(CliLine::Assistant {
                texts,
                model: body.model,
            })
        }
        "result" => Ok(CliLine::Result(result_line(object).map_err(malformed)?)),
        _ => Ok(CliLine::Other),
    }
}

fn result_line(mut object: Map<String, Value>) -> Result<ResultLine, String> {
    object.remove("type");
    let subtype = match object.remove("subtype") {
        Some(Value::String(s)) => s,
        _ => return Err("no \"subtype\"".into()),
    };
    let is_error = match object.remove("is_error") {
        Some(Value::Bool(b)) => b,
        None | Some(Value::Null) => subtype != "success",
        Some(other) => return Err(format!("\"is_error\" is {other}, not a boolean")),
    };
    let result = match object.remove("result") {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => None,
        Some(other) => return Err(format!("\"result\" is {other}, not a string")),
    };
    let structured_output = object.remove("structured_output").filter(|v| !v.is_null());
    let errors = match object.remove("errors") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(ResultLine {
        subtype,
        is_error,
        result,
        structured_output,
        errors,
        fields: object,
    })
}

fn take(object: &mut Map<String, Value>, key: &str) -> Option<Value> {
    object.remove(key).filter(|v| !v.is_null())
}

fn string(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assistant_keeps_text_blocks_in_order_and_drops_tools_and_thinking() {
        let line = r#"{"type":"assistant","message":{"id":"m","model":"claude-x","content":[
            {"type":"thinking","thinking":"hmm"},{"type":"text","text":"one"},
            {"type":"tool_use","id":"t","name":"Bash","input":{}},{"type":"text","text":"two"}]}}"#;
        assert_eq!(
            decode(&line.replace('\n', "")).ok(),
            Some(CliLine::Assistant {
                texts: vec!["one".into(), "two".into()],
                model: Some("claude-x".into())
            })
        );
    }

    #[test]
    fn a_success_result_with_is_error_is_an_error() {
        let line = r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 405","duration_ms":3}"#;
        let Ok(CliLine::Result(result)) = decode(line) else {
            panic!("not a result");
        };
        assert!(result.is_error);
        assert_eq!(result.result.as_deref(), Some("API Error: 405"));
        assert_eq!(result.fields.get("duration_ms"), Some(&Value::from(3)));
    }

    #[test]
    fn error_subtypes_without_is_error_are_errors() {
        let line = r#"{"type":"result","subtype":"error_max_turns","errors":["too many turns"]}"#;
        let Ok(CliLine::Result(result)) = decode(line) else {
            panic!("not a result");
        };
        assert!(result.is_error);
        assert_eq!(result.errors, vec!["too many turns".to_owned()]);
    }

    #[test]
    fn control_response_errors_are_reported() {
        let line = r#"{"type":"control_response","response":{"subtype":"error","request_id":"r","error":"bad"}}"#;
        assert_eq!(
            decode(line).ok(),
            Some(CliLine::ControlResponse {
                request_id: "r".into(),
                error: Some("bad".into())
            })
        );
    }

    #[test]
    fn unknown_types_are_ignored_and_garbage_is_refused() {
        assert_eq!(
            decode(r#"{"type":"stream_event","event":{}}"#).ok(),
            Some(CliLine::Other)
        );
        assert!(matches!(decode("not json"), Err(LineError::NotJson(_))));
        assert_eq!(decode("[1]"), Err(LineError::NoType));
        assert!(matches!(
            decode(r#"{"type":"assistant"}"#),
            Err(LineError::Malformed { .. })
        ));
        assert!(matches!(
            decode(r#"{"type":"result","subtype":"success","result":5}"#),
            Err(LineError::Malformed { .. })
        ));
    }
}

//! Turning what the CLI said into the request's outcome: the result (text or validated
//! structured output) with its metadata, or one error carrying all that is known.

use runtimeuse_protocol::ResultData;
use runtimeuse_server::agent::{AgentError, AgentOutput};
use runtimeuse_server::schema;
use serde_json::{Map, Value};

use super::stream::ResultLine;

/// `error_name` of every failure of this agent.
pub const ERROR_NAME: &str = "ClaudeError";

/// Result fields copied into the metadata as they are.
const RESULT_FIELDS: [&str; 5] = [
    "duration_ms",
    "duration_api_ms",
    "num_turns",
    "total_cost_usd",
    "usage",
];

/// What the run learnt before its end: the model and session the CLI reported.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// From `system`/`init` or an `assistant` line.
    pub model: Option<String>,
    /// From `system`/`init`.
    pub session_id: Option<String>,
}

impl Seen {
    /// The metadata known without a result.
    pub fn metadata(&self) -> Map<String, Value> {
        let mut metadata = Map::new();
        if let Some(model) = &self.model {
            metadata.insert("model".into(), Value::String(model.clone()));
        }
        if let Some(session) = &self.session_id {
            metadata.insert("session_id".into(), Value::String(session.clone()));
        }
        metadata
    }
}

/// The request's outcome from the CLI's `result` line.
pub fn from_result(
    result: ResultLine,
    seen: &Seen,
    output_schema: Option<&Value>,
) -> Result<AgentOutput, AgentError> {
    let mut metadata = seen.metadata();
    for key in RESULT_FIELDS {
        if let Some(value) = result.fields.get(key) {
            metadata.insert(key.to_owned(), value.clone());
        }
    }
    if let Some(Value::String(session)) = result.fields.get("session_id") {
        metadata.insert("session_id".into(), Value::String(session.clone()));
    }
    if result.is_error {
        let mut reasons = result.errors.clone();
        if reasons.is_empty()
            && let Some(text) = result.result.as_ref().filter(|t| !t.is_empty())
        {
            reasons.push(text.clone());
        }
        let detail = if reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", reasons.join("; "))
        };
        let mut error = failure(format!("Claude Code failed ({}){detail}", result.subtype));
        error.metadata.extend(metadata);
        error
            .metadata
            .insert("subtype".into(), Value::String(result.subtype));
        if !result.errors.is_empty() {
            error.metadata.insert(
                "errors".into(),
                Value::Array(result.errors.into_iter().map(Value::String).collect()),
            );
        }
        return Err(error);
    }
    let data = match output_schema {
        None => ResultData::Text {
            text: result.result.unwrap_or_default(),
        },
        Some(schema) => ResultData::StructuredOutput {
            structured_output: structured(result, schema).map_err(|mut error| {
                error.metadata.extend(metadata.clone());
                error
            })?,
        },
    };
    Ok(AgentOutput { data, metadata })
}

/// The structured answer (the CLI's `structured_output`, or its `result` text parsed as
/// JSON when an older CLI sent only that), checked against the caller's schema.
fn structured(result: ResultLine, schema: &Value) -> Result<Value, AgentError> {
    let value = match (result.structured_output, result.result) {
        (Some(value), _) => value,
        (None, Some(text)) => serde_json::from_str(&text).map_err(|e| {
            failure(format!(
                "Claude Code returned no structured output, and its answer is not JSON ({e})"
            ))
        })?,
        (None, None) => return Err(failure("Claude Code returned no structured output".into())),
    };
    schema::validate(schema, &value).map_err(|e| {
        // The same name the runtime gives a mismatch it finds itself.
        AgentError::new(e.to_string()).with_metadata("error_name", "StructuredOutputMismatch")
    })?;
    Ok(value)
}

/// An error of this agent.
pub fn failure(message: String) -> AgentError {
    AgentError::new(message).with_metadata("error_name", ERROR_NAME)
}

/// Adds the CLI's stderr tail to an error's message and metadata.
pub fn with_stderr(mut error: AgentError, tail: &str) -> AgentError {
    let tail = tail.trim_end();
    if !tail.is_empty() {
        error.message = format!("{}; stderr: {tail}", error.message);
        error
            .metadata
            .insert("stderr".into(), Value::String(tail.to_owned()));
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(fields: Value) -> ResultLine {
        let Value::Object(mut fields) = fields else {
            unreachable!()
        };
        fields.insert("type".into(), "result".into());
        let Ok(super::super::stream::CliLine::Result(line)) =
            super::super::stream::decode(&Value::Object(fields).to_string())
        else {
            panic!("not a result line");
        };
        line
    }

    #[test]
    fn text_result_carries_the_metadata() {
        let seen = Seen {
            model: Some("claude-x".into()),
            session_id: Some("s0".into()),
        };
        let line = result(json!({"subtype":"success","is_error":false,"result":"hi",
            "duration_ms":5,"duration_api_ms":4,"num_turns":1,"total_cost_usd":0.5,
            "usage":{"input_tokens":1},"session_id":"s1","permission_denials":[]}));
        let Ok(output) = from_result(line, &seen, None) else {
            panic!("failed");
        };
        assert_eq!(output.data, ResultData::Text { text: "hi".into() });
        let metadata = Value::Object(output.metadata);
        assert_eq!(
            metadata,
            json!({"model":"claude-x","session_id":"s1","duration_ms":5,"duration_api_ms":4,
                "num_turns":1,"total_cost_usd":0.5,"usage":{"input_tokens":1}})
        );
    }

    #[test]
    fn structured_output_is_validated_against_the_callers_schema() {
        let schema =
            json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]});
        let good =
            result(json!({"subtype":"success","result":"{\"n\":1}","structured_output":{"n":1}}));
        assert!(matches!(
            from_result(good, &Seen::default(), Some(&schema)).map(|o| o.data),
            Ok(ResultData::StructuredOutput { structured_output }) if structured_output == json!({"n":1})
        ));
        let bad =
            result(json!({"subtype":"success","structured_output":{"n":"one"},"num_turns":2}));
        let Err(error) = from_result(bad, &Seen::default(), Some(&schema)) else {
            panic!("an invalid answer passed");
        };
        assert!(
            error.message.contains("does not match"),
            "{}",
            error.message
        );
        assert_eq!(error.metadata.get("num_turns"), Some(&json!(2)));
        let text_only = result(json!({"subtype":"success","result":"{\"n\":3}"}));
        assert!(from_result(text_only, &Seen::default(), Some(&schema)).is_ok());
        let not_json = result(json!({"subtype":"success","result":"three"}));
        assert!(from_result(not_json, &Seen::default(), Some(&schema)).is_err());
    }

    #[test]
    fn error_results_list_their_errors() {
        let line = result(json!({"subtype":"error_max_turns","is_error":true,
            "errors":["reached 3 turns"],"num_turns":3}));
        let Err(error) = from_result(line, &Seen::default(), None) else {
            panic!("an error result passed");
        };
        assert!(error.message.contains("error_max_turns"));
        assert!(error.message.contains("reached 3 turns"));
        assert_eq!(error.metadata.get("error_name"), Some(&json!(ERROR_NAME)));
        assert_eq!(error.metadata.get("num_turns"), Some(&json!(3)));
    }
}

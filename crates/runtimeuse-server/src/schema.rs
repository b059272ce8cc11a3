//! Output schemas: unwrapping `output_format_json_schema_str` and validating answers.

use serde_json::Value;

/// Why an output schema or a structured answer was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// `output_format_json_schema_str` is not JSON.
    #[error("output_format_json_schema_str is not valid JSON: {0}")]
    NotJson(String),
    /// The schema is not a usable JSON schema.
    #[error("output_format_json_schema_str is not a valid JSON schema: {0}")]
    InvalidSchema(String),
    /// The agent's answer does not match the schema.
    #[error("structured output does not match the requested schema: {0}")]
    Mismatch(String),
}

/// Parses `output_format_json_schema_str`: the usual `{"type":"json_schema","schema":S}`
/// wrapper yields `S`; anything else is taken as a bare JSON schema. The schema is
/// compiled once here so that a bad schema fails the request before any work is done.
pub fn parse_output_schema(raw: &str) -> Result<Value, SchemaError> {
    let value: Value =
        serde_json::from_str(raw).map_err(|e| SchemaError::NotJson(e.to_string()))?;
    let schema = match &value {
        Value::Object(map)
            if map.get("type").and_then(Value::as_str) == Some("json_schema")
                && map.contains_key("schema") =>
        {
            map.get("schema").cloned().unwrap_or(Value::Null)
        }
        _ => value,
    };
    jsonschema::validator_for(&schema).map_err(|e| SchemaError::InvalidSchema(e.to_string()))?;
    Ok(schema)
}

/// Checks `instance` against `schema`, listing every violation.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), SchemaError> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| SchemaError::InvalidSchema(e.to_string()))?;
    let problems: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Mismatch(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrapper_is_unwrapped_and_bare_schema_accepted() {
        let wrapped = r#"{"type":"json_schema","schema":{"type":"object"}}"#;
        assert_eq!(
            parse_output_schema(wrapped).unwrap(),
            json!({"type":"object"})
        );
        let bare = r#"{"type":"object","properties":{"a":{"type":"integer"}}}"#;
        assert_eq!(
            parse_output_schema(bare).unwrap()["properties"]["a"]["type"],
            "integer"
        );
    }

    #[test]
    fn invalid_json_and_invalid_schema_are_errors() {
        assert!(matches!(
            parse_output_schema("{"),
            Err(SchemaError::NotJson(_))
        ));
        assert!(matches!(
            parse_output_schema(r#"{"type": 12}"#),
            Err(SchemaError::InvalidSchema(_))
        ));
    }

    #[test]
    fn validation_reports_mismatches() {
        let schema =
            json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]});
        assert!(validate(&schema, &json!({"n": 3})).is_ok());
        let err = validate(&schema, &json!({"n": "x"})).unwrap_err();
        assert!(err.to_string().contains("/n"), "{err}");
        assert!(validate(&schema, &json!({})).is_err());
    }
}

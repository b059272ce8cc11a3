//! The JSON body of `POST /responses`.
//!
//! The whole history is sent every turn (the user message, then every output item and
//! tool output so far) instead of `previous_response_id`, so that the loop also works with
//! OpenAI-compatible servers that keep no state. Items are sent back exactly as they came,
//! ids included: with the API's default `store`, reasoning items are found again by id.

use serde_json::{Value, json};

use super::schema_strict::OutputFormat;
use super::shell_tool;

/// What one turn's request is made of.
pub(crate) struct TurnRequest<'a> {
    /// The model.
    pub model: &'a str,
    /// The system prompt (omitted when empty).
    pub instructions: &'a str,
    /// The history.
    pub input: &'a [Value],
    /// Whether to offer the hosted web search.
    pub web_search: bool,
    /// The format of structured output.
    pub format: Option<&'a OutputFormat>,
}

/// The first input item: the user's prompt.
pub(crate) fn user_message(prompt: &str) -> Value {
    json!({
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": prompt}],
    })
}

impl TurnRequest<'_> {
    /// The request body, streaming on.
    pub fn body(&self) -> Value {
        let mut tools = vec![shell_tool::definition()];
        if self.web_search {
            tools.push(json!({"type": "web_search"}));
        }
        let mut body = json!({
            "model": self.model,
            "input": self.input,
            "tools": tools,
            "stream": true,
        });
        if !self.instructions.is_empty() {
            body["instructions"] = json!(self.instructions);
        }
        if let Some(format) = self.format {
            body["text"] = json!({
                "format": {
                    "type": "json_schema",
                    "name": "output",
                    "schema": format.schema,
                    "strict": format.strict,
                }
            });
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_model_instructions_tools_and_format() {
        let input = [user_message("hi")];
        let schema = json!({"type": "object"});
        let format = OutputFormat {
            schema: schema.clone(),
            strict: false,
        };
        let body = TurnRequest {
            model: "gpt-test",
            instructions: "be brief",
            input: &input,
            web_search: true,
            format: Some(&format),
        }
        .body();
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["instructions"], "be brief");
        assert_eq!(body["stream"], true);
        assert_eq!(body["input"][0]["content"][0]["text"], "hi");
        assert_eq!(body["tools"][0]["name"], "shell");
        assert_eq!(body["tools"][1], json!({"type": "web_search"}));
        assert_eq!(body["text"]["format"]["schema"], schema);
        assert_eq!(body["text"]["format"]["strict"], false);
        let plain = TurnRequest {
            model: "m",
            instructions: "",
            input: &input,
            web_search: false,
            format: None,
        }
        .body();
        assert!(plain.get("instructions").is_none() && plain.get("text").is_none());
        assert_eq!(plain["tools"].as_array().map(Vec::len), Some(1));
    }
}

//! Output items, read for what the agent must do with them. The items themselves stay raw
//! JSON: they go back to the model verbatim in the next turn's input.

use serde::Deserialize;
use serde_json::Value;

/// What an output item means to the agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutputItem {
    /// An assistant message.
    Message(MessageContent),
    /// A call of one of our function tools.
    FunctionCall {
        /// Echoed in the `function_call_output`.
        call_id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object as a string.
        arguments: String,
    },
    /// A call of the native shell tool.
    ShellCall {
        /// Echoed in the `shell_call_output`.
        call_id: String,
        /// What to run.
        action: ShellAction,
    },
    /// Anything else (reasoning, `web_search_call`…): kept in the history, nothing to do.
    Other,
}

/// The text of a message.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MessageContent {
    /// Its `output_text` parts, in order.
    pub texts: Vec<String>,
    /// Its `refusal` parts, joined.
    pub refusal: Option<String>,
}

impl MessageContent {
    /// All text parts as one string.
    pub fn text(&self) -> String {
        self.texts.concat()
    }
}

/// `action` of a native `shell_call`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ShellAction {
    /// Command lines, run one after the other.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Timeout of each command.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Characters of output the model wants back per stream.
    #[serde(default)]
    pub max_output_length: Option<usize>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Message {
        #[serde(default)]
        content: Vec<ContentPart>,
    },
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
    },
    ShellCall {
        call_id: String,
        #[serde(default)]
        action: ShellAction,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentPart {
    OutputText {
        #[serde(default)]
        text: String,
    },
    Refusal {
        #[serde(default)]
        refusal: String,
    },
    #[serde(other)]
    Other,
}

impl OutputItem {
    /// Reads an output item; one that cannot be read is [`OutputItem::Other`].
    pub fn parse(item: &Value) -> Self {
        match Wire::deserialize(item) {
            Ok(Wire::Message { content }) => {
                let mut message = MessageContent::default();
                let mut refusals = Vec::new();
                for part in content {
                    match part {
                        ContentPart::OutputText { text } => message.texts.push(text),
                        ContentPart::Refusal { refusal } => refusals.push(refusal),
                        ContentPart::Other => {}
                    }
                }
                if !refusals.is_empty() {
                    message.refusal = Some(refusals.concat());
                }
                Self::Message(message)
            }
            Ok(Wire::FunctionCall {
                call_id,
                name,
                arguments,
            }) => Self::FunctionCall {
                call_id,
                name,
                arguments,
            },
            Ok(Wire::ShellCall { call_id, action }) => Self::ShellCall { call_id, action },
            Ok(Wire::Other) => Self::Other,
            Err(e) => {
                let kind = item.get("type").and_then(Value::as_str).unwrap_or("?");
                tracing::warn!(kind, error = %e, "unreadable output item; passed through");
                Self::Other
            }
        }
    }

    /// Whether the item asks the agent to run something.
    pub fn is_tool_call(&self) -> bool {
        matches!(self, Self::FunctionCall { .. } | Self::ShellCall { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_are_classified() {
        let message = json!({"type":"message","id":"msg_1","role":"assistant","status":"completed",
            "content":[{"type":"output_text","text":"Hello","annotations":[]},{"type":"output_text","text":" you"}]});
        let OutputItem::Message(content) = OutputItem::parse(&message) else {
            panic!("not a message");
        };
        assert_eq!(content.text(), "Hello you");
        let call = json!({"type":"function_call","id":"fc_1","call_id":"call_1","name":"shell","arguments":"{}"});
        assert!(OutputItem::parse(&call).is_tool_call());
        let shell = json!({"type":"shell_call","call_id":"c","action":{"commands":["ls"],"timeout_ms":1000}});
        assert!(matches!(
            OutputItem::parse(&shell),
            OutputItem::ShellCall { .. }
        ));
        let search = json!({"type":"web_search_call","id":"ws_1","status":"completed","action":{"type":"search","query":"x"}});
        assert_eq!(OutputItem::parse(&search), OutputItem::Other);
        let refusal = json!({"type":"message","content":[{"type":"refusal","refusal":"No."}]});
        let OutputItem::Message(content) = OutputItem::parse(&refusal) else {
            panic!("not a message");
        };
        assert_eq!(content.refusal.as_deref(), Some("No."));
    }
}

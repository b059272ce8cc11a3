//! What the agent writes to the CLI's stdin (`--input-format stream-json`): the
//! initialize control request carrying the system prompt, then the user turn.

use serde_json::{Value, json};

/// The id of our initialize request (one per CLI process, so a constant will do).
pub const INITIALIZE_ID: &str = "runtimeuse_init_1";

/// The initialize control request, with the system prompt (as the Agent SDK sends it).
pub fn initialize(system_prompt: &str) -> String {
    line(&json!({
        "type": "control_request",
        "request_id": INITIALIZE_ID,
        "request": {"subtype": "initialize", "systemPrompt": system_prompt},
    }))
}

/// The user turn.
pub fn user_turn(prompt: &str) -> String {
    line(&json!({
        "type": "user",
        "session_id": "",
        "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
        "parent_tool_use_id": null,
    }))
}

/// The answer to a control request from the CLI that the runtime does not serve.
pub fn refuse(request_id: &str, subtype: &str) -> String {
    line(&json!({
        "type": "control_response",
        "response": {
            "subtype": "error",
            "request_id": request_id,
            "error": format!("runtimeuse does not handle {subtype:?} control requests"),
        },
    }))
}

fn line(value: &Value) -> String {
    let mut text = value.to_string();
    text.push('\n');
    text
}

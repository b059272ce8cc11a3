//! Builders of streamed Responses API answers, event by event as the real API sends them
//! (`response.created`, item added, deltas, item done, …, `response.completed`).

#![allow(dead_code)]

use serde_json::{Value, json};

/// One streamed response under construction.
pub struct ResponseBuilder {
    id: String,
    model: String,
    sequence: u64,
    events: Vec<Value>,
    output: Vec<Value>,
    usage: Value,
}

impl ResponseBuilder {
    /// A response that starts with `response.created` and `response.in_progress`.
    pub fn new(id: &str) -> Self {
        let mut builder = Self {
            id: id.to_owned(),
            model: "gpt-test".to_owned(),
            sequence: 0,
            events: Vec::new(),
            output: Vec::new(),
            usage: json!({
                "input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 15
            }),
        };
        let shell = builder.response("in_progress", false);
        builder.push(json!({"type": "response.created", "response": shell}));
        let shell = builder.response("in_progress", false);
        builder.push(json!({"type": "response.in_progress", "response": shell}));
        builder
    }

    fn push(&mut self, mut event: Value) {
        event["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        self.events.push(event);
    }

    fn response(&self, status: &str, with_output: bool) -> Value {
        json!({
            "id": self.id, "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": self.model, "output": if with_output { json!(self.output) } else { json!([]) },
            "usage": if with_output { self.usage.clone() } else { Value::Null },
            "error": null, "incomplete_details": null
        })
    }

    fn item_added_and_done(&mut self, added: Value, middle: Vec<Value>, done: Value) {
        let index = self.output.len();
        self.push(
            json!({"type": "response.output_item.added", "output_index": index, "item": added}),
        );
        for mut event in middle {
            event["output_index"] = json!(index);
            self.push(event);
        }
        self.push(
            json!({"type": "response.output_item.done", "output_index": index, "item": done}),
        );
        self.output.push(done);
    }

    /// An assistant message whose text is streamed in a few deltas.
    pub fn message(mut self, text: &str) -> Self {
        let id = format!("msg_{}", self.output.len());
        let chars: Vec<char> = text.chars().collect();
        let mut middle = vec![json!({"type": "response.content_part.added", "item_id": id,
            "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})];
        for chunk in chars.chunks(chars.len().div_ceil(3).max(1)) {
            let delta: String = chunk.iter().collect();
            middle.push(json!({"type": "response.output_text.delta", "item_id": id,
                "content_index": 0, "delta": delta, "logprobs": []}));
        }
        middle.push(json!({"type": "response.output_text.done", "item_id": id,
            "content_index": 0, "text": text, "logprobs": []}));
        let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        middle.push(json!({"type": "response.content_part.done", "item_id": id,
            "content_index": 0, "part": part}));
        let added = json!({"id": id, "type": "message", "status": "in_progress",
            "role": "assistant", "content": []});
        let done = json!({"id": id, "type": "message", "status": "completed",
            "role": "assistant", "content": [part]});
        self.item_added_and_done(added, middle, done);
        self
    }

    /// A call of the `shell` function tool.
    pub fn shell_call(mut self, call_id: &str, command: &str, timeout_ms: Option<u64>) -> Self {
        let id = format!("fc_{}", self.output.len());
        let arguments = json!({"command": command, "timeout_ms": timeout_ms}).to_string();
        self = self.function_call_raw(&id, call_id, "shell", &arguments);
        self
    }

    /// A call of any function, with raw arguments.
    pub fn function_call_raw(
        mut self,
        id: &str,
        call_id: &str,
        name: &str,
        arguments: &str,
    ) -> Self {
        let added = json!({"id": id, "type": "function_call", "status": "in_progress",
            "call_id": call_id, "name": name, "arguments": ""});
        let middle = vec![
            json!({"type": "response.function_call_arguments.delta", "item_id": id, "delta": arguments}),
            json!({"type": "response.function_call_arguments.done", "item_id": id, "arguments": arguments}),
        ];
        let done = json!({"id": id, "type": "function_call", "status": "completed",
            "call_id": call_id, "name": name, "arguments": arguments});
        self.item_added_and_done(added, middle, done);
        self
    }

    /// A call of the native shell tool (`shell_call`).
    pub fn native_shell_call(
        mut self,
        call_id: &str,
        commands: &[&str],
        max_output_length: u64,
    ) -> Self {
        let id = format!("sh_{}", self.output.len());
        let action = json!({"commands": commands, "timeout_ms": 10_000, "max_output_length": max_output_length});
        let added = json!({"id": id, "type": "shell_call", "status": "in_progress",
            "call_id": call_id, "action": action});
        let mut done = added.clone();
        done["status"] = json!("completed");
        self.item_added_and_done(added, Vec::new(), done);
        self
    }

    /// A hosted web search.
    pub fn web_search(mut self, query: &str) -> Self {
        let id = format!("ws_{}", self.output.len());
        let added = json!({"id": id, "type": "web_search_call", "status": "in_progress"});
        let middle = ["in_progress", "searching", "completed"]
            .iter()
            .map(
                |phase| json!({"type": format!("response.web_search_call.{phase}"), "item_id": id}),
            )
            .collect();
        let done = json!({"id": id, "type": "web_search_call", "status": "completed",
            "action": {"type": "search", "query": query}});
        self.item_added_and_done(added, middle, done);
        self
    }

    /// Sets the usage reported at completion.
    pub fn usage(mut self, input: u64, output: u64) -> Self {
        self.usage = json!({
            "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output
        });
        self
    }

    /// The events, ending with `response.completed`.
    pub fn completed(mut self) -> Vec<Value> {
        let response = self.response("completed", true);
        self.push(json!({"type": "response.completed", "response": response}));
        self.events
    }

    /// The events so far, without any final event (a stream cut short).
    pub fn unfinished(self) -> Vec<Value> {
        self.events
    }

    /// The events, ending with `response.failed`.
    pub fn failed(mut self, code: &str, message: &str) -> Vec<Value> {
        let mut response = self.response("failed", true);
        response["error"] = json!({"code": code, "message": message});
        self.push(json!({"type": "response.failed", "response": response}));
        self.events
    }
}

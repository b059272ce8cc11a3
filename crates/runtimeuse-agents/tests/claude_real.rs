//! The real Claude Code CLI (npm `@anthropic-ai/claude-code`, installed into
//! target/claude-cli by scripts/install-claude-cli) under `--agent claude`, talking to a
//! local mock of the Anthropic Messages API (`ANTHROPIC_BASE_URL`, SSE on loopback), so
//! that the lines we parse are the real CLI's.
//!
//! Skipped (with a note) when the CLI is not installed, unless
//! `RUNTIMEUSE_REQUIRE_CLAUDE_CLI=1`, which scripts/test sets after installing it.

#[path = "handler_support/mod.rs"]
mod handler_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Uri, header};
use axum::response::Response;
use handler_support::{invocation, invoke, of_type, terminal};
use runtimeuse_agents::claude::{ClaudeAgent, ClaudeConfig};
use runtimeuse_server::server::{Server, ServerConfig};
use runtimeuse_server::session::SessionConfig;
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn cli() -> Option<PathBuf> {
    let path = std::env::var_os("CLAUDE_CLI_PATH").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/claude-cli/node_modules/.bin/claude")
        },
        PathBuf::from,
    );
    path.exists().then_some(path)
}

fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .map(|(name, data)| {
            let mut data = data.clone();
            data["type"] = json!(name);
            format!("event: {name}\ndata: {data}\n\n")
        })
        .collect()
}

/// Answers every Messages API call with one streamed text message.
async fn messages(State(seen): State<Seen>, uri: Uri, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    seen.lock()
        .unwrap()
        .push((uri.path().to_owned(), request.clone()));
    if uri.path() != "/v1/messages" {
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"input_tokens":5}"#))
            .unwrap();
    }
    let model = request["model"]
        .as_str()
        .unwrap_or("claude-mock")
        .to_owned();
    let offers_structured = request["tools"]
        .as_array()
        .is_some_and(|tools| tools.iter().any(|t| t["name"] == "StructuredOutput"));
    let answered = request["messages"].to_string().contains("tool_result");
    if offers_structured && !answered {
        return sse_response(sse(&[
            (
                "message_start",
                json!({"message": {"id": "msg_mock_t", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 11, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"index": 0, "content_block": {"type": "tool_use",
                "id": "toolu_mock_1", "name": "StructuredOutput", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"index": 0, "delta": {"type": "input_json_delta",
                "partial_json": "{\"n\": 42}"}}),
            ),
            ("content_block_stop", json!({"index": 0})),
            (
                "message_delta",
                json!({"delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 9}}),
            ),
            ("message_stop", json!({})),
        ]));
    }
    let text = "Hello from the mock Messages API";
    let stream = sse(&[
        (
            "message_start",
            json!({"message": {"id": "msg_mock_1", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        ("content_block_stop", json!({"index": 0})),
        (
            "message_delta",
            json!({"delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 7}}),
        ),
        ("message_stop", json!({})),
    ]);
    sse_response(stream)
}

fn sse_response(stream: String) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from(stream))
        .unwrap()
}

#[tokio::test]
async fn the_real_cli_returns_structured_output_validated_against_the_schema() {
    let Some(program) = installed() else {
        return;
    };
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(messages).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let home = tempfile::tempdir().unwrap();
    let mut config = ClaudeConfig::new(&program);
    config.max_turns = Some(3);
    config.idle_timeout = Duration::from_secs(120);
    let session = SessionConfig::new(Arc::new(ClaudeAgent::new(config)));
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), session))
        .await
        .unwrap()
        .spawn();
    let schema = json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]});
    let message = invocation(
        "Give me n.",
        json!({
            "model": "claude-sonnet-4-5",
            "output_format_json_schema_str": json!({"type":"json_schema","schema":schema}).to_string(),
            "agent_env": {
                "ANTHROPIC_BASE_URL": base,
                "ANTHROPIC_API_KEY": "sk-ant-mock-key-structured",
                "HOME": home.path(),
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            },
        }),
    );
    let frames = invoke(&server, &message).await;
    let result = terminal(&frames);
    assert_eq!(result["message_type"], "result_message", "{frames:?}");
    assert_eq!(
        result["data"]["structured_output"],
        json!({"n": 42}),
        "{result}"
    );
    server.shutdown().await.unwrap();
}

/// The installed CLI, or `None` (the test is skipped) when it is not installed and not
/// required.
fn installed() -> Option<PathBuf> {
    let program = cli();
    if program.is_none() {
        assert!(
            std::env::var("RUNTIMEUSE_REQUIRE_CLAUDE_CLI").as_deref() != Ok("1"),
            "the Claude Code CLI is not installed (run scripts/install-claude-cli)"
        );
        eprintln!("skipped: the Claude Code CLI is not installed (scripts/install-claude-cli)");
    }
    program
}

#[tokio::test]
async fn the_real_cli_runs_against_a_local_messages_api() {
    let Some(program) = installed() else {
        return;
    };
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(messages).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let home = tempfile::tempdir().unwrap();
    let mut config = ClaudeConfig::new(&program);
    config.max_turns = Some(3);
    config.idle_timeout = Duration::from_secs(120);
    let session = SessionConfig::new(Arc::new(ClaudeAgent::new(config)));
    let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), session))
        .await
        .unwrap()
        .spawn();
    let key = "sk-ant-mock-key-0123456789";
    let message = invocation(
        "Say hello.",
        json!({
            "system_prompt": "You are the runtimeuse real-CLI test.",
            "model": "claude-sonnet-4-5",
            "agent_env": {
                "ANTHROPIC_BASE_URL": base,
                "ANTHROPIC_API_KEY": key,
                "HOME": home.path(),
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            },
        }),
    );
    let frames = invoke(&server, &message).await;
    let result = terminal(&frames);
    assert_eq!(result["message_type"], "result_message", "{frames:?}");
    assert_eq!(result["data"]["text"], "Hello from the mock Messages API");
    let texts: Vec<&Value> = of_type(&frames, "assistant_message")
        .iter()
        .map(|f| &f["text_blocks"])
        .collect();
    assert_eq!(texts, vec![&json!(["Hello from the mock Messages API"])]);
    let metadata = &result["metadata"];
    assert_eq!(metadata["model"], "claude-sonnet-4-5");
    assert_eq!(metadata["num_turns"], 1);
    assert!(
        metadata["session_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{metadata}"
    );
    assert!(metadata["usage"]["output_tokens"].is_number(), "{metadata}");
    assert!(metadata["duration_ms"].is_number(), "{metadata}");
    // The CLI sent our system prompt and the user turn to the API.
    let requests = seen.lock().unwrap().clone();
    let turn = requests
        .iter()
        .find(|(path, body)| {
            path == "/v1/messages" && body["messages"].to_string().contains("Say hello.")
        })
        .unwrap_or_else(|| panic!("no request carried the prompt: {requests:?}"));
    assert!(
        turn.1["system"]
            .to_string()
            .contains("You are the runtimeuse real-CLI test."),
        "system prompt not sent: {}",
        turn.1["system"]
    );
    assert!(!serde_json::to_string(&frames).unwrap().contains(key));
    server.shutdown().await.unwrap();
}

//! `--agent claude` through the whole runtime, with a fake `claude` on PATH speaking
//! stream-json (tests/claude_support/fake_claude.py).

mod claude_support;
#[path = "handler_support/mod.rs"]
mod handler_support;

use std::path::Path;
use std::time::Duration;

use claude_support::{FakeCli, serve};
use handler_support::{Client, invocation, invoke, of_type, read_pids, terminal, wait_gone};
use serde_json::{Value, json};

fn with_env(fake: &FakeCli, prompt: &str, extra: Value) -> Value {
    let mut message = invocation(prompt, extra);
    let mut env = fake.agent_env();
    if let Some(more) = message.get("agent_env").and_then(Value::as_object) {
        env.as_object_mut().unwrap().extend(more.clone());
    }
    message["agent_env"] = env;
    message
}

fn schema() -> Value {
    json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]})
}

fn wrapped(schema: &Value) -> String {
    json!({"type":"json_schema","schema":schema}).to_string()
}

#[tokio::test]
async fn text_blocks_become_assistant_messages_and_the_result_carries_metadata() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let frames = invoke(&server, &with_env(&fake, "TEXT", json!({}))).await;
    let texts: Vec<&Value> = of_type(&frames, "assistant_message")
        .iter()
        .map(|f| &f["text_blocks"])
        .collect();
    assert_eq!(texts, vec![&json!(["first"]), &json!(["second"])]);
    let result = terminal(&frames);
    assert_eq!(result["message_type"], "result_message", "{result}");
    assert_eq!(result["data"], json!({"type":"text","text":"second"}));
    let metadata = &result["metadata"];
    assert_eq!(metadata["model"], "test-model");
    assert_eq!(metadata["session_id"], "fake-session-1");
    assert_eq!(metadata["num_turns"], 1);
    assert_eq!(metadata["duration_ms"], 12);
    assert_eq!(metadata["duration_api_ms"], 9);
    assert_eq!(metadata["total_cost_usd"], 0.0012);
    assert_eq!(metadata["usage"]["output_tokens"], 2);
    // The result came first, then stdin was closed and the fake exited by itself.
    assert!(fake.saw_stdin_closed(), "stdin was never closed");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_cli_gets_the_sdk_arguments_initialize_then_the_user_turn_and_its_env() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let message = with_env(
        &fake,
        "hello",
        json!({
            "system_prompt": "Be brief.",
            "output_format_json_schema_str": wrapped(&schema()),
            "agent_env": {"ANTHROPIC_API_KEY": "sk-ant-test-secret-123", "EXTRA": "x"},
        }),
    );
    let frames = invoke(&server, &message).await;
    // "hello" is not valid against the schema: the run fails, but its inputs are recorded.
    assert_eq!(terminal(&frames)["message_type"], "error_message");
    let argv = fake.argv();
    for expected in [
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "--model=test-model",
        "--max-turns=7",
        "--permission-mode=bypassPermissions",
        "--allow-dangerously-skip-permissions",
    ] {
        assert!(
            argv.iter().any(|a| a == expected),
            "{expected} missing from {argv:?}"
        );
    }
    // The bare schema, unwrapped.
    let schema_arg = argv
        .iter()
        .find_map(|a| a.strip_prefix("--json-schema="))
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(schema_arg).unwrap(), schema());
    let stdin = fake.stdin_lines();
    assert_eq!(stdin[0]["type"], "control_request");
    assert_eq!(stdin[0]["request"]["subtype"], "initialize");
    assert_eq!(stdin[0]["request"]["systemPrompt"], "Be brief.");
    assert_eq!(stdin[1]["type"], "user");
    assert_eq!(stdin[1]["message"]["content"][0]["text"], "hello");
    let env = fake.env();
    assert_eq!(
        env.get("ANTHROPIC_API_KEY").map(String::as_str),
        Some("sk-ant-test-secret-123")
    );
    assert_eq!(env.get("EXTRA").map(String::as_str), Some("x"));
    assert_eq!(
        env.get("CLAUDE_CODE_ENTRYPOINT").map(String::as_str),
        Some("sdk-ts")
    );
    assert!(!env.keys().any(|k| k.starts_with("RUNTIMEUSE_")), "{env:?}");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(env.get("IS_SANDBOX").map(String::as_str), Some("1"));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_api_key_is_redacted_from_what_comes_back() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let message = with_env(
        &fake,
        "ECHO_KEY",
        json!({"agent_env": {"ANTHROPIC_API_KEY": "sk-ant-very-secret-42"}}),
    );
    let frames = invoke(&server, &message).await;
    let all = serde_json::to_string(&frames).unwrap();
    assert!(!all.contains("sk-ant-very-secret-42"), "{all}");
    assert_eq!(terminal(&frames)["message_type"], "result_message");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn valid_structured_output_is_the_result() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let message = with_env(
        &fake,
        r#"STRUCTURED:{"n":41}"#,
        json!({"output_format_json_schema_str": wrapped(&schema())}),
    );
    let frames = invoke(&server, &message).await;
    let result = terminal(&frames);
    assert_eq!(result["message_type"], "result_message", "{result}");
    assert_eq!(result["data"]["structured_output"], json!({"n":41}));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn structured_output_not_matching_the_schema_is_an_error() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let message = with_env(
        &fake,
        r#"STRUCTURED:{"n":"forty-one"}"#,
        json!({"output_format_json_schema_str": wrapped(&schema())}),
    );
    let frames = invoke(&server, &message).await;
    let error = terminal(&frames);
    assert_eq!(error["message_type"], "error_message", "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("does not match"),
        "{error}"
    );
    assert_eq!(error["metadata"]["num_turns"], 1);
    assert_eq!(error["metadata"]["error_name"], "StructuredOutputMismatch");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn many_assistant_messages_arrive_in_order() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let frames = invoke(&server, &with_env(&fake, "MANY:200", json!({}))).await;
    let texts: Vec<String> = of_type(&frames, "assistant_message")
        .iter()
        .map(|f| f["text_blocks"][0].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(terminal(&frames)["data"]["text"], "message 199");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_error_result_is_one_error_message_with_its_errors_metadata_and_stderr() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let frames = invoke(&server, &with_env(&fake, "ERROR_RESULT", json!({}))).await;
    assert_eq!(of_type(&frames, "error_message").len(), 1);
    let error = terminal(&frames);
    assert_eq!(error["message_type"], "error_message");
    let text = error["error"].as_str().unwrap();
    assert!(text.contains("error_max_turns"), "{text}");
    assert!(text.contains("Reached maximum number of turns"), "{text}");
    assert_eq!(error["metadata"]["error_name"], "ClaudeError");
    assert_eq!(error["metadata"]["num_turns"], 1);
    assert_eq!(error["metadata"]["session_id"], "fake-session-1");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_is_an_error_with_the_exit_status_and_stderr_tail() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let frames = invoke(&server, &with_env(&fake, "CRASH", json!({}))).await;
    let error = terminal(&frames);
    assert_eq!(error["message_type"], "error_message");
    let text = error["error"].as_str().unwrap();
    assert!(text.contains("without a result"), "{text}");
    assert!(text.contains("boom: the fake CLI fell over"), "{text}");
    assert!(
        error["metadata"]["exit_status"]
            .as_str()
            .unwrap()
            .contains('3'),
        "{error}"
    );
    assert_eq!(error["metadata"]["model"], "test-model");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_line_that_is_not_stream_json_is_an_error_quoting_it() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |_| {}).await;
    let frames = invoke(&server, &with_env(&fake, "GARBAGE", json!({}))).await;
    let error = terminal(&frames);
    assert_eq!(error["message_type"], "error_message");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("this is not stream-json"),
        "{error}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_cli_is_stopped_after_the_idle_limit() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |c| {
        c.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let frames = invoke(&server, &with_env(&fake, "SILENT", json!({}))).await;
    let error = terminal(&frames);
    assert_eq!(error["message_type"], "error_message");
    assert!(
        error["error"].as_str().unwrap().contains("printed nothing"),
        "{error}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cancel_kills_the_cli_and_its_grandchildren_and_the_session_goes_on() {
    let fake = FakeCli::new();
    let server = serve(Path::new("claude"), |c| {
        c.stop_grace = Duration::from_millis(500);
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.send(&with_env(&fake, "SLOW", json!({}))).await;
    let first = client.next().await;
    let first = if first["message_type"] == "heartbeat_message" {
        client.next().await
    } else {
        first
    };
    assert_eq!(first["text_blocks"], json!(["working"]), "{first}");
    let pids = read_pids(&fake.pids_path()).await;
    assert_eq!(pids.len(), 2);
    client
        .send(&json!({"message_type": "cancel_message"}))
        .await;
    let frames = client.until_terminal().await;
    assert_eq!(terminal(&frames)["message_type"], "error_message");
    assert!(wait_gone(&pids).await, "processes left: {pids:?}");
    // The same connection serves the next invocation.
    let frames = client.request(&with_env(&fake, "again", json!({}))).await;
    assert_eq!(terminal(&frames)["data"]["text"], "again");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_cli_is_a_clear_error_with_the_install_hint() {
    let server = serve(Path::new("/nonexistent/claude"), |_| {}).await;
    let frames = invoke(&server, &invocation("hi", json!({}))).await;
    let error = terminal(&frames);
    assert_eq!(error["message_type"], "error_message");
    assert!(
        error["error"].as_str().unwrap().contains("npm install"),
        "{error}"
    );
    let probe = runtimeuse_agents::claude::probe(Path::new("/nonexistent/claude")).await;
    assert!(
        probe
            .unwrap_err()
            .to_string()
            .contains("@anthropic-ai/claude-code")
    );
    let fake = FakeCli::new();
    let version = runtimeuse_agents::claude::probe(&fake.bin().join("claude"))
        .await
        .unwrap();
    assert!(version.contains("Claude Code"), "{version}");
}

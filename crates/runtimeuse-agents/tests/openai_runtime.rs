//! The OpenAI agent behind the whole runtime: a WebSocket client sends an invocation whose
//! `agent_env` carries the key and the fake's URL, and reads what the runtime sends back.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use runtimeuse_agents::openai::OpenAiAgent;
use runtimeuse_server::server::{Server, ServerConfig, ServerHandle};
use runtimeuse_server::session::SessionConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use support::fake_openai::{FakeOpenAi, Scripted};
use support::harness::{KEY, config};
use support::responses::ResponseBuilder;

/// Sends `invocation` and returns every frame up to and including the terminal one.
async fn invoke(ws_url: &str, invocation: Value) -> Vec<Value> {
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    socket
        .send(Message::Text(invocation.to_string().into()))
        .await
        .unwrap();
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("no terminal message")
            .expect("the socket closed")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        let kind = frame["message_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        frames.push(frame);
        if kind == "result_message" || kind == "error_message" {
            return frames;
        }
    }
}

/// The whole runtime with the OpenAI agent, on a free loopback port.
async fn serve_openai() -> ServerHandle {
    let agent = Arc::new(OpenAiAgent::new(config()));
    let server_config =
        ServerConfig::new("127.0.0.1:0".parse().unwrap(), SessionConfig::new(agent));
    Server::bind(server_config).await.unwrap().spawn()
}

#[tokio::test]
async fn an_invocation_runs_the_loop_and_redacts_the_key_everywhere() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message("Checking the environment.")
            .shell_call("call_1", "echo key=$OPENAI_API_KEY", None)
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message(&format!("Your key is {KEY}."))
            .completed(),
    ));
    let server = serve_openai().await;

    let frames = invoke(
        &server.ws_url(),
        json!({
            "message_type": "invocation_message",
            "system_prompt": "You are a test.",
            "user_prompt": "What is my key?",
            "model": "gpt-test",
            "agent_env": {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url()},
            "secrets_to_redact": [KEY],
        }),
    )
    .await;
    server.shutdown().await.unwrap();

    let all = serde_json::to_string(&frames).unwrap();
    assert!(!all.contains(KEY), "the key leaked: {all}");
    let of = |kind: &str| -> Vec<&Value> {
        frames
            .iter()
            .filter(|f| f["message_type"] == kind)
            .collect()
    };
    let assistant = of("assistant_message");
    assert_eq!(assistant.len(), 2, "{frames:#?}");
    assert_eq!(
        assistant[0]["text_blocks"],
        json!(["Checking the environment."])
    );
    let stdout: String = of("command_output_message")
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    // The key is not in the command's environment at all.
    assert_eq!(stdout, "key=\n");
    let result = of("result_message");
    assert_eq!(result.len(), 1, "{frames:#?}");
    assert_eq!(
        result[0]["data"],
        json!({"type": "text", "text": "Your key is [REDACTED]."})
    );
    assert_eq!(result[0]["metadata"]["turns"], 2);
    assert_eq!(result[0]["metadata"]["usage"]["total_tokens"], 30);
    assert_eq!(
        fake.requests()[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}

#[tokio::test]
async fn a_provider_error_becomes_the_error_message() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Error {
        status: 401,
        headers: Vec::new(),
        body: json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
    });
    let server = serve_openai().await;

    let frames = invoke(
        &server.ws_url(),
        json!({
            "message_type": "invocation_message",
            "system_prompt": "",
            "user_prompt": "Hello",
            "model": "gpt-test",
            "agent_env": {"OPENAI_API_KEY": "sk-wrong", "OPENAI_BASE_URL": fake.base_url()},
        }),
    )
    .await;
    server.shutdown().await.unwrap();

    let error = frames.last().unwrap();
    assert_eq!(error["message_type"], "error_message");
    assert_eq!(
        error["error"],
        "OpenAI API error: status 401 (invalid_request_error): Incorrect API key provided."
    );
    assert_eq!(error["metadata"]["status"], 401);
    assert_eq!(error["metadata"]["code"], "invalid_api_key");
    assert_eq!(error["metadata"]["error_name"], "OpenAIAPIError");
}

/// Set in the environment of the child test process that
/// [`a_key_in_the_runtime_environment_never_reaches_commands_or_the_client`] starts.
const CHILD_MARKER: &str = "RUNTIMEUSE_TEST_KEY_IN_RUNTIME_ENV";
/// The key the child runtime has in its own environment.
const RUNTIME_KEY: &str = "sk-runtime-env-9876543210";

/// The runtime's environment can only be set at process start (`set_var` is unsafe):
/// this test runs [`key_in_the_runtime_environment_child`] in a copy of this test binary
/// whose environment holds `OPENAI_API_KEY`.
#[tokio::test]
async fn a_key_in_the_runtime_environment_never_reaches_commands_or_the_client() {
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "key_in_the_runtime_environment_child",
            "--nocapture",
        ])
        .env(CHILD_MARKER, "1")
        .env("OPENAI_API_KEY", RUNTIME_KEY)
        .env("OPENAI_ORG_ID", "org-runtime")
        .output()
        .await
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child test failed:\n{report}");
    assert!(
        report.contains("1 passed"),
        "the child test did not run:\n{report}"
    );
}

/// Runs only inside the child process started by the test above.
#[tokio::test]
async fn key_in_the_runtime_environment_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    assert_eq!(std::env::var("OPENAI_API_KEY").unwrap(), RUNTIME_KEY);
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, format!("stolen={RUNTIME_KEY}\n")).unwrap();
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .shell_call(
                "call_1",
                r#"echo "key=[$OPENAI_API_KEY][$OPENAI_ORG_ID]""#,
                None,
            )
            .shell_call("call_2", &format!("cat '{}'", keyfile.display()), None)
            .completed(),
    ));
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_2")
            .message(&format!("Your key is {RUNTIME_KEY}."))
            .completed(),
    ));
    let server = serve_openai().await;

    // Neither `agent_env` nor `secrets_to_redact` knows the key.
    let frames = invoke(
        &server.ws_url(),
        json!({
            "message_type": "invocation_message",
            "system_prompt": "You are a test.",
            "user_prompt": "What is my key?",
            "model": "gpt-test",
            "agent_env": {"OPENAI_BASE_URL": fake.base_url()},
        }),
    )
    .await;
    server.shutdown().await.unwrap();

    let all = serde_json::to_string(&frames).unwrap();
    assert!(!all.contains(RUNTIME_KEY), "the key leaked: {all}");
    let stdout: String = frames
        .iter()
        .filter(|f| f["message_type"] == "command_output_message")
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(stdout, "key=[][]\nstolen=[REDACTED]\n");
    let result = frames.last().unwrap();
    assert_eq!(
        result["data"],
        json!({"type": "text", "text": "Your key is [REDACTED]."}),
        "{frames:#?}"
    );
    let sent_back = fake.requests()[1].body["input"].to_string();
    assert!(!sent_back.contains(RUNTIME_KEY), "{sent_back}");
    assert_eq!(
        fake.requests()[0].authorization.as_deref(),
        Some(&*format!("Bearer {RUNTIME_KEY}"))
    );
}

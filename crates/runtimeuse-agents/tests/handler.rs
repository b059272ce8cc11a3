//! `--handler` with the Python example handler (examples/handlers/python/handler.py),
//! behind the whole runtime: a real WebSocket client, a real handler process per
//! invocation speaking the JSON-lines protocol.

mod handler_support;

use std::time::Duration;

use handler_support::{
    Client, invocation, invoke, of_type, python_handler, read_pids, serve, terminal, wait_gone,
};
use serde_json::{Value, json};

fn schema() -> Value {
    json!({
        "type": "json_schema",
        "schema": {
            "type": "object",
            "properties": {"n": {"type": "integer"}},
            "required": ["n"],
        },
    })
}

#[tokio::test]
async fn a_text_result_comes_back_as_the_result_message() {
    let server = serve(python_handler().await, |_| {}).await;
    let frames = invoke(&server, &invocation("ECHO:hello from python", json!({}))).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "result_message", "{frames:?}");
    assert_eq!(
        last["data"],
        json!({"type": "text", "text": "hello from python"})
    );
}

#[tokio::test]
async fn structured_output_matching_the_schema_is_the_result() {
    let server = serve(python_handler().await, |_| {}).await;
    let message = invocation(
        r#"STRUCTURED:{"n": 7}"#,
        json!({"output_format_json_schema_str": schema().to_string()}),
    );
    let frames = invoke(&server, &message).await;
    assert_eq!(
        terminal(&frames)["data"],
        json!({"type": "structured_output", "structured_output": {"n": 7}}),
        "{frames:?}"
    );
}

#[tokio::test]
async fn structured_output_not_matching_the_schema_is_an_error() {
    let server = serve(python_handler().await, |_| {}).await;
    let message = invocation(
        r#"STRUCTURED:{"n": "seven"}"#,
        json!({"output_format_json_schema_str": schema().to_string()}),
    );
    let frames = invoke(&server, &message).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message", "{frames:?}");
    assert_eq!(last["metadata"]["error_name"], "StructuredOutputMismatch");
}

#[tokio::test]
async fn assistant_messages_stream_in_order_before_the_result() {
    let server = serve(python_handler().await, |_| {}).await;
    let frames = invoke(&server, &invocation("STREAM:5", json!({}))).await;
    let texts: Vec<&Value> = of_type(&frames, "assistant_message")
        .into_iter()
        .map(|f| &f["text_blocks"][0])
        .collect();
    let expected: Vec<Value> = (1..=5)
        .map(|i| json!(format!("message {i} of 5")))
        .collect();
    assert_eq!(texts, expected.iter().collect::<Vec<_>>());
    assert_eq!(terminal(&frames)["data"]["text"], "streamed 5 messages");
}

#[tokio::test]
async fn a_command_the_handler_asks_for_runs_streams_and_answers_redacted() {
    let server = serve(python_handler().await, |_| {}).await;
    let message = invocation(
        "RUN:echo out-$TOKEN_VALUE; echo err-line >&2; exit 3",
        json!({
            "agent_env": {"TOKEN_VALUE": "hunter2-secret"},
            "secrets_to_redact": ["hunter2-secret"],
        }),
    );
    let frames = invoke(&server, &message).await;
    let outputs = of_type(&frames, "command_output_message");
    let stdout: String = outputs
        .iter()
        .filter(|f| f["stream"] == "stdout")
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    let stderr: String = outputs
        .iter()
        .filter(|f| f["stream"] == "stderr")
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(stdout, "out-[REDACTED]\n", "{frames:?}");
    assert_eq!(stderr, "err-line\n");
    assert_eq!(
        terminal(&frames)["data"]["text"],
        "exit=3 stdout=out-[REDACTED]\n"
    );
    assert!(!serde_json::to_string(&frames).unwrap().contains("hunter2"));
}

#[tokio::test]
async fn the_handler_sees_the_invocation_and_its_environment() {
    let server = serve(python_handler().await, |_| {}).await;
    let message = invocation(
        "INVOCATION",
        json!({
            "agent_env": {"HANDLER_TEST_VAR": "from-agent-env"},
            "secrets_to_redact": ["swordfish"],
            "source_id": "req-42",
        }),
    );
    let frames = invoke(&server, &message).await;
    let text = terminal(&frames)["data"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seen["type"], "invocation");
    assert_eq!(seen["protocol_version"], 1);
    assert_eq!(seen["system_prompt"], "You are a test.");
    assert_eq!(seen["model"], "test-model");
    assert_eq!(seen["source_id"], "req-42");
    assert_eq!(seen["output_schema"], Value::Null);
    assert_eq!(seen["env"]["HANDLER_TEST_VAR"], "from-agent-env");
    // The handler gets its secrets; they are redacted on the way back to the client.
    assert_eq!(seen["secrets"], json!(["[REDACTED]"]));

    let frames = invoke(
        &server,
        &invocation(
            "ENV:HANDLER_TEST_VAR",
            json!({"agent_env": {"HANDLER_TEST_VAR": "in-process-env"}}),
        ),
    )
    .await;
    assert_eq!(terminal(&frames)["data"]["text"], "in-process-env");
}

#[tokio::test]
async fn an_error_line_becomes_the_error_message_with_its_metadata() {
    let server = serve(python_handler().await, |_| {}).await;
    let frames = invoke(&server, &invocation("ERROR:it went wrong", json!({}))).await;
    assert_eq!(of_type(&frames, "error_message").len(), 1, "{frames:?}");
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message");
    assert_eq!(last["error"], "it went wrong");
    assert_eq!(last["metadata"]["source"], "python_handler");
}

#[tokio::test]
async fn a_crash_is_an_error_carrying_the_exit_status_and_stderr() {
    let server = serve(python_handler().await, |_| {}).await;
    let frames = invoke(
        &server,
        &invocation("CRASH:segfault-ish trouble", json!({})),
    )
    .await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message", "{frames:?}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("without sending a result"), "{error}");
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("segfault-ish trouble"), "{error}");
    assert_eq!(last["metadata"]["error_name"], "HandlerError");
    assert!(
        last["metadata"]["stderr"]
            .as_str()
            .unwrap()
            .contains("segfault-ish trouble")
    );
}

#[tokio::test]
async fn garbage_on_stdout_is_an_error_quoting_the_line() {
    let server = serve(python_handler().await, |_| {}).await;
    let frames = invoke(&server, &invocation("GARBAGE", json!({}))).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message", "{frames:?}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("not a protocol line"), "{error}");
    assert!(error.contains("this is not json"), "{error}");
}

#[tokio::test]
async fn a_silent_handler_is_stopped_after_the_idle_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let server = serve(python_handler().await, |c| {
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let message = invocation(
        "SILENT",
        json!({"agent_env": {"HANDLER_PID_FILE": pid_file, "HANDLER_GRANDCHILD": "1"}}),
    );
    let frames = invoke(&server, &message).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message", "{frames:?}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("sent nothing for 1 s"),
        "{last}"
    );
    let pids = read_pids(&pid_file).await;
    assert_eq!(pids.len(), 2);
    assert!(
        wait_gone(&pids).await,
        "handler or its child survived: {pids:?}"
    );
}

#[tokio::test]
async fn cancel_stops_the_handler_and_its_children_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    let server = serve(python_handler().await, |_| {}).await;
    let mut client = Client::connect(&server).await;
    client
        .send(&invocation(
            "SLOW:60000",
            json!({"agent_env": {"HANDLER_PID_FILE": pid_file, "HANDLER_GRANDCHILD": "1"}}),
        ))
        .await;
    let pids = read_pids(&pid_file).await;
    client
        .send(&json!({"message_type": "cancel_message"}))
        .await;
    let frames = client.until_terminal().await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message");
    assert_eq!(last["error"], "Request cancelled");
    assert!(
        wait_gone(&pids).await,
        "handler or its child survived: {pids:?}"
    );

    let frames = client
        .request(&invocation("ECHO:still here", json!({})))
        .await;
    assert_eq!(terminal(&frames)["data"]["text"], "still here");
}

#[tokio::test]
async fn a_command_running_when_cancel_arrives_is_killed_too() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("cmd-pid");
    let server = serve(python_handler().await, |_| {}).await;
    let mut client = Client::connect(&server).await;
    client
        .send(&invocation(
            &format!("RUN:echo $$ > {}; exec sleep 600", pid_file.display()),
            json!({}),
        ))
        .await;
    let pids = read_pids(&pid_file).await;
    client
        .send(&json!({"message_type": "cancel_message"}))
        .await;
    let frames = client.until_terminal().await;
    assert_eq!(terminal(&frames)["error"], "Request cancelled");
    assert!(wait_gone(&pids).await, "the command survived: {pids:?}");
}

//! Invocation and command-execution lifecycles through a real socket: results, streaming,
//! errors, structured output, heartbeats, pre/post commands, secrets.

mod common;

use std::time::Duration;

use common::{Peer, command_execution, invocation, of_type, output_text, start_runtime};
use serde_json::json;

#[tokio::test]
async fn echo_prompts_produce_text_results() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    for (prompt, expected) in [
        ("ECHO:hello world", "hello world"),
        ("just text", "just text"),
    ] {
        peer.send(invocation(prompt)).await;
        let (_, result) = peer.until_terminal().await;
        assert_eq!(result["message_type"], "result_message");
        assert_eq!(result["data"], json!({"type": "text", "text": expected}));
    }
}

#[tokio::test]
async fn structured_output_is_validated_against_the_schema() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let schema = json!({"type": "json_schema", "schema": {
        "type": "object",
        "properties": {"count": {"type": "integer"}},
        "required": ["count"], "additionalProperties": false
    }})
    .to_string();

    let mut message = invocation(r#"STRUCTURED:{"count": 3}"#);
    message["output_format_json_schema_str"] = json!(schema);
    peer.send(message).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(
        result["data"],
        json!({"type": "structured_output", "structured_output": {"count": 3}})
    );

    let mut message = invocation(r#"STRUCTURED:{"count": "three"}"#);
    message["output_format_json_schema_str"] = json!(schema);
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message");
    assert!(
        error["error"].as_str().unwrap().contains("does not match"),
        "{error}"
    );
    assert_eq!(error["metadata"]["error_name"], "StructuredOutputMismatch");

    // A bare schema (no wrapper) is accepted too.
    let mut message = invocation(r#"STRUCTURED:{"count": 1}"#);
    message["output_format_json_schema_str"] = json!(r#"{"type":"object","required":["count"]}"#);
    peer.send(message).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["structured_output"]["count"], 1);

    // Text where a schema was asked for is an error, not a silent pass.
    let mut message = invocation("ECHO:not json");
    message["output_format_json_schema_str"] = json!(schema);
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["metadata"]["error_name"], "StructuredOutputMissing");

    let mut message = invocation("ECHO:x");
    message["output_format_json_schema_str"] = json!("{broken");
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert!(
        error["error"].as_str().unwrap().contains("not valid JSON"),
        "{error}"
    );
}

#[tokio::test]
async fn stream_prompt_sends_assistant_messages_in_order() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(invocation("STREAM:5")).await;
    let (before, result) = peer.until_terminal().await;
    let texts: Vec<_> = of_type(&before, "assistant_message")
        .iter()
        .map(|m| m["text_blocks"][0].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<_> = (1..=5).map(|i| format!("message {i} of 5")).collect();
    assert_eq!(texts, expected);
    assert_eq!(result["data"]["text"], "streamed 5 messages");

    peer.send(invocation("STREAM_TEXT:one block")).await;
    let (before, result) = peer.until_terminal().await;
    assert_eq!(
        before,
        vec![json!({"message_type": "assistant_message", "text_blocks": ["one block"]})]
    );
    assert_eq!(result["data"]["text"], "done");
}

#[tokio::test]
async fn error_prompt_ends_with_error_and_echo_metadata() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(invocation("ERROR:it broke")).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(
        error,
        json!({"message_type": "error_message", "error": "it broke", "metadata": {"source": "echo_handler"}})
    );
}

#[tokio::test]
async fn heartbeats_are_sent_while_a_request_runs() {
    let runtime =
        start_runtime(|c| c.session.heartbeat_interval = Duration::from_millis(100)).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(invocation("SLOW:650")).await;
    let (before, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["text"], "done");
    let beats = of_type(&before, "heartbeat_message");
    assert!((4..=7).contains(&beats.len()), "{} heartbeats", beats.len());
    assert!(beats.iter().all(|b| b["phase"] == "request_in_flight"));
    let elapsed: Vec<u64> = beats
        .iter()
        .map(|b| b["elapsed_ms"].as_u64().unwrap())
        .collect();
    assert!(elapsed.windows(2).all(|w| w[0] < w[1]), "{elapsed:?}");
    assert!(elapsed[0] >= 90, "{elapsed:?}");

    // No heartbeats between requests.
    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.send(invocation("ECHO:quick")).await;
    let (before, _) = peer.until_terminal().await;
    assert!(
        of_type(&before, "heartbeat_message").is_empty(),
        "{before:?}"
    );
}

#[tokio::test]
async fn pre_and_post_commands_run_around_the_agent_with_streamed_output() {
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("created/by/cwd");
    let mut message = invocation(&format!("READ_FILE:{}/pre.txt", work.display()));
    message["pre_agent_invocation_commands"] = json!([
        {"command": "echo \"$GREETING\" > pre.txt; echo pre-out; echo pre-err >&2",
         "cwd": work, "env": {"GREETING": "from pre"}}
    ]);
    message["post_agent_invocation_commands"] = json!([{"command": "echo post-out"}]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (before, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["text"], "from pre\n");
    assert_eq!(output_text(&before, "stdout"), "pre-out\npost-out\n");
    assert_eq!(output_text(&before, "stderr"), "pre-err\n");
    let first = of_type(&before, "command_output_message")[0];
    assert!(
        first["command"]
            .as_str()
            .unwrap()
            .starts_with("echo \"$GREETING\"")
    );
}

#[tokio::test]
async fn failing_pre_command_stops_the_request_before_the_agent() {
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("agent-ran");
    let mut message = invocation(&format!("WRITE_FILE:{} x", marker.display()));
    message["pre_agent_invocation_commands"] = json!([{"command": "exit 3"}]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["error"], "pre-agent command failed with exit code: 3");
    assert!(!marker.exists());

    let mut message = invocation("ECHO:x");
    message["post_agent_invocation_commands"] = json!([{"command": "true"}, {"command": "exit 7"}]);
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(
        error["error"],
        "post-agent command failed with exit code: 7"
    );
}

#[tokio::test]
async fn command_execution_stops_after_the_first_failure() {
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let never = dir.path().join("never");
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let third = format!("touch {}", never.display());
    peer.send(command_execution(&["echo one", "echo two; exit 4", &third]))
        .await;
    let (before, result) = peer.until_terminal().await;
    assert_eq!(result["message_type"], "command_execution_result_message");
    assert_eq!(
        result["results"],
        json!([
            {"command": "echo one", "exit_code": 0, "stdout": "one\n"},
            {"command": "echo two; exit 4", "exit_code": 4, "stdout": "two\n"}
        ])
    );
    assert_eq!(output_text(&before, "stdout"), "one\ntwo\n");
    assert!(!never.exists());
}

#[tokio::test]
async fn signal_exit_codes_and_truncated_stdout_are_reported() {
    let runtime = start_runtime(|c| c.session.commands.capture_limit = 1000).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(command_execution(&[
        "head -c 5000 /dev/zero | tr '\\0' x",
        "kill -KILL $$",
    ]))
    .await;
    let (before, result) = peer.until_terminal().await;
    let first = &result["results"][0];
    assert_eq!(first["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!(first["stdout_truncated"], true);
    assert_eq!(
        output_text(&before, "stdout").len(),
        5000,
        "streaming carries everything"
    );
    assert_eq!(result["results"][1]["exit_code"], 137);
    assert!(result["results"][1].get("stdout_truncated").is_none());
}

#[tokio::test]
async fn secrets_are_redacted_everywhere_including_split_output() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let mut message = command_execution(&[
        "echo token=hunter2-xyz",
        "printf 'split hunter'; sleep 0.3; printf '2-xyz done\\n'",
        "echo hunter2-xyz >&2",
    ]);
    message["secrets_to_redact"] = json!(["hunter2-xyz"]);
    peer.send(message).await;
    let (before, result) = peer.until_terminal().await;
    let all = format!("{before:?}{result}");
    assert!(!all.contains("hunter2"), "secret leaked: {all}");
    assert_eq!(
        output_text(&before, "stdout"),
        "token=[REDACTED]\nsplit [REDACTED] done\n"
    );
    assert_eq!(output_text(&before, "stderr"), "[REDACTED]\n");
    assert_eq!(result["results"][1]["stdout"], "split [REDACTED] done\n");
    // The command strings themselves are redacted too.
    assert!(
        before
            .iter()
            .all(|m| !m["command"].as_str().unwrap_or("").contains("hunter2"))
    );

    let mut message = invocation("ECHO:the hunter2-xyz and a new-secret");
    message["secrets_to_redact"] = json!(["new-secret"]);
    peer.send(message).await;
    let (_, result) = peer.until_terminal().await;
    // Secrets accumulate over the session.
    assert_eq!(result["data"]["text"], "the [REDACTED] and a [REDACTED]");

    let mut message = invocation("ERROR:failed with new-secret");
    message["secrets_to_redact"] = json!([]);
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["error"], "failed with [REDACTED]");
}

#[tokio::test]
async fn command_env_is_merged_over_the_runtime_environment() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let mut message = command_execution(&["echo \"$A-$B-${PATH:+haspath}\""]);
    message["commands"][0]["env"] = json!({"A": "1", "B": "2"});
    peer.send(message).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["stdout"], "1-2-haspath\n");
}

#[tokio::test]
async fn result_frames_stay_under_the_clients_frame_limit_while_streaming_keeps_all() {
    // Default capture limit (10 MiB), but the result frame is kept under 1 MB so that
    // clients with a 1 MiB frame limit (Python websockets) still receive it.
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(command_execution(&["seq 1 400000", "echo small"]))
        .await;
    let (before, result) = peer.until_terminal().await;
    let encoded = result.to_string().len();
    assert!(encoded <= 1_000_000, "result frame of {encoded} bytes");
    let first = &result["results"][0];
    assert_eq!(first["stdout_truncated"], true);
    let kept = first["stdout"].as_str().unwrap();
    assert!(
        kept.starts_with("1\n2\n3\n") && kept.len() > 800_000,
        "{}",
        kept.len()
    );
    assert_eq!(result["results"][1]["stdout"], "small\n");
    let streamed = output_text(&before, "stdout");
    assert!(streamed.starts_with("1\n2\n") && streamed.ends_with("399999\n400000\nsmall\n"));
    assert_eq!(streamed.lines().count(), 400_001);
}

#[tokio::test]
async fn secrets_in_a_malformed_frame_are_not_echoed_back() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(json!({
        "message_type": "invocation_message",
        "system_prompt": "s", "user_prompt": "p", "model": "m",
        "secrets_to_redact": "lonely-s3cr3t"
    }))
    .await;
    let error = peer.recv().await;
    assert_eq!(error["message_type"], "error_message");
    let text = error.to_string();
    assert!(!text.contains("lonely-s3cr3t"), "{text}");
    assert!(text.contains("secrets_to_redact"), "{text}");
}

#[tokio::test]
async fn result_frames_are_sized_after_redaction() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    // 600 kB of a two-letter secret would become 3 MB of markers if sized before redaction.
    let mut message =
        command_execution(&["head -c 600000 /dev/zero | tr '\\0' x | sed 's/xx/ab/g'"]);
    message["secrets_to_redact"] = json!(["ab"]);
    peer.send(message).await;
    let (_, result) = peer.until_terminal().await;
    let encoded = result.to_string().len();
    assert!(encoded <= 1_000_000, "result frame of {encoded} bytes");
    assert_eq!(result["results"][0]["stdout_truncated"], true);
    assert!(
        result["results"][0]["stdout"]
            .as_str()
            .unwrap()
            .starts_with("[REDACTED][REDACTED]")
    );
}

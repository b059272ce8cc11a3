//! Golden wire fixtures. `client_*.json` were produced by the published Python client
//! (runtimeuse-client 0.15.1, `model_dump(mode="json")`), so they are exactly what the
//! runtime receives; `server_*.json` are what our runtime sends, and the interop suite
//! checks that the Python client's models accept each of them.

use std::collections::BTreeMap;

use runtimeuse_protocol::{
    ArtifactUploadRequest, AssistantMessage, ClientMessage, Command, CommandExecutionResultMessage,
    CommandOutput, CommandResultItem, ErrorMessage, Heartbeat, Incoming, OutputStream, ResultData,
    ResultMessage, ServerMessage, parse_client_frame, parse_server_frame,
};
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn client(name: &str) -> ClientMessage {
    match parse_client_frame(&fixture(name)) {
        Ok(Incoming::Message(message)) => message,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn minimal_invocation_from_python_client_parses_with_nulls_as_absent() {
    let ClientMessage::InvocationMessage(inv) = client("client_invocation_minimal") else {
        panic!("wrong variant");
    };
    assert_eq!(inv.user_prompt, "ECHO:hi");
    assert_eq!(inv.system_prompt, "sys");
    assert_eq!(inv.model, "gpt-4.1");
    assert!(inv.secrets_to_redact.is_empty());
    assert!(inv.agent_env.is_none() && inv.pre_agent_downloadables.is_none());
    assert!(inv.all_artifacts_dirs().is_empty());
}

#[test]
fn full_invocation_from_python_client_keeps_every_field() {
    let ClientMessage::InvocationMessage(inv) = client("client_invocation_full") else {
        panic!("wrong variant");
    };
    assert_eq!(inv.source_id.as_deref(), Some("src-1"));
    assert_eq!(
        inv.agent_env,
        Some(BTreeMap::from([("K".into(), "V".into())]))
    );
    assert_eq!(inv.secrets_to_redact, vec!["s1"]);
    assert_eq!(inv.all_artifacts_dirs(), vec!["/tmp/a"]);
    assert_eq!(inv.artifacts_ignore_content.as_deref(), Some("*.log"));
    let pre = inv.pre_agent_invocation_commands.unwrap();
    assert_eq!(pre[0].command, "echo pre");
    assert_eq!(pre[0].cwd.as_deref(), Some("/tmp"));
    assert_eq!(
        inv.post_agent_invocation_commands.unwrap(),
        vec![Command::new("echo post")]
    );
    let download = &inv.pre_agent_downloadables.unwrap()[0];
    assert_eq!(download.download_url, "https://example.com/x.zip");
    assert_eq!(download.working_dir, "/w");
    assert!(
        inv.output_format_json_schema_str
            .unwrap()
            .contains("json_schema")
    );
}

#[test]
fn command_executions_from_python_client_parse() {
    let ClientMessage::CommandExecutionMessage(min) = client("client_command_execution_minimal")
    else {
        panic!("wrong variant");
    };
    assert_eq!(min.commands, vec![Command::new("ls")]);
    let ClientMessage::CommandExecutionMessage(full) = client("client_command_execution_full")
    else {
        panic!("wrong variant");
    };
    assert_eq!(full.secrets_to_redact, vec!["z"]);
    assert_eq!(full.all_artifacts_dirs(), vec!["/a"]);
    assert_eq!(full.pre_execution_downloadables.unwrap().len(), 1);
    assert_eq!(full.commands[0].env.as_ref().unwrap()["X"], "y");
}

#[test]
fn control_messages_from_python_client_parse() {
    assert_eq!(client("client_cancel"), ClientMessage::CancelMessage);
    assert_eq!(
        client("client_end_session"),
        ClientMessage::EndSessionMessage
    );
    let ClientMessage::ArtifactUploadResponseMessage(r) = client("client_artifact_upload_response")
    else {
        panic!("wrong variant");
    };
    assert_eq!(r.presigned_url, "https://s3/x?sig=1");
    assert_eq!(r.content_type, "text/plain");
}

#[test]
fn deprecated_artifacts_dir_is_merged_without_duplicates() {
    let frame = json!({
        "message_type": "command_execution_message", "commands": [],
        "artifacts_dirs": ["/a", "/b"], "artifacts_dir": "/a"
    });
    let Ok(Incoming::Message(ClientMessage::CommandExecutionMessage(m))) =
        parse_client_frame(&frame.to_string())
    else {
        panic!("parse");
    };
    assert_eq!(m.all_artifacts_dirs(), vec!["/a", "/b"]);
}

fn server_messages() -> Vec<(&'static str, ServerMessage)> {
    let mut metadata = Map::new();
    metadata.insert("agent".into(), json!("echo"));
    vec![
        (
            "server_result_text",
            ServerMessage::ResultMessage(ResultMessage {
                data: ResultData::Text { text: "hi".into() },
                metadata: metadata.clone(),
            }),
        ),
        (
            "server_result_structured",
            ServerMessage::ResultMessage(ResultMessage {
                data: ResultData::StructuredOutput {
                    structured_output: json!({"n": 1}),
                },
                metadata: Map::new(),
            }),
        ),
        (
            "server_command_execution_result",
            ServerMessage::CommandExecutionResultMessage(CommandExecutionResultMessage {
                results: vec![
                    CommandResultItem {
                        command: "echo a".into(),
                        exit_code: 0,
                        stdout: Some("a\n".into()),
                        stdout_truncated: None,
                    },
                    CommandResultItem {
                        command: "yes".into(),
                        exit_code: 141,
                        stdout: Some("y\n".into()),
                        stdout_truncated: Some(true),
                    },
                ],
            }),
        ),
        (
            "server_error",
            ServerMessage::ErrorMessage(ErrorMessage {
                error: "boom".into(),
                metadata: Map::from_iter([("source".to_owned(), json!("echo_handler"))]),
            }),
        ),
        (
            "server_assistant",
            ServerMessage::AssistantMessage(AssistantMessage {
                text_blocks: vec!["one".into(), "two".into()],
            }),
        ),
        (
            "server_command_output",
            ServerMessage::CommandOutputMessage(CommandOutput {
                stream: OutputStream::Stderr,
                text: "warn\n".into(),
                command: "make".into(),
            }),
        ),
        (
            "server_heartbeat",
            ServerMessage::HeartbeatMessage(Heartbeat {
                phase: "request_in_flight".into(),
                elapsed_ms: 15000,
            }),
        ),
        (
            "server_artifact_upload_request",
            ServerMessage::ArtifactUploadRequestMessage(ArtifactUploadRequest {
                filename: "r.txt".into(),
                filepath: "/out/r.txt".into(),
            }),
        ),
        (
            "server_end_session_confirm",
            ServerMessage::EndSessionConfirmMessage,
        ),
    ]
}

#[test]
fn server_messages_serialise_exactly_as_the_fixtures() {
    for (name, message) in server_messages() {
        let expected: Value = serde_json::from_str(&fixture(name)).unwrap();
        let actual = serde_json::to_value(&message).unwrap();
        assert_eq!(actual, expected, "{name}");
        assert_eq!(actual["message_type"], message.message_type(), "{name}");
        // And they read back (what our Rust client does).
        match parse_server_frame(&actual.to_string()) {
            Ok(Incoming::Message(back)) => assert_eq!(back, message, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn client_messages_round_trip_through_serde_and_the_parser() {
    for name in [
        "client_invocation_full",
        "client_command_execution_full",
        "client_artifact_upload_response",
        "client_cancel",
        "client_end_session",
    ] {
        let message = client(name);
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(
            parse_client_frame(&text),
            Ok(Incoming::Message(message)),
            "{name}"
        );
    }
}

//! One-shot calls against the scripted fake runtime: results, callbacks, errors.

mod common;

use std::sync::{Arc, Mutex};

use common::{
    FakeRuntime, artifact_request, assistant, commands_result, options, stdout, text_result,
};
use runtimeuse_client::{
    ArtifactUploadResult, Command, Downloadable, Error, ExecuteCommandsOptions, OutputStream,
    QueryData, RuntimeUseClient,
};
use serde_json::json;

#[tokio::test]
async fn text_query_returns_text_and_metadata() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(json!({
            "message_type": "result_message",
            "data": {"type": "text", "text": "hello"},
            "metadata": {"usage": {"input_tokens": 3}, "duration_ms": 12}
        }))
        .await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);

    let result = client.query("ECHO:hello", options()).await.unwrap();

    assert_eq!(result.data, QueryData::Text("hello".into()));
    assert_eq!(result.text(), Some("hello"));
    assert_eq!(result.metadata["usage"]["input_tokens"], 3);
    assert_eq!(result.metadata["duration_ms"], 12);
    let sent = &fake.received()[0];
    assert_eq!(sent["user_prompt"], "ECHO:hello");
    assert_eq!(sent["system_prompt"], "You are a test.");
    assert_eq!(sent["model"], "echo");
    assert_eq!(sent["secrets_to_redact"], json!([]));
    assert!(sent["output_format_json_schema_str"].is_null());
    assert!(sent["artifacts_dirs"].is_null());
}

#[tokio::test]
async fn structured_query_deserialises_into_a_type() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Counts {
        file_count: u64,
        char_count: u64,
    }
    let fake = FakeRuntime::start(|mut conn| async move {
        let invocation = conn.expect("invocation_message").await;
        let format: serde_json::Value =
            serde_json::from_str(invocation["output_format_json_schema_str"].as_str().unwrap())
                .unwrap();
        assert_eq!(format["type"], "json_schema");
        assert_eq!(format["schema"]["type"], "object");
        conn.send(json!({
            "message_type": "result_message",
            "data": {"type": "structured_output", "structured_output": {"file_count": 2, "char_count": 40}},
            "metadata": {"cost": 0.5}
        }))
        .await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let options = options().output_schema(json!({"type": "object"}));

    let result = client.query("count", options).await.unwrap();

    assert_eq!(
        result.structured::<Counts>().unwrap(),
        Counts {
            file_count: 2,
            char_count: 40
        }
    );
    assert_eq!(result.metadata["cost"], 0.5);
    assert!(result.text().is_none());
}

#[tokio::test]
async fn structured_on_a_text_result_is_an_error() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(text_result("plain")).await;
        conn.drain().await;
    })
    .await;
    let result = RuntimeUseClient::new(&fake.url)
        .query("x", options())
        .await
        .unwrap();
    assert!(matches!(
        result.structured::<serde_json::Value>(),
        Err(Error::StructuredOutput(_))
    ));
}

#[tokio::test]
async fn every_option_goes_on_the_wire() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(text_result("ok")).await;
        conn.drain().await;
    })
    .await;
    let options = options()
        .source_id("src-1")
        .agent_env("MY_VAR", "value")
        .secrets_to_redact(["s3cret"])
        .artifacts_dirs(["/out"])
        .artifacts_ignore_content("*.tmp\n")
        .on_artifact_upload_request(|_| async {
            ArtifactUploadResult::new("http://u", "text/plain")
        })
        .pre_agent_invocation_commands([Command::new("echo pre")])
        .post_agent_invocation_commands([Command {
            command: "echo post".into(),
            cwd: Some("/tmp".into()),
            env: Some([("A".to_owned(), "1".to_owned())].into()),
        }])
        .pre_agent_downloadables([Downloadable {
            download_url: "http://example.invalid/a.zip".into(),
            working_dir: "/work".into(),
        }])
        .output_format_json_schema_str(r#"{"type":"object"}"#);

    RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap();

    let sent = &fake.received()[0];
    assert_eq!(sent["source_id"], "src-1");
    assert_eq!(sent["agent_env"], json!({"MY_VAR": "value"}));
    assert_eq!(sent["secrets_to_redact"], json!(["s3cret"]));
    assert_eq!(sent["artifacts_dirs"], json!(["/out"]));
    assert_eq!(sent["artifacts_ignore_content"], "*.tmp\n");
    assert_eq!(
        sent["pre_agent_invocation_commands"][0]["command"],
        "echo pre"
    );
    assert_eq!(sent["post_agent_invocation_commands"][0]["cwd"], "/tmp");
    assert_eq!(sent["post_agent_invocation_commands"][0]["env"]["A"], "1");
    assert_eq!(sent["pre_agent_downloadables"][0]["working_dir"], "/work");
    assert_eq!(
        sent["output_format_json_schema_str"],
        r#"{"type":"object"}"#
    );
}

#[tokio::test]
async fn callbacks_see_assistant_messages_and_command_output_in_order() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(stdout("echo pre", "pre\n")).await;
        conn.send(assistant("one")).await;
        conn.send(json!({"message_type": "command_output_message", "stream": "stderr", "text": "warn\n", "command": "echo post"})).await;
        conn.send(assistant("two")).await;
        conn.send(text_result("done")).await;
        conn.drain().await;
    })
    .await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (on_assistant, on_output) = (Arc::clone(&seen), Arc::clone(&seen));
    let options = options()
        .on_assistant_message(move |msg| {
            let seen = Arc::clone(&on_assistant);
            async move {
                seen.lock()
                    .unwrap()
                    .push(format!("assistant:{}", msg.text_blocks[0]))
            }
        })
        .on_command_output(move |chunk| {
            let seen = Arc::clone(&on_output);
            async move {
                let stream = if chunk.stream == OutputStream::Stdout {
                    "out"
                } else {
                    "err"
                };
                seen.lock()
                    .unwrap()
                    .push(format!("{stream}:{}:{}", chunk.command, chunk.text));
            }
        });

    let result = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap();

    assert_eq!(result.text(), Some("done"));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "out:echo pre:pre\n",
            "assistant:one",
            "err:echo post:warn\n",
            "assistant:two"
        ]
    );
}

#[tokio::test]
async fn artifact_request_is_answered_with_the_callback_url() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(artifact_request("report.txt", "/out/report.txt"))
            .await;
        let response = conn.expect("artifact_upload_response_message").await;
        assert_eq!(response["filename"], "report.txt");
        conn.send(text_result("uploaded")).await;
        conn.drain().await;
    })
    .await;
    let options = options()
        .artifacts_dirs(["/out"])
        .on_artifact_upload_request(|request| async move {
            ArtifactUploadResult::new(format!("http://blob/{}", request.filename), "text/plain")
        });

    let result = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap();

    assert_eq!(result.text(), Some("uploaded"));
    let response = &fake.received()[1];
    assert_eq!(
        *response,
        json!({
            "message_type": "artifact_upload_response_message",
            "filename": "report.txt",
            "filepath": "/out/report.txt",
            "presigned_url": "http://blob/report.txt",
            "content_type": "text/plain"
        })
    );
}

#[tokio::test]
async fn error_terminal_becomes_runtime_error_with_metadata() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(json!({
            "message_type": "error_message",
            "error": "agent exploded",
            "metadata": {"error_name": "Boom", "usage": {"tokens": 7}}
        }))
        .await;
        conn.drain().await;
    })
    .await;

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options())
        .await
        .unwrap_err();

    let Error::Runtime { error, metadata } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(error, "agent exploded");
    assert_eq!(metadata["error_name"], "Boom");
    assert_eq!(metadata["usage"]["tokens"], 7);
}

#[tokio::test]
async fn execute_commands_returns_each_command_result() {
    let fake = FakeRuntime::start(|mut conn| async move {
        let message = conn.expect("command_execution_message").await;
        assert_eq!(message["commands"][1]["command"], "false");
        conn.send(stdout("echo hi", "hi\n")).await;
        conn.send(commands_result(json!([
            {"command": "echo hi", "exit_code": 0, "stdout": "hi\n"},
            {"command": "false", "exit_code": 1, "stdout": ""}
        ])))
        .await;
        conn.drain().await;
    })
    .await;
    let output = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&output);
    let options = ExecuteCommandsOptions::new().on_command_output(move |chunk| {
        let sink = Arc::clone(&sink);
        async move { sink.lock().unwrap().push_str(&chunk.text) }
    });

    let result = RuntimeUseClient::new(&fake.url)
        .execute_commands(
            vec![Command::new("echo hi"), Command::new("false")],
            &options,
        )
        .await
        .unwrap();

    assert_eq!(result.results.len(), 2);
    assert_eq!(result.results[0].stdout.as_deref(), Some("hi\n"));
    assert!(!result.success());
    assert_eq!(result.first_failure().unwrap().command, "false");
    assert_eq!(*output.lock().unwrap(), "hi\n");
}

#[tokio::test]
async fn unknown_message_type_is_ignored() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(json!({"message_type": "telemetry_message", "anything": 1}))
            .await;
        conn.send(text_result("still fine")).await;
        conn.drain().await;
    })
    .await;
    let result = RuntimeUseClient::new(&fake.url)
        .query("p", options())
        .await
        .unwrap();
    assert_eq!(result.text(), Some("still fine"));
}

#[tokio::test]
async fn malformed_frames_are_protocol_errors() {
    for frame in [
        "this is not json",
        r#"{"message_type": "result_message"}"#,
        "[1, 2]",
    ] {
        let fake = FakeRuntime::start(move |mut conn| async move {
            conn.expect("invocation_message").await;
            conn.send_raw(frame).await;
            conn.drain().await;
        })
        .await;
        let error = RuntimeUseClient::new(&fake.url)
            .query("p", options())
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Protocol(_)), "{frame}: {error:?}");
    }
}

#[tokio::test]
async fn failing_callback_is_a_callback_error() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(assistant("hi")).await;
        conn.drain().await;
    })
    .await;
    let options = options().on_assistant_message(|_| async { Err::<(), _>("storage is down") });

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap_err();

    let Error::Callback(message) = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("on_assistant_message") && message.contains("storage is down"));
}

#[tokio::test]
async fn artifacts_dirs_and_upload_callback_must_come_together() {
    let client = RuntimeUseClient::new("ws://127.0.0.1:9");
    let without_callback = options().artifacts_dirs(["/out"]);
    let error = client.query("p", without_callback).await.unwrap_err();
    assert!(matches!(error, Error::InvalidOptions(ref m) if m.contains("artifacts_dirs")));

    let without_dirs = ExecuteCommandsOptions::new()
        .on_artifact_upload_request(|_| async { ArtifactUploadResult::new("u", "t") });
    let error = client
        .execute_commands(vec![], without_dirs)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidOptions(_)));

    let bad_schema = options().output_format_json_schema_str("{not json");
    assert!(matches!(
        client.query("p", bad_schema).await,
        Err(Error::InvalidOptions(_))
    ));
}

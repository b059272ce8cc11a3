//! The Rust client (`runtimeuse-client`) against the real runtime, in-process on port 0:
//! every call and option end to end.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::start_runtime;
use futures_util::StreamExt;
use runtimeuse_client::{
    ArtifactUploadResult, Command, Downloadable, Error, Event, ExecuteCommandsOptions, QueryData,
    QueryOptions, RuntimeUseClient, TimeoutKind,
};
use runtimeuse_testkit::BlobServer;
use serde_json::json;

fn options() -> QueryOptions {
    QueryOptions::new("You are a test.", "echo-model")
}

#[tokio::test]
async fn query_returns_text_and_metadata() {
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let result = client.query("ECHO:hello", options()).await.unwrap();
    assert_eq!(result.data, QueryData::Text("hello".into()));
    assert_eq!(result.metadata["agent"], "echo");
}

#[tokio::test]
async fn structured_query_deserialises_into_a_type() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Counts {
        files: u32,
        names: Vec<String>,
    }
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let schema = json!({"type": "object", "properties": {"files": {"type": "integer"},
        "names": {"type": "array", "items": {"type": "string"}}}, "required": ["files", "names"]});
    let result = client
        .query(
            r#"STRUCTURED:{"files": 2, "names": ["a", "b"]}"#,
            options().output_schema(schema.clone()),
        )
        .await
        .unwrap();
    let counts: Counts = result.structured().unwrap();
    assert_eq!(
        counts,
        Counts {
            files: 2,
            names: vec!["a".into(), "b".into()]
        }
    );

    let error = client
        .query(
            r#"STRUCTURED:{"files": "two"}"#,
            options().output_schema(schema),
        )
        .await
        .unwrap_err();
    let Error::Runtime { error, metadata } = error else {
        panic!("{error:?}")
    };
    assert!(error.contains("does not match"), "{error}");
    assert_eq!(metadata["error_name"], "StructuredOutputMismatch");
}

#[tokio::test]
async fn callbacks_see_assistant_messages_and_pre_post_command_output() {
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (a, c) = (seen.clone(), seen.clone());
    let options = options()
        .on_assistant_message(move |m| {
            let a = a.clone();
            async move {
                a.lock()
                    .unwrap()
                    .push(format!("assistant:{}", m.text_blocks.join("|")))
            }
        })
        .on_command_output(move |o| {
            let c = c.clone();
            async move {
                c.lock()
                    .unwrap()
                    .push(format!("{:?}:{}", o.stream, o.text.trim()))
            }
        })
        .pre_agent_invocation_commands(vec![Command::new("echo before")])
        .post_agent_invocation_commands(vec![Command::new("echo after >&2")]);
    let result = client.query("STREAM:2", options).await.unwrap();
    assert_eq!(result.text(), Some("streamed 2 messages"));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "Stdout:before",
            "assistant:message 1 of 2",
            "assistant:message 2 of 2",
            "Stderr:after"
        ]
    );
}

#[tokio::test]
async fn artifacts_downloads_env_and_secrets_travel_end_to_end() {
    let files = BlobServer::start().await;
    files.serve_bytes("input.txt", "downloaded content");
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let out = dir.path().join("out");
    let upload_base = files.url("uploads");
    let options = options()
        .pre_agent_downloadables(vec![Downloadable {
            download_url: files.url("input.txt"),
            working_dir: work.display().to_string(),
        }])
        .artifacts_dirs([out.display().to_string()])
        .on_artifact_upload_request(move |req| {
            let url = format!("{upload_base}/{}", req.filename);
            async move { ArtifactUploadResult::new(url, "text/markdown") }
        })
        .agent_env("UNUSED_BY_ECHO", "1")
        .secrets_to_redact(["downloaded"]);
    let client = RuntimeUseClient::new(runtime.ws_url());
    let read = client
        .query(
            &format!("READ_FILE:{}/input.txt", work.display()),
            options.clone(),
        )
        .await
        .unwrap();
    assert_eq!(read.text(), Some("[REDACTED] content"));

    let wrote = client
        .query(
            &format!("WRITE_FILE:{}/report.md # Report", out.display()),
            options,
        )
        .await
        .unwrap();
    assert!(wrote.text().unwrap().starts_with("wrote "));
    let uploads = files
        .wait_for_uploads("uploads/report.md", 1, Duration::from_secs(10))
        .await;
    assert_eq!(uploads[0].body.as_deref(), Some(&b"# Report"[..]));
    assert_eq!(uploads[0].content_type.as_deref(), Some("text/markdown"));
}

#[tokio::test]
async fn execute_commands_returns_results_and_streams_output() {
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let chunks = Arc::new(Mutex::new(String::new()));
    let sink = chunks.clone();
    let options = ExecuteCommandsOptions::new().on_command_output(move |o| {
        let sink = sink.clone();
        async move { sink.lock().unwrap().push_str(&o.text) }
    });
    let result = client
        .execute_commands(
            vec![
                Command::new("echo one"),
                Command::new("exit 9"),
                Command::new("echo no"),
            ],
            options,
        )
        .await
        .unwrap();
    assert!(!result.success());
    assert_eq!(result.results.len(), 2);
    assert_eq!(result.first_failure().unwrap().exit_code, 9);
    assert_eq!(*chunks.lock().unwrap(), "one\n");
}

#[tokio::test]
async fn abort_cancels_the_running_query() {
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let abort = client.abort_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        abort.abort();
    });
    let started = Instant::now();
    let error = client.query("SLOW:20000", options()).await.unwrap_err();
    assert!(error.is_cancelled(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The client is reusable afterwards.
    assert_eq!(
        client.query("ECHO:again", options()).await.unwrap().text(),
        Some("again")
    );
}

#[tokio::test]
async fn timeouts_overall_and_idle_with_heartbeats() {
    let runtime =
        start_runtime(|c| c.session.heartbeat_interval = Duration::from_millis(100)).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let error = client
        .query("SLOW:5000", options().timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(
        error.timeout_kind(),
        Some(TimeoutKind::Overall),
        "{error:?}"
    );
    // Heartbeats every 100 ms keep a 400 ms idle timeout from expiring on a 1 s request.
    let result = client
        .query(
            "SLOW:1000",
            options().idle_timeout(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert_eq!(result.text(), Some("done"));
}

#[tokio::test]
async fn session_runs_calls_on_one_connection_and_close_drains_late_artifacts() {
    let files = BlobServer::start().await;
    let runtime =
        start_runtime(|c| c.session.artifacts.late_event_grace = Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let base = files.url("s");
    let client = RuntimeUseClient::new(runtime.ws_url());
    let session = client.session().await.unwrap();
    let exec_options = ExecuteCommandsOptions::new()
        .artifacts_dirs([out.display().to_string()])
        .on_artifact_upload_request(move |req| {
            let url = format!("{base}/{}", req.filename);
            async move { ArtifactUploadResult::new(url, "text/plain") }
        });
    let late = format!(
        "(sleep 0.4; echo late > {}/late.txt) >/dev/null 2>&1 &",
        out.display()
    );
    session
        .execute_commands(vec![Command::new(late)], exec_options)
        .await
        .unwrap();
    let text = session.query("ECHO:second call", options()).await.unwrap();
    assert_eq!(text.text(), Some("second call"));

    // session.abort() cancels only the call in flight.
    let abort = session.abort_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        abort.abort();
    });
    assert!(
        session
            .query("SLOW:10000", options())
            .await
            .unwrap_err()
            .is_cancelled()
    );
    assert_eq!(
        session
            .query("ECHO:still open", options())
            .await
            .unwrap()
            .text(),
        Some("still open")
    );

    session.close().await.unwrap();
    let uploads = files.uploads("s/late.txt");
    assert_eq!(
        uploads.len(),
        1,
        "late artifact not uploaded before close returned"
    );
    assert_eq!(uploads[0].body.as_deref(), Some(&b"late\n"[..]));
}

#[tokio::test]
async fn query_stream_yields_typed_events_then_the_result() {
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let mut events = client.query_stream("STREAM:3", options());
    let mut assistant = Vec::new();
    let mut result = None;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            Event::AssistantMessage(m) => assistant.extend(m.text_blocks),
            Event::Result(r) => result = Some(r),
            _ => {}
        }
    }
    assert_eq!(
        assistant,
        ["message 1 of 3", "message 2 of 3", "message 3 of 3"]
    );
    assert_eq!(result.unwrap().text(), Some("streamed 3 messages"));
}

#[tokio::test]
async fn runtime_errors_carry_error_and_metadata() {
    let runtime = start_runtime(|_| {}).await;
    let client = RuntimeUseClient::new(runtime.ws_url());
    let error = client.query("ERROR:kaput", options()).await.unwrap_err();
    let Error::Runtime { error, metadata } = error else {
        panic!("{error:?}")
    };
    assert_eq!(error, "kaput");
    assert_eq!(metadata["source"], "echo_handler");
}

#[tokio::test]
async fn auth_token_is_required_and_accepted() {
    let runtime = start_runtime(|c| c.token = Some("tok-1".into())).await;
    let anonymous = RuntimeUseClient::new(runtime.ws_url());
    let error = anonymous.query("ECHO:x", options()).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("401"), "{error}");
    let authed = RuntimeUseClient::builder(runtime.ws_url())
        .auth_token("tok-1")
        .build()
        .unwrap();
    assert_eq!(
        authed.query("ECHO:in", options()).await.unwrap().text(),
        Some("in")
    );
}

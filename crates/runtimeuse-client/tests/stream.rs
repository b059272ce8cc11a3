//! The event-stream API.

mod common;

use std::time::Duration;

use common::{
    FakeRuntime, artifact_request, assistant, commands_result, heartbeat, options, stdout,
    text_result,
};
use futures_util::StreamExt;
use runtimeuse_client::{
    ArtifactUploadResult, Command, Error, Event, ExecuteCommandsOptions, RuntimeUseClient,
};
use serde_json::json;

#[tokio::test]
async fn query_stream_yields_events_then_the_result() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(heartbeat(5)).await;
        conn.send(assistant("thinking")).await;
        conn.send(stdout("ls", "a\n")).await;
        conn.send(json!({"message_type": "mystery_message"})).await;
        conn.send(text_result("done")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);

    let events: Vec<_> = client.query_stream("p", options()).collect().await;

    let kinds: Vec<String> = events
        .into_iter()
        .map(|event| match event.unwrap() {
            Event::Heartbeat(h) => format!("heartbeat:{}", h.elapsed_ms),
            Event::AssistantMessage(m) => format!("assistant:{}", m.text_blocks[0]),
            Event::CommandOutput(o) => format!("output:{}", o.text),
            Event::Result(r) => format!("result:{}", r.text().unwrap()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "heartbeat:5",
            "assistant:thinking",
            "output:a\n",
            "result:done"
        ]
    );
}

#[tokio::test]
async fn stream_answers_artifact_requests_through_the_event() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(artifact_request("a.txt", "/out/a.txt")).await;
        let response = conn.expect("artifact_upload_response_message").await;
        assert_eq!(response["presigned_url"], "http://blob/a.txt");
        conn.send(text_result("uploaded")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    // No callback needed with a stream: the event carries the responder.
    let mut events = client.query_stream("p", options().artifacts_dirs(["/out"]));

    let mut result = None;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            Event::ArtifactUploadRequest(request) => {
                let url = format!("http://blob/{}", request.request().filename);
                // Answered from another task, while the stream keeps flowing.
                tokio::spawn(async move {
                    request
                        .respond(ArtifactUploadResult::new(url, "text/plain"))
                        .unwrap();
                });
            }
            Event::Result(r) => result = Some(r),
            _ => {}
        }
    }

    assert_eq!(result.unwrap().text(), Some("uploaded"));
    assert_eq!(fake.received()[1]["content_type"], "text/plain");
}

#[tokio::test]
async fn stream_ends_with_the_runtime_error() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("command_execution_message").await;
        conn.send(json!({"message_type": "error_message", "error": "Download failed: 404", "metadata": null})).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);

    let events: Vec<_> = client
        .execute_commands_stream(vec![Command::new("true")], ExecuteCommandsOptions::new())
        .collect()
        .await;

    assert_eq!(events.len(), 1);
    let Err(Error::Runtime { error, metadata }) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(error, "Download failed: 404");
    assert!(metadata.is_empty());
}

#[tokio::test]
async fn execute_commands_stream_yields_output_and_results() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("command_execution_message").await;
        conn.send(stdout("echo hi", "hi\n")).await;
        conn.send(commands_result(
            json!([{"command": "echo hi", "exit_code": 0, "stdout": "hi\n"}]),
        ))
        .await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let mut events = client
        .execute_commands_stream(vec![Command::new("echo hi")], ExecuteCommandsOptions::new());

    let Event::CommandOutput(chunk) = events.next().await.unwrap().unwrap() else {
        panic!()
    };
    let Event::Result(result) = events.next().await.unwrap().unwrap() else {
        panic!()
    };

    assert_eq!(chunk.text, "hi\n");
    assert!(result.success());
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn dropping_a_session_stream_cancels_and_keeps_the_session_usable() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(assistant("first event")).await;
        conn.expect("cancel_message").await;
        conn.send(assistant("ignored")).await;
        conn.send(common::error("Request cancelled")).await;
        conn.expect("invocation_message").await;
        conn.send(text_result("next")).await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();

    let mut events = session.query_stream("p", options());
    assert!(matches!(
        events.next().await,
        Some(Ok(Event::AssistantMessage(_)))
    ));
    drop(events);
    let next = session.query("p", options()).await.unwrap();

    assert_eq!(next.text(), Some("next"));
}

#[tokio::test]
async fn abort_ends_a_stream_with_cancelled() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(assistant("one")).await;
        conn.expect("cancel_message").await;
        conn.send(common::error("Request cancelled")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let mut events = client.query_stream("p", options());

    assert!(matches!(
        events.next().await,
        Some(Ok(Event::AssistantMessage(_)))
    ));
    client.abort();

    assert!(matches!(events.next().await, Some(Err(Error::Cancelled))));
    assert!(events.next().await.is_none());
}

/// Answers each upload request after `delay`, in the consuming task, as a slow consumer
/// (e.g. one that asks a storage service for a presigned URL) would.
async fn consume_answering_slowly<T>(
    mut events: runtimeuse_client::EventStream<T>,
    delay: Duration,
) -> Option<T> {
    let mut result = None;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            Event::ArtifactUploadRequest(request) => {
                tokio::time::sleep(delay).await;
                let url = format!("http://blob/{}", request.request().filename);
                request
                    .respond(ArtifactUploadResult::new(url, "text/plain"))
                    .unwrap();
            }
            Event::Result(r) => result = Some(r),
            _ => {}
        }
    }
    result
}

#[tokio::test]
async fn one_shot_stream_answers_an_upload_request_that_came_just_before_the_terminal() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(artifact_request("a.txt", "/out/a.txt")).await;
        conn.send(text_result("done")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);

    let events = client.query_stream("p", options().artifacts_dirs(["/out"]));
    let result = consume_answering_slowly(events, Duration::from_millis(300)).await;

    assert_eq!(result.unwrap().text(), Some("done"));
    assert!(fake.wait_for("artifact_upload_response_message").await);
    assert_eq!(fake.received()[1]["presigned_url"], "http://blob/a.txt");
}

#[tokio::test]
async fn session_stream_sends_upload_answers_before_the_call_returns() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(artifact_request("a.txt", "/out/a.txt")).await;
        conn.send(text_result("done")).await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();

    let events = session.query_stream("p", options().artifacts_dirs(["/out"]));
    let result = consume_answering_slowly(events, Duration::from_millis(300)).await;

    assert_eq!(result.unwrap().text(), Some("done"));
    // Not only with the next call or the close: the runtime is waiting for it now.
    assert!(fake.wait_for("artifact_upload_response_message").await);
}

#[tokio::test]
async fn an_upload_request_dropped_unanswered_does_not_hold_the_result_back() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(artifact_request("a.txt", "/out/a.txt")).await;
        conn.send(text_result("done")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let started = std::time::Instant::now();

    let mut events = client.query_stream("p", options().artifacts_dirs(["/out"]));
    let mut result = None;
    while let Some(event) = events.next().await {
        // Upload requests are dropped here, unanswered.
        if let Event::Result(r) = event.unwrap() {
            result = Some(r);
        }
    }

    assert_eq!(result.unwrap().text(), Some("done"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

//! Sessions: sequential calls on one connection, abort, recovery, close.

mod common;

use std::time::{Duration, Instant};

use common::{FakeRuntime, artifact_request, commands_result, error, options, text_result};
use futures_util::StreamExt;
use runtimeuse_client::{
    ArtifactUploadResult, Command, Error, ExecuteCommandsOptions, RuntimeUseClient, TimeoutKind,
};
use serde_json::json;

#[tokio::test]
async fn two_calls_share_a_connection_and_close_answers_late_artifact_requests() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(text_result("first")).await;
        conn.expect("command_execution_message").await;
        conn.send(commands_result(
            json!([{"command": "true", "exit_code": 0}]),
        ))
        .await;
        conn.expect("end_session_message").await;
        // A file written at the very end: the runtime asks after end_session.
        conn.send(artifact_request("late.txt", "/out/late.txt"))
            .await;
        conn.expect("artifact_upload_response_message").await;
        conn.send(json!({"message_type": "end_session_confirm_message"}))
            .await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let session = client.session().await.unwrap();
    let upload_to = |name: &'static str| {
        move |request: runtimeuse_client::ArtifactUploadRequest| async move {
            ArtifactUploadResult::new(
                format!("http://blob/{name}/{}", request.filename),
                "text/plain",
            )
        }
    };

    let first = session
        .query(
            "p",
            options()
                .artifacts_dirs(["/out"])
                .on_artifact_upload_request(upload_to("q")),
        )
        .await
        .unwrap();
    let second = session
        .execute_commands(
            vec![Command::new("true")],
            ExecuteCommandsOptions::new()
                .artifacts_dirs(["/out"])
                .on_artifact_upload_request(upload_to("exec")),
        )
        .await
        .unwrap();
    session.close().await.unwrap();

    assert_eq!(first.text(), Some("first"));
    assert_eq!(second.results[0].exit_code, 0);
    assert_eq!(fake.connections(), 1);
    let response = fake.received()[3].clone();
    assert_eq!(
        response["presigned_url"], "http://blob/exec/late.txt",
        "the last callback answers"
    );
    assert_eq!(response["filepath"], "/out/late.txt");
    let after_close = session.query("p", options()).await.unwrap_err();
    assert!(
        matches!(after_close, Error::ConnectionClosed { .. }),
        "{after_close:?}"
    );
}

#[tokio::test]
async fn session_abort_cancels_only_the_call_in_flight() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(common::heartbeat(0)).await;
        conn.expect("cancel_message").await;
        conn.send(error("Request cancelled")).await;
        conn.expect("invocation_message").await;
        conn.send(text_result("second")).await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();
    let abort = session.abort_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        abort.abort();
    });

    let first = session.query("SLOW", options()).await.unwrap_err();
    let second = session.query("p", options()).await.unwrap();

    assert!(first.is_cancelled(), "{first:?}");
    assert_eq!(
        second.text(),
        Some("second"),
        "the cancelled call's terminal must not leak"
    );
}

#[tokio::test]
async fn call_after_a_timeout_skips_the_stale_terminal() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        // Silent past the client's timeout; the client gives up and cancels.
        conn.expect("cancel_message").await;
        conn.pause(100).await;
        conn.send(error("Request cancelled")).await;
        conn.expect("invocation_message").await;
        conn.send(text_result("fresh")).await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();

    let first = session
        .query("p", options().timeout(Duration::from_millis(150)))
        .await
        .unwrap_err();
    let second = session.query("p", options()).await.unwrap();

    assert_eq!(first.timeout_kind(), Some(TimeoutKind::Overall));
    assert_eq!(second.text(), Some("fresh"));
    assert_eq!(
        fake.received_types(),
        ["invocation_message", "cancel_message", "invocation_message"]
    );
}

#[tokio::test]
async fn close_times_out_without_a_confirm() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("end_session_message").await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();

    let error = session
        .close_with_timeout(Duration::from_millis(150))
        .await
        .unwrap_err();

    assert_eq!(error.timeout_kind(), Some(TimeoutKind::EndSession));
}

#[tokio::test]
async fn concurrent_calls_on_a_session_take_turns() {
    let fake = FakeRuntime::start(|mut conn| async move {
        for _ in 0..2 {
            let invocation = conn.expect("invocation_message").await;
            conn.pause(50).await;
            let prompt = invocation["user_prompt"].as_str().unwrap().to_owned();
            conn.send(text_result(&prompt)).await;
        }
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();

    let (a, b) = tokio::join!(session.query("a", options()), session.query("b", options()));

    assert_eq!(a.unwrap().text(), Some("a"));
    assert_eq!(b.unwrap().text(), Some("b"));
}

#[tokio::test]
async fn call_whose_future_was_dropped_is_cancelled_before_the_next_one() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.expect("cancel_message").await;
        conn.send(error("Request cancelled")).await;
        conn.expect("invocation_message").await;
        conn.send(text_result("after the drop")).await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();

    let dropped =
        tokio::time::timeout(Duration::from_millis(100), session.query("p", options())).await;
    let next = session.query("p", options()).await.unwrap();

    assert!(dropped.is_err());
    assert_eq!(next.text(), Some("after the drop"));
    assert_eq!(
        fake.received_types(),
        ["invocation_message", "cancel_message", "invocation_message"]
    );
}

/// Gives up on a session stream once its request is out (the runtime never answers it).
async fn drop_a_stream_in_flight(session: &runtimeuse_client::Session, fake: &FakeRuntime) {
    let mut events = session.query_stream("first", options());
    assert!(fake.wait_for("invocation_message").await);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), events.next())
            .await
            .is_err()
    );
    drop(events);
}

#[tokio::test]
async fn close_keeps_its_timeout_after_a_stream_was_dropped_on_a_silent_runtime() {
    let fake = FakeRuntime::start(|mut conn| async move {
        // Answers nothing, not even the cancel or the end of the session.
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();
    drop_a_stream_in_flight(&session, &fake).await;

    let started = Instant::now();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        session.close_with_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("close ignored its timeout");

    assert_eq!(
        closed.unwrap_err().timeout_kind(),
        Some(TimeoutKind::EndSession)
    );
    eprintln!("closed after {:?}", started.elapsed());
    assert!(fake.wait_for("end_session_message").await);
    assert_eq!(
        fake.received_types(),
        [
            "invocation_message",
            "cancel_message",
            "end_session_message"
        ]
    );
}

#[tokio::test]
async fn a_call_behind_an_unanswered_cancel_keeps_its_own_timeout() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();
    drop_a_stream_in_flight(&session, &fake).await;

    let next = tokio::time::timeout(
        Duration::from_secs(5),
        session.query("p", options().timeout(Duration::from_millis(300))),
    )
    .await
    .expect("the call ignored its timeout");

    assert_eq!(next.unwrap_err().timeout_kind(), Some(TimeoutKind::Overall));
    assert_eq!(
        fake.received_types(),
        ["invocation_message", "cancel_message"],
        "nothing is sent before the stale request ended"
    );
}

#[tokio::test]
async fn close_keeps_its_timeout_while_a_call_is_in_flight() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();
    let in_flight = tokio::spawn({
        let session = session.clone();
        async move { session.query("p", options()).await }
    });
    assert!(fake.wait_for("invocation_message").await);

    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        session.close_with_timeout(Duration::from_millis(300)),
    )
    .await
    .expect("close ignored its timeout");

    assert_eq!(
        closed.unwrap_err().timeout_kind(),
        Some(TimeoutKind::EndSession)
    );
    let later = session.query("p", options()).await.unwrap_err();
    assert!(matches!(later, Error::ConnectionClosed { .. }), "{later:?}");
    in_flight.abort();
}

#[tokio::test]
async fn abort_while_a_call_waits_behind_a_cancelled_request_is_not_lost() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.expect("cancel_message").await;
        // A runtime slow to wind the cancelled request down.
        conn.pause(4000).await;
        conn.send(error("Request cancelled")).await;
        let next = conn.expect("invocation_message").await;
        let prompt = next["user_prompt"].as_str().unwrap().to_owned();
        conn.send(text_result(&prompt)).await;
        conn.drain().await;
    })
    .await;
    let session = RuntimeUseClient::new(&fake.url).session().await.unwrap();
    drop_a_stream_in_flight(&session, &fake).await;
    let abort = session.abort_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        abort.abort();
    });

    let started = Instant::now();
    let aborted = session.query("second", options()).await.unwrap_err();
    let waited = started.elapsed();
    let third = session.query("third", options()).await.unwrap();

    assert!(aborted.is_cancelled(), "{aborted:?}");
    // The abort came after 100 ms; the runtime answers the cancel after 4 s.
    assert!(waited < Duration::from_millis(3000), "{waited:?}");
    assert_eq!(third.text(), Some("third"));
    assert_eq!(
        fake.received_types(),
        ["invocation_message", "cancel_message", "invocation_message"],
        "the aborted call never sent its request"
    );
}

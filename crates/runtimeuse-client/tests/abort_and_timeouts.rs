//! Cancellation, time limits and connections lost mid-request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{FakeRuntime, assistant, error, heartbeat, options, text_result};
use runtimeuse_client::{ArtifactUploadResult, Error, RuntimeUseClient, TimeoutKind};

#[tokio::test]
async fn abort_sends_cancel_and_returns_cancelled_after_the_terminal() {
    let terminal_sent = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&terminal_sent);
    let fake = FakeRuntime::start(move |mut conn| {
        let flag = Arc::clone(&flag);
        async move {
            conn.expect("invocation_message").await;
            conn.send(assistant("working")).await;
            conn.expect("cancel_message").await;
            // Still sent before the terminal, but the request is dead to the caller.
            conn.send(assistant("late")).await;
            conn.pause(200).await;
            flag.store(true, Ordering::SeqCst);
            conn.send(error("Request cancelled")).await;
            conn.drain().await;
        }
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let abort = client.abort_handle();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let options = options().on_assistant_message(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        let abort = abort.clone();
        // Abort from another task, as a user would.
        async move {
            tokio::spawn(async move { abort.abort() });
        }
    });

    let error = client.query("p", options).await.unwrap_err();

    assert!(matches!(error, Error::Cancelled), "{error:?}");
    assert!(
        terminal_sent.load(Ordering::SeqCst),
        "returned before the runtime's terminal"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "callbacks must be suppressed after abort"
    );
    assert_eq!(
        fake.received_types(),
        ["invocation_message", "cancel_message"]
    );
}

#[tokio::test]
async fn abort_during_a_slow_callback_sends_cancel_at_once() {
    let cancel_after_ms = Arc::new(AtomicU64::new(u64::MAX));
    let record = Arc::clone(&cancel_after_ms);
    let fake = FakeRuntime::start(move |mut conn| {
        let record = Arc::clone(&record);
        async move {
            conn.expect("invocation_message").await;
            let started = Instant::now();
            conn.send(assistant("slow")).await;
            conn.expect("cancel_message").await;
            let waited = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            record.store(waited, Ordering::SeqCst);
            conn.send(error("Request cancelled")).await;
            conn.drain().await;
        }
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let options = options().on_assistant_message(|_| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    });
    let abort = client.abort_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        abort.abort();
    });

    let error = client.query("p", options).await.unwrap_err();

    assert!(error.is_cancelled(), "{error:?}");
    let waited = cancel_after_ms.load(Ordering::SeqCst);
    assert!(
        waited < 1000,
        "cancel_message waited for the callback ({waited} ms)"
    );
}

#[tokio::test]
async fn abort_with_nothing_in_flight_does_not_hit_the_next_call() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(text_result("fine")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    client.abort();
    let result = client.query("p", options()).await.unwrap();
    assert_eq!(result.text(), Some("fine"));
}

#[tokio::test]
async fn overall_timeout_expires() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        for i in 0..100 {
            conn.send(heartbeat(i * 50)).await;
            conn.pause(50).await;
        }
    })
    .await;
    let options = options().timeout(Duration::from_millis(300));

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap_err();

    let Error::Timeout {
        kind,
        after,
        last_message_type,
        message_count,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(kind, TimeoutKind::Overall);
    assert_eq!(after, Duration::from_millis(300));
    assert_eq!(last_message_type.as_deref(), Some("heartbeat_message"));
    assert!(message_count >= 3, "{message_count}");
}

#[tokio::test]
async fn idle_timeout_when_the_runtime_goes_silent() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(heartbeat(0)).await;
        conn.drain().await;
    })
    .await;
    let options = options().idle_timeout(Duration::from_millis(200));

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap_err();

    let Error::Timeout {
        kind,
        last_message_type,
        message_count,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(kind, TimeoutKind::Idle);
    assert_eq!(last_message_type.as_deref(), Some("heartbeat_message"));
    assert_eq!(message_count, 1);
}

#[tokio::test]
async fn heartbeats_keep_the_idle_timeout_from_expiring() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        for i in 0..8 {
            conn.pause(100).await;
            conn.send(heartbeat(i * 100)).await;
        }
        conn.send(text_result("slow but alive")).await;
        conn.drain().await;
    })
    .await;
    let options = options().idle_timeout(Duration::from_millis(600));

    let result = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap();

    assert_eq!(result.text(), Some("slow but alive"));
}

#[tokio::test]
async fn assistant_callback_timeout_expires() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(assistant("hi")).await;
        conn.drain().await;
    })
    .await;
    let options = options()
        .assistant_callback_timeout(Duration::from_millis(100))
        .on_assistant_message(|_| tokio::time::sleep(Duration::from_secs(5)));

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap_err();

    assert_eq!(
        error.timeout_kind(),
        Some(TimeoutKind::AssistantCallback),
        "{error:?}"
    );
}

#[tokio::test]
async fn artifact_callback_timeout_expires() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(common::artifact_request("a.txt", "/out/a.txt"))
            .await;
        conn.drain().await;
    })
    .await;
    let options = options()
        .artifacts_dirs(["/out"])
        .artifact_upload_callback_timeout(Duration::from_millis(100))
        .on_artifact_upload_request(|_| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            ArtifactUploadResult::new("u", "t")
        });

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap_err();

    let Error::Timeout {
        kind,
        last_message_type,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(kind, TimeoutKind::ArtifactCallback);
    assert_eq!(
        last_message_type.as_deref(),
        Some("artifact_upload_request_message")
    );
}

#[tokio::test]
async fn connection_closed_before_a_terminal() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(assistant("bye")).await;
        conn.hang_up();
    })
    .await;

    let error = RuntimeUseClient::new(&fake.url)
        .query("p", options())
        .await
        .unwrap_err();

    assert!(matches!(error, Error::ConnectionClosed { .. }), "{error:?}");
}

#[tokio::test]
async fn idle_timeout_does_not_count_time_spent_in_callbacks() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(assistant("slow to handle")).await;
        // Longer than the idle limit after this message, but the client's callback takes
        // most of it: the runtime is silent for less than the limit from the client's
        // point of view (as in the Python client).
        conn.pause(400).await;
        conn.send(text_result("done")).await;
        conn.drain().await;
    })
    .await;
    let options = options()
        .idle_timeout(Duration::from_millis(250))
        .on_assistant_message(|_| tokio::time::sleep(Duration::from_millis(300)));

    let result = RuntimeUseClient::new(&fake.url)
        .query("p", options)
        .await
        .unwrap();

    assert_eq!(result.text(), Some("done"));
}

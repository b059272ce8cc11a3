//! `ClientBuilder::resume` against a scripted runtime speaking the resumable-sessions
//! extension: what the client sends, how it reconnects, and when it stops.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeConn, FakeRuntime, assistant, options, text_result};
use runtimeuse_client::protocol::resume::{
    HEADER_LAST_SEQ, HEADER_RESUMABLE, HEADER_RESUME_KEY, HEADER_SESSION_ID,
};
use runtimeuse_client::{Error, ExecuteCommandsOptions, RuntimeUseClient, TimeoutKind, Transport};
use serde_json::{Value, json};

const ID: &str = "0123456789abcdef0123456789abcdef";
const KEY: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
/// Every call's own limit: a broken scenario fails instead of hanging.
const CALL_LIMIT: Duration = Duration::from_secs(30);

fn resumable(grace_ms: u64) -> Value {
    json!({"message_type": "session_resumable_message", "session_id": ID, "resume_key": KEY,
        "grace_ms": grace_ms, "buffer_bytes": 1 << 20})
}

fn resumed(last_seq: u64) -> Value {
    json!({"message_type": "session_resumed_message", "session_id": ID, "last_seq": last_seq})
}

fn refused(reason: &str) -> Value {
    json!({"message_type": "error_message", "error": format!("resume refused: {reason}"),
        "metadata": {"error_name": "ResumeRefused", "reason": reason}})
}

fn numbered(mut frame: Value, seq: u64) -> Value {
    frame["seq"] = seq.into();
    frame
}

fn is_resume(conn: &FakeConn) -> bool {
    conn.header(HEADER_SESSION_ID).is_some()
}

/// The next message that is not an acknowledgement.
async fn recv_request(conn: &mut FakeConn) -> Option<Value> {
    loop {
        let message = conn.recv().await?;
        if message["message_type"] != "resume_ack_message" {
            return Some(message);
        }
    }
}

/// A first connection's script: offers a durable session with `grace_ms` of grace, sends
/// `replies` once the first request arrives, holds the connection `pause_ms`, and hangs
/// up.
async fn answer_then_drop(mut conn: FakeConn, grace_ms: u64, replies: Vec<Value>, pause_ms: u64) {
    conn.send(resumable(grace_ms)).await;
    if recv_request(&mut conn).await.is_some() {
        for reply in replies {
            conn.send(reply).await;
        }
        conn.pause(pause_ms).await;
        conn.hang_up();
    }
}

/// A runtime that opens a durable session, answers the first request with `frame`, hangs
/// up `pause_ms` later, and refuses every resume with `reason` (error frame, close 1008).
async fn refusing_resumes(frame: Value, pause_ms: u64, reason: &'static str) -> FakeRuntime {
    FakeRuntime::start(move |mut conn| {
        let frame = frame.clone();
        async move {
            if !is_resume(&conn) {
                return answer_then_drop(conn, 30_000, vec![numbered(frame, 1)], pause_ms).await;
            }
            conn.send(refused(reason)).await;
            conn.close_with(1008, reason).await;
        }
    })
    .await
}

fn resuming_client(url: &str) -> RuntimeUseClient {
    RuntimeUseClient::builder(url).resume(true).build().unwrap()
}

/// A slot the fake fills in and the test waits for.
#[derive(Clone, Default)]
struct Slot<T>(Arc<Mutex<Option<T>>>);

impl<T: Clone> Slot<T> {
    fn set(&self, value: T) {
        *self.0.lock().unwrap() = Some(value);
    }

    async fn wait(&self) -> Option<T> {
        for _ in 0..250 {
            if let Some(value) = self.0.lock().unwrap().clone() {
                return Some(value);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

fn collect_texts() -> (Arc<Mutex<Vec<String>>>, runtimeuse_client::QueryOptions) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let options = options()
        .timeout(CALL_LIMIT)
        .on_assistant_message(move |message| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().extend(message.text_blocks);
            }
        });
    (seen, options)
}

#[tokio::test]
async fn a_drop_mid_request_is_resumed_with_replay_resend_and_dedup() {
    let close_code = Slot::default();
    let code_slot = close_code.clone();
    let fake = FakeRuntime::start(move |mut conn| {
        let code_slot = code_slot.clone();
        async move {
            let texts = ["a", "b", "c"];
            if !is_resume(&conn) {
                let replies = (1..)
                    .zip(texts)
                    .map(|(seq, text)| numbered(assistant(text), seq));
                return answer_then_drop(conn, 30_000, replies.collect(), 300).await;
            }
            let last: u64 = conn
                .header(HEADER_LAST_SEQ)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            // As if the invocation had been lost: the client must send it again.
            conn.send(resumed(0)).await;
            if recv_request(&mut conn).await.is_none() {
                return;
            }
            // Replay from one frame before the client's last, so that it sees a duplicate.
            for seq in last.saturating_sub(1).max(1)..=3 {
                conn.send(numbered(assistant(texts[seq as usize - 1]), seq))
                    .await;
            }
            conn.send(numbered(text_result("done"), 4)).await;
            if let Some(code) = conn.close_code().await {
                code_slot.set(code);
            }
        }
    })
    .await;
    let client = resuming_client(&fake.url);
    let (seen, options) = collect_texts();

    let result = client.query("p", options).await.unwrap();

    assert_eq!(result.text(), Some("done"));
    assert_eq!(
        *seen.lock().unwrap(),
        ["a", "b", "c"],
        "each message once, in order"
    );
    assert_eq!(result.metadata["reconnects"], 1);
    assert_eq!(
        close_code.wait().await,
        Some(1000),
        "the end closes with 1000"
    );

    let headers = fake.log.headers.lock().unwrap().clone();
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[0][HEADER_RESUMABLE], "1");
    assert!(headers[0].get(HEADER_SESSION_ID).is_none());
    assert_eq!(headers[1][HEADER_SESSION_ID], ID);
    assert_eq!(headers[1][HEADER_RESUME_KEY], KEY);
    let last_seq: u64 = headers[1][HEADER_LAST_SEQ]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last_seq <= 3, "{last_seq}");

    let received = fake.received();
    let invocations: Vec<&Value> = received
        .iter()
        .filter(|m| m["message_type"] == "invocation_message")
        .collect();
    assert_eq!(invocations.len(), 2, "sent, then re-sent after the resume");
    assert!(invocations.iter().all(|m| m["seq"] == 1), "{invocations:?}");
    let acks: Vec<u64> = received
        .iter()
        .filter(|m| m["message_type"] == "resume_ack_message")
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        acks.last(),
        Some(&4),
        "the final ack covers the result: {acks:?}"
    );
    assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
}

#[tokio::test]
async fn frames_are_acknowledged_without_waiting_for_the_end() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.send(resumable(30_000)).await;
        if recv_request(&mut conn).await.is_none() {
            return;
        }
        conn.send(numbered(assistant("a"), 1)).await;
        // The ack comes within the contract's 200 ms; a generous bound for a busy machine.
        let ack = tokio::time::timeout(Duration::from_secs(5), conn.recv()).await;
        let ack_seq = ack.ok().flatten().map(|ack| ack["seq"].clone());
        let seq = ack_seq.and_then(|seq| seq.as_u64()).unwrap_or(0);
        conn.send(numbered(text_result(&format!("acked {seq}")), 2))
            .await;
        conn.drain().await;
    })
    .await;
    let client = resuming_client(&fake.url);
    let result = client
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap();
    assert_eq!(result.text(), Some("acked 1"));
    assert_eq!(result.metadata["reconnects"], 0);
}

#[tokio::test]
async fn a_refused_resume_ends_the_call_with_resume_refused() {
    let fake = refusing_resumes(assistant("a"), 200, "expired").await;
    let client = resuming_client(&fake.url);

    let error = client
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap_err();

    let Error::Runtime { metadata, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(metadata["error_name"], "ResumeRefused");
    assert_eq!(metadata["reason"], "expired");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.connections(), 2, "no attempt after a refusal");
}

#[tokio::test]
async fn a_takeover_stops_reconnecting() {
    let fake = FakeRuntime::start(|mut conn| async move {
        if is_resume(&conn) {
            conn.send(resumed(0)).await; // must not be reached
            conn.drain().await;
            return;
        }
        conn.send(resumable(30_000)).await;
        if recv_request(&mut conn).await.is_some() {
            conn.close_with(4001, "session taken over by another connection")
                .await;
        }
    })
    .await;
    let client = resuming_client(&fake.url);

    let error = client
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap_err();

    let Error::ConnectionClosed { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("taken over"), "{reason}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn reconnecting_gives_up_when_the_grace_period_is_over() {
    let grace = Duration::from_millis(1500);
    let fake = FakeRuntime::start(move |conn| async move {
        if is_resume(&conn) {
            conn.hang_up(); // the runtime is unreachable, in effect
            return;
        }
        answer_then_drop(conn, grace.as_millis() as u64, vec![], 0).await;
    })
    .await;
    let client = resuming_client(&fake.url);
    let started = std::time::Instant::now();

    let error = client
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap_err();

    let elapsed = started.elapsed();
    let Error::ConnectionClosed { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("grace period"), "{reason}");
    assert!(elapsed >= grace, "gave up after {elapsed:?}");
    assert!(elapsed < CALL_LIMIT, "{elapsed:?}");
    let attempts = fake.connections() - 1;
    // Backoff from 100 ms doubling: a handful of attempts in 1.5 s, not a tight loop.
    assert!((2..=20).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_session_resumes_between_calls_and_ends_with_1000() {
    let close_code = Slot::default();
    let code_slot = close_code.clone();
    let fake = FakeRuntime::start(move |mut conn| {
        let code_slot = code_slot.clone();
        async move {
            if !is_resume(&conn) {
                let first = numbered(text_result("first"), 1);
                return answer_then_drop(conn, 30_000, vec![first], 300).await;
            }
            conn.send(resumed(1)).await;
            let Some(second) = recv_request(&mut conn).await else {
                return;
            };
            let seq = second["seq"].as_u64().unwrap_or(0);
            conn.send(numbered(text_result(&format!("second seq {seq}")), 2))
                .await;
            let Some(end) = recv_request(&mut conn).await else {
                return;
            };
            if end["message_type"] == "end_session_message" {
                conn.send(numbered(
                    json!({"message_type": "end_session_confirm_message"}),
                    3,
                ))
                .await;
            }
            if let Some(code) = conn.close_code().await {
                code_slot.set(code);
            }
        }
    })
    .await;
    let client = resuming_client(&fake.url);
    let session = client.session().await.unwrap();

    let first = session
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap();
    assert_eq!(first.text(), Some("first"));
    // The connection drops while the session is idle; the next call goes through.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let second = session
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap();
    assert_eq!(second.text(), Some("second seq 2"));
    session.close().await.unwrap();

    assert_eq!(close_code.wait().await, Some(1000));
    assert_eq!(fake.connections(), 2);
}

#[tokio::test]
async fn command_results_count_reconnects_too() {
    let fake = FakeRuntime::start(|mut conn| async move {
        if !is_resume(&conn) {
            return answer_then_drop(conn, 30_000, vec![], 0).await;
        }
        conn.send(resumed(1)).await;
        conn.send(numbered(
            json!({"message_type": "command_execution_result_message",
                "results": [{"command": "true", "exit_code": 0, "stdout": ""}]}),
            1,
        ))
        .await;
        conn.drain().await;
    })
    .await;
    let client = resuming_client(&fake.url);
    let result = client
        .execute_commands(
            vec![runtimeuse_client::Command::new("true")],
            ExecuteCommandsOptions::new().timeout(CALL_LIMIT),
        )
        .await
        .unwrap();
    assert!(result.success());
    assert_eq!(result.metadata["reconnects"], 1);
}

#[tokio::test]
async fn without_resume_nothing_changes_on_the_wire() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(text_result("plain")).await;
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::new(&fake.url);
    let result = client.query("p", options()).await.unwrap();
    assert_eq!(result.text(), Some("plain"));
    assert!(!result.metadata.contains_key("reconnects"));
    let headers = fake.log.headers.lock().unwrap().clone();
    assert!(headers[0].get(HEADER_RESUMABLE).is_none());
    assert!(fake.received().iter().all(|m| m.get("seq").is_none()));
}

/// What the runtime acknowledged is not kept for a resume: a runtime that later resumes
/// before a frame it acknowledged (so asks for it again) ends the session with the reason,
/// where a client still keeping it would send it again.
#[tokio::test]
async fn frames_the_runtime_acknowledged_are_not_kept_for_a_resume() {
    let fake = FakeRuntime::start(|mut conn| async move {
        if !is_resume(&conn) {
            let ack = json!({"message_type": "resume_ack_message", "seq": 1});
            let first = numbered(text_result("first"), 1);
            return answer_then_drop(conn, 30_000, vec![ack, first], 300).await;
        }
        // As if it had lost the invocation it acknowledged.
        conn.send(resumed(0)).await;
        conn.drain().await;
    })
    .await;
    let session = resuming_client(&fake.url).session().await.unwrap();
    let first = session
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap();
    assert_eq!(first.text(), Some("first"));

    let error = session
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap_err();
    let Error::ConnectionClosed { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("after acknowledging frame 1"), "{reason}");
    let invocations = fake
        .received_types()
        .iter()
        .filter(|t| *t == "invocation_message")
        .count();
    assert_eq!(invocations, 1, "nothing acknowledged was sent again");
}

/// While the link reconnects the runtime cannot be heard, so `idle_timeout` counts only
/// with a connection up, from the resume on; a silence with the connection up still ends
/// the call.
#[tokio::test]
async fn idle_timeout_does_not_count_while_the_link_reconnects() {
    let fake = FakeRuntime::start(|mut conn| async move {
        if !is_resume(&conn) {
            return answer_then_drop(conn, 30_000, vec![], 0).await;
        }
        // The resume is answered after four idle limits.
        conn.pause(4000).await;
        conn.send(resumed(1)).await;
        conn.send(numbered(text_result("after the gap"), 1)).await;
        // The next request gets no answer at all.
        conn.drain().await;
    })
    .await;
    let session = resuming_client(&fake.url).session().await.unwrap();
    let limits = || {
        options()
            .timeout(CALL_LIMIT)
            .idle_timeout(Duration::from_secs(1))
    };
    let first = session.query("p", limits()).await.unwrap();
    assert_eq!(first.text(), Some("after the gap"));
    assert_eq!(first.metadata["reconnects"], 1);
    let second = session.query("p", limits()).await.unwrap_err();
    assert_eq!(second.timeout_kind(), Some(TimeoutKind::Idle), "{second:?}");
}

#[tokio::test]
async fn a_runtime_without_the_extension_fails_the_open_long_before_the_connect_timeout() {
    let fake = FakeRuntime::start_without_advertising(|mut conn| async move {
        conn.drain().await; // never offers a durable session
    })
    .await;
    // The default connect timeout (60 s): without the advertisement check the open waited
    // all of it for a session_resumable_message that never comes.
    let client = resuming_client(&fake.url);
    let started = std::time::Instant::now();
    let error = client.query("p", options()).await.unwrap_err();
    let took = started.elapsed();
    let Error::Connect { source, .. } = &error else {
        panic!("{error:?}");
    };
    let text = source.to_string();
    assert!(
        text.contains("does not support the resumable-sessions extension"),
        "{text}"
    );
    assert!(text.contains("x-runtimeuse-resumable"), "{text}");
    assert!(
        took < Duration::from_secs(40),
        "failed after {took:?}, not well before the 60 s connect timeout"
    );
}

#[tokio::test]
async fn a_101_without_the_advertisement_still_opens_when_the_session_is_offered() {
    // A proxy that drops the response header: the session_resumable_message still counts.
    let fake = FakeRuntime::start_without_advertising(|conn| {
        answer_then_drop(conn, 30_000, vec![numbered(text_result("done"), 1)], 0)
    })
    .await;
    let result = resuming_client(&fake.url)
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap();
    assert_eq!(result.text(), Some("done"));
}

#[tokio::test]
async fn an_advertising_runtime_that_offers_nothing_times_out_the_open() {
    let fake = FakeRuntime::start(|mut conn| async move {
        conn.drain().await;
    })
    .await;
    let client = RuntimeUseClient::builder(&fake.url)
        .resume(true)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let error = client.query("p", options()).await.unwrap_err();
    let Error::Connect { source, .. } = &error else {
        panic!("{error:?}");
    };
    let io = source
        .downcast_ref::<std::io::Error>()
        .unwrap_or_else(|| panic!("not an io::Error: {source}"));
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut, "{io}");
    assert!(io.to_string().contains("session_resumable_message"), "{io}");
}

#[test]
fn resume_with_a_custom_transport_is_refused() {
    let transport: Transport =
        Arc::new(|| Box::pin(async { Err(Error::InvalidOptions("unused".into())) }));
    let error = RuntimeUseClient::builder("ws://127.0.0.1:1")
        .transport(transport)
        .resume(true)
        .build()
        .unwrap_err();
    assert!(matches!(error, Error::InvalidOptions(_)), "{error:?}");
}

#[tokio::test]
async fn a_refusal_while_a_session_is_idle_fails_the_next_call_with_the_reason() {
    let fake = refusing_resumes(text_result("first"), 300, "invalid_key").await;
    let session = resuming_client(&fake.url).session().await.unwrap();
    let first = session
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap();
    assert_eq!(first.text(), Some("first"));
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let error = session
        .query("p", options().timeout(CALL_LIMIT))
        .await
        .unwrap_err();

    match &error {
        Error::ConnectionClosed { reason } => {
            assert!(
                reason.contains("refused") && reason.contains("invalid_key"),
                "{reason}"
            );
        }
        Error::Runtime { metadata, .. } => assert_eq!(metadata["error_name"], "ResumeRefused"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.connections(), 2);
}

/// A connection that dies without a word (no reset, no end: a peer that simply stopped)
/// is noticed by the client's own liveness check (45 s of silence, pings meanwhile) and
/// resumed. Slow by nature: it waits out the real limit.
#[tokio::test]
async fn a_silently_dead_connection_is_noticed_and_resumed() {
    let fake = FakeRuntime::start(|mut conn| async move {
        if !is_resume(&conn) {
            conn.send(resumable(120_000)).await;
            if recv_request(&mut conn).await.is_some() {
                // Neither reads (no pong) nor writes, nor closes, for longer than the limit.
                conn.pause(90_000).await;
            }
            return;
        }
        conn.send(resumed(1)).await;
        conn.send(numbered(text_result("after the silence"), 1))
            .await;
        conn.drain().await;
    })
    .await;
    let started = std::time::Instant::now();
    let result = resuming_client(&fake.url)
        .query("p", options().timeout(Duration::from_secs(85)))
        .await
        .unwrap();
    assert_eq!(result.text(), Some("after the silence"));
    assert_eq!(result.metadata["reconnects"], 1);
    assert!(
        started.elapsed() >= Duration::from_secs(44),
        "{:?}",
        started.elapsed()
    );
}

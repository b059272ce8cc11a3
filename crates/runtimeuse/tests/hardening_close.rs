//! Frames that arrive after `end_session_message` never cost the client its terminal or its
//! confirm: everything queued is sent, then a close frame.
//!
//! Before 8bc84dd, a frame read after the session had ended (the reader then found the
//! session's inbound channel closed and quit, which marked the client gone) made the
//! writer drop whatever was still queued. That needs the writer to be behind when the
//! session ends, as when a command floods output and the client pauses reading, and a
//! client that goes on sending cancels: the flood test lost terminal and confirm in 1 to 4
//! of 8 sessions on that code. Without the flood (the first test) the writer is never
//! behind and nothing was lost there.

mod common;

use common::{RECV_TIMEOUT, command_execution, invocation, start_runtime};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What one session saw: its JSON messages in order, and the close code (if any).
async fn end_session_then_cancels(url: String) -> (Vec<Value>, Option<CloseCode>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let text = |v: Value| Message::Text(v.to_string().into());
    ws.send(text(invocation("SLOW:20000"))).await.unwrap();
    ws.send(text(json!({"message_type": "end_session_message"})))
        .await
        .unwrap();
    for _ in 0..5 {
        // The runtime may already be closing; a failed send is part of the scenario.
        let _ = ws
            .send(text(json!({"message_type": "cancel_message"})))
            .await;
    }
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let next = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for the session to close");
        match next {
            Some(Ok(Message::Text(t))) => {
                let message: Value = serde_json::from_str(&t).unwrap();
                if message["message_type"] == "error_message" {
                    // More late cancels, while the session is winding down.
                    for _ in 0..5 {
                        let _ = ws
                            .send(text(json!({"message_type": "cancel_message"})))
                            .await;
                    }
                }
                seen.push(message);
            }
            Some(Ok(Message::Close(frame))) => return (seen, frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return (seen, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_then_cancels_still_gets_the_terminal_the_confirm_and_a_close_frame() {
    let runtime = start_runtime(|_| {}).await;
    let sessions: Vec<_> = (0..24)
        .map(|_| tokio::spawn(end_session_then_cancels(runtime.ws_url())))
        .collect();
    for (i, session) in sessions.into_iter().enumerate() {
        let (seen, code) = session.await.unwrap();
        let types: Vec<&str> = seen
            .iter()
            .filter_map(|m| m["message_type"].as_str())
            .filter(|t| *t != "heartbeat_message")
            .collect();
        assert_eq!(
            types,
            ["error_message", "end_session_confirm_message"],
            "session {i}: {seen:?}"
        );
        assert_eq!(seen[0]["error"], "Request cancelled", "session {i}");
        assert_eq!(code, Some(CloseCode::Normal), "session {i}");
    }
}

/// A command in flight that floods output, so the writer is behind when the session ends.
const FLOOD: &str = "yes 'a line of output that fills the socket and the outbox'";

/// Sessions run at once in the flood test (each floods through its own `yes`).
const FLOOD_SESSIONS: usize = 8;

/// How long the flood test's client stops reading after end_session: the session ends
/// meanwhile, with output, terminal and confirm still queued behind a full socket.
const READ_PAUSE: Duration = Duration::from_secs(1);

/// Interval of the late cancels the flood test's client keeps sending until it is done.
const LATE_CANCEL_EVERY: Duration = Duration::from_millis(20);

/// One session of the flood test: starts [`FLOOD`]; once output arrives, sends end_session
/// and five cancels in one write, stops reading for [`READ_PAUSE`], and keeps sending a
/// cancel every [`LATE_CANCEL_EVERY`] until the connection ends. Returns the messages that
/// are neither output nor heartbeats, and the close code.
async fn end_session_then_cancels_during_a_flood(url: String) -> (Vec<Value>, Option<CloseCode>) {
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect");
    let (mut sink, mut stream) = ws.split();
    let text = |v: Value| Message::Text(v.to_string().into());
    sink.send(text(command_execution(&[FLOOD]))).await.unwrap();
    // Take some output, so the command is really running and the pipes are full.
    let mut outputs = 0;
    while outputs < 20 {
        let next = tokio::time::timeout(RECV_TIMEOUT, stream.next())
            .await
            .expect("timed out waiting for output");
        match next {
            Some(Ok(Message::Text(t))) => {
                let message: Value = serde_json::from_str(&t).unwrap();
                assert_ne!(message["message_type"], "error_message", "{message}");
                if message["message_type"] == "command_output_message" {
                    outputs += 1;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended before any output: {other:?}"),
        }
    }
    // end_session and the cancels in one write: they arrive together.
    sink.feed(text(json!({"message_type": "end_session_message"})))
        .await
        .unwrap();
    for _ in 0..5 {
        sink.feed(text(json!({"message_type": "cancel_message"})))
            .await
            .unwrap();
    }
    sink.flush().await.unwrap();
    let late_cancels = tokio::spawn(async move {
        // Ends when the runtime is gone (a failed send); aborted once the reading is done.
        loop {
            tokio::time::sleep(LATE_CANCEL_EVERY).await;
            if sink
                .send(text(json!({"message_type": "cancel_message"})))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    tokio::time::sleep(READ_PAUSE).await;
    let mut seen: Vec<Value> = Vec::new();
    let code = loop {
        let next = tokio::time::timeout(RECV_TIMEOUT, stream.next())
            .await
            .expect("timed out waiting for the session to close");
        match next {
            Some(Ok(Message::Text(t))) => {
                let message: Value = serde_json::from_str(&t).unwrap();
                match message["message_type"].as_str() {
                    Some("command_output_message" | "heartbeat_message") => {}
                    _ => seen.push(message),
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => break None,
        }
    };
    late_cancels.abort();
    (seen, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_session_then_cancels_during_an_output_flood_still_gets_the_terminal_and_the_confirm() {
    let runtime = start_runtime(|_| {}).await;
    let sessions: Vec<_> = (0..FLOOD_SESSIONS)
        .map(|_| tokio::spawn(end_session_then_cancels_during_a_flood(runtime.ws_url())))
        .collect();
    let mut lost = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let (seen, code) = session.await.unwrap();
        let types: Vec<&str> = seen
            .iter()
            .filter_map(|m| m["message_type"].as_str())
            .collect();
        if types != ["error_message", "end_session_confirm_message"]
            || code != Some(CloseCode::Normal)
        {
            lost.push(format!("session {i}: {types:?}, close {code:?}"));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {FLOOD_SESSIONS} sessions lost their terminal, confirm or close frame:\n{}",
        lost.len(),
        lost.join("\n")
    );
}

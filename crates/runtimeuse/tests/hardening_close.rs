//! Frames that arrive after `end_session_message` never cost the client its terminal or its
//! confirm: everything queued is sent, then a close frame.

mod common;

use common::{RECV_TIMEOUT, invocation, start_runtime};
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

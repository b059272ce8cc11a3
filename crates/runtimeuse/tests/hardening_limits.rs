//! What unauthenticated, greedy or broken peers can hold: the HTTP-phase deadline, the cap
//! on unfinished connections, the session cap, the message size limit, invalid UTF-8.
//! Real TCP peers on 127.0.0.1 against the runtime in-process.

mod common;

use std::time::Duration;

use common::{Peer, RECV_TIMEOUT, command_execution, start_runtime};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens a TCP connection and sends the start of an HTTP request, never finishing it.
async fn half_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    stream
}

/// Waits for the runtime to close `stream` (EOF or reset); panics after [`RECV_TIMEOUT`].
async fn closed_by_runtime(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, stream.read(&mut buf)).await {
            Err(_) => panic!("the runtime kept an unfinished HTTP connection open"),
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// The close frame the runtime ends `ws` with, skipping other frames.
async fn close_frame(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        let next = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("timed out waiting for the close frame");
        match next {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

#[tokio::test]
async fn unfinished_http_requests_are_closed_after_the_header_deadline() {
    let runtime = start_runtime(|c| c.header_read_timeout = Duration::from_millis(500)).await;
    let mut slow = half_request(runtime.addr()).await;
    let mut silent = TcpStream::connect(runtime.addr()).await.unwrap();
    closed_by_runtime(&mut slow).await;
    closed_by_runtime(&mut silent).await;

    // A client that finishes its upgrade in time is not affected.
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    peer.send(command_execution(&["echo still here"])).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["stdout"], "still here\n");
}

#[tokio::test]
async fn unfinished_connections_are_capped_and_a_client_with_the_token_still_gets_in() {
    let runtime = start_runtime(|c| {
        c.token = Some("right-token".into());
        c.max_pending_connections = 8;
        c.header_read_timeout = Duration::from_secs(600);
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(half_request(runtime.addr()).await);
    }
    // The oldest give way to the newest: all but the last 8 are closed long before the
    // (ten-minute) deadline.
    for stream in &mut slow[..32] {
        closed_by_runtime(stream).await;
    }
    let mut peer = Peer::connect(&format!("{}?token=right-token", runtime.ws_url())).await;
    peer.send(command_execution(&["echo in"])).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["stdout"], "in\n");
}

#[tokio::test]
async fn sessions_past_the_cap_are_refused_with_1013_and_a_reason() {
    let runtime = start_runtime(|c| c.max_sessions = 2).await;
    let mut first = Peer::connect(&runtime.ws_url()).await;
    let mut second = Peer::connect(&runtime.ws_url()).await;
    for peer in [&mut first, &mut second] {
        peer.send(command_execution(&["echo ok"])).await;
        peer.until_terminal().await;
    }
    let mut third = connect(&runtime.ws_url()).await;
    let frame = close_frame(&mut third).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Again);
    assert!(
        frame.reason.contains("at most 2 sessions"),
        "{}",
        frame.reason
    );

    // A slot frees when a session ends.
    first
        .send(serde_json::json!({"message_type": "end_session_message"}))
        .await;
    first.until_closed().await;
    let mut fourth = Peer::connect(&runtime.ws_url()).await;
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    // The freed slot is released just after the close; retry until it is.
    loop {
        fourth.send(command_execution(&["echo fourth"])).await;
        let mut terminal = None;
        while let Some(message) = fourth.try_recv().await {
            if common::is_terminal(&message) {
                terminal = Some(message);
                break;
            }
        }
        match terminal {
            Some(message) => {
                assert_eq!(message["results"][0]["stdout"], "fourth\n");
                break;
            }
            None => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                fourth = Peer::connect(&runtime.ws_url()).await;
            }
        }
    }
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009_naming_the_limit() {
    // The default limit: far below the WebSocket library's 64 MiB.
    let runtime = start_runtime(|_| {}).await;
    let ws = connect(&runtime.ws_url()).await;
    let (mut sink, mut stream) = ws.split();
    let big = format!(
        "{{\"message_type\":\"invocation_message\",\"user_prompt\":\"{}\"}}",
        "x".repeat(9 * 1024 * 1024)
    );
    // Sending may fail once the runtime has closed; the close frame is what counts.
    let sender = tokio::spawn(async move {
        let _ = sink.send(Message::Text(big.into())).await;
        sink
    });
    let frame = loop {
        match tokio::time::timeout(RECV_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
    .expect("a close frame with a code");
    assert_eq!(frame.code, CloseCode::Size);
    assert!(
        frame.reason.contains(&(8 * 1024 * 1024).to_string()),
        "{}",
        frame.reason
    );
    drop(sender);
}

#[tokio::test]
async fn fragments_count_together_against_the_message_limit() {
    let runtime = start_runtime(|c| c.max_message_bytes = 64 * 1024).await;
    let mut ws = connect(&runtime.ws_url()).await;
    // 40 KiB fragments: each under the limit, the message over it.
    let chunk = vec![b'x'; 40 * 1024];
    ws.send(Message::Frame(Frame::message(
        chunk.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    let _ = ws
        .send(Message::Frame(Frame::message(
            chunk,
            OpCode::Data(Data::Continue),
            false,
        )))
        .await;
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Size);
    assert!(frame.reason.contains("65536"), "{}", frame.reason);

    // A message under the limit, sent in fragments, is served.
    let mut ws = connect(&runtime.ws_url()).await;
    let text = command_execution(&["echo fragmented"]).to_string();
    let (a, b) = text.as_bytes().split_at(text.len() / 2);
    ws.send(Message::Frame(Frame::message(
        a.to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        b.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    let reply = loop {
        match tokio::time::timeout(RECV_TIMEOUT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                if common::is_terminal(&value) {
                    break value;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    };
    assert_eq!(reply["results"][0]["stdout"], "fragmented\n");
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let runtime = start_runtime(|_| {}).await;
    let mut ws = connect(&runtime.ws_url()).await;
    ws.send(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .unwrap();
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Invalid);
    assert!(frame.reason.contains("UTF-8"), "{}", frame.reason);
}

//! OpenTelemetry traces (feature `otel`): the real binary exports its session and request
//! spans over OTLP/HTTP to a collector stub on 127.0.0.1, redacted like the logs.
//!
//! Run with `cargo test -p runtimeuse --features otel --test metrics_otel`.

#![cfg(feature = "otel")]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{Peer, command_execution};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::TcpListener;

/// What the stub received: request path and body, per request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP collector: answers every POST with 200 and records it.
async fn collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut stream = AsyncBufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let mut length = 0usize;
                    loop {
                        let mut header = String::new();
                        if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    sink.lock().unwrap().push((path, body));
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                                 content-length: 0\r\n\r\n";
                    if stream.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn sessions_and_requests_are_exported_as_redacted_spans() {
    let (endpoint, received) = collector().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .env_remove("RUNTIMEUSE_TOKEN")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runtimeuse");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("runtimeuse listening on ")
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
        .to_owned();

    let mut peer = Peer::connect(&format!("{url}/")).await;
    let mut request = command_execution(&["echo traced"]);
    request["secrets_to_redact"] = json!(["otel-secret-77"]);
    request["source_id"] = json!("job-otel-secret-77");
    peer.send(request).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["stdout"], "traced\n");
    peer.send(json!({"message_type": "end_session_message"}))
        .await;
    peer.until_closed().await;

    // Shutting down flushes what the batch has not sent yet.
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "nothing was exported");
    assert!(
        received.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        received.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let all: Vec<u8> = received.into_iter().flat_map(|(_, body)| body).collect();
    for expected in ["runtimeuse", "session", "request", "job-[REDACTED]"] {
        assert!(contains(&all, expected), "{expected:?} not exported");
    }
    assert!(!contains(&all, "otel-secret-77"), "a secret was exported");
}

//! A scripted fake runtime: a real WebSocket server on 127.0.0.1:0 whose behaviour for
//! each connection is a test-supplied async script.

// `dead_code`: not every test file uses every helper; `result_large_err`: the shape of
// tungstenite's handshake callback is not ours to choose.
#![allow(dead_code, clippy::result_large_err)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use runtimeuse_client::protocol::resume::HEADER_RESUMABLE;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue};

/// What the fake saw, shared between its connections and the test.
#[derive(Default)]
pub struct Log {
    pub received: Mutex<Vec<Value>>,
    pub headers: Mutex<Vec<HeaderMap>>,
    pub connections: Mutex<usize>,
}

pub struct FakeRuntime {
    pub url: String,
    pub log: Arc<Log>,
    accept_loop: JoinHandle<()>,
}

impl FakeRuntime {
    /// Starts a fake that runs `script` for every connection it accepts. Like our
    /// runtime, its `101` responses advertise the resumable-sessions extension.
    pub async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(FakeConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_advertising(true, script).await
    }

    /// As [`Self::start`], but the `101` responses do not advertise the extension (a
    /// runtime without it, or a proxy that drops the header).
    pub async fn start_without_advertising<F, Fut>(script: F) -> Self
    where
        F: Fn(FakeConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_advertising(false, script).await
    }

    async fn start_advertising<F, Fut>(advertise: bool, script: F) -> Self
    where
        F: Fn(FakeConn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let log = Arc::new(Log::default());
        let script = Arc::new(script);
        let accept_log = Arc::clone(&log);
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&accept_log);
                let script = Arc::clone(&script);
                tokio::spawn(async move {
                    let headers_log = Arc::clone(&log);
                    let these_headers = Arc::new(Mutex::new(HeaderMap::new()));
                    let capture_these = Arc::clone(&these_headers);
                    let capture = move |request: &Request, mut response: Response| {
                        headers_log
                            .headers
                            .lock()
                            .unwrap()
                            .push(request.headers().clone());
                        *capture_these.lock().unwrap() = request.headers().clone();
                        if advertise {
                            response
                                .headers_mut()
                                .insert(HEADER_RESUMABLE, HeaderValue::from_static("1"));
                        }
                        Ok(response)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, capture).await else {
                        return;
                    };
                    *log.connections.lock().unwrap() += 1;
                    let headers = std::mem::take(&mut *these_headers.lock().unwrap());
                    script(FakeConn { ws, log, headers }).await;
                });
            }
        });
        Self {
            url,
            log,
            accept_loop,
        }
    }

    /// Every JSON message received so far, over all connections.
    pub fn received(&self) -> Vec<Value> {
        self.log.received.lock().unwrap().clone()
    }

    /// `message_type`s received so far.
    pub fn received_types(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|m| m["message_type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn connections(&self) -> usize {
        *self.log.connections.lock().unwrap()
    }

    /// Waits up to 5 s for a message of `message_type` to arrive; whether it did.
    pub async fn wait_for(&self, message_type: &str) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if self.received_types().iter().any(|t| t == message_type) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// One accepted connection, driven by a script.
pub struct FakeConn {
    ws: WebSocketStream<TcpStream>,
    log: Arc<Log>,
    /// The headers of this connection's upgrade request.
    pub headers: HeaderMap,
}

impl FakeConn {
    /// The next JSON message from the client; `None` once it closed.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    self.log.received.lock().unwrap().push(value.clone());
                    return Some(value);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next message, which must be of `message_type`.
    pub async fn expect(&mut self, message_type: &str) -> Value {
        let message = self
            .recv()
            .await
            .unwrap_or_else(|| panic!("connection closed while waiting for {message_type}"));
        assert_eq!(message["message_type"], message_type, "got {message}");
        message
    }

    pub async fn send(&mut self, value: Value) {
        self.send_raw(&value.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        let _ = self.ws.send(Message::text(text.to_owned())).await;
    }

    /// Reads (and logs) until the client goes away.
    pub async fn drain(&mut self) {
        while self.recv().await.is_some() {}
    }

    /// Holds the connection open without reading for `ms` milliseconds.
    pub async fn pause(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// The value of header `name` of this connection's upgrade, if sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    /// Reads (and logs) until the client closes; the close code it sent, if any.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.ws.next().await? {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    self.log.received.lock().unwrap().push(value);
                }
                Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Closes with `code` and `reason`, then waits (briefly) for the client's answer.
    pub async fn close_with(mut self, code: u16, reason: &str) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Drops the TCP connection without a close handshake.
    pub fn hang_up(self) {
        drop(self);
    }
}

pub fn text_result(text: &str) -> Value {
    json!({"message_type": "result_message", "data": {"type": "text", "text": text}, "metadata": {}})
}

pub fn assistant(text: &str) -> Value {
    json!({"message_type": "assistant_message", "text_blocks": [text]})
}

pub fn stdout(command: &str, text: &str) -> Value {
    json!({"message_type": "command_output_message", "stream": "stdout", "text": text, "command": command})
}

pub fn heartbeat(elapsed_ms: u64) -> Value {
    json!({"message_type": "heartbeat_message", "phase": "request_in_flight", "elapsed_ms": elapsed_ms})
}

pub fn error(text: &str) -> Value {
    json!({"message_type": "error_message", "error": text, "metadata": {}})
}

pub fn artifact_request(filename: &str, filepath: &str) -> Value {
    json!({"message_type": "artifact_upload_request_message", "filename": filename, "filepath": filepath})
}

pub fn commands_result(items: Value) -> Value {
    json!({"message_type": "command_execution_result_message", "results": items})
}

/// Options for an echo-style query.
pub fn options() -> runtimeuse_client::QueryOptions {
    runtimeuse_client::QueryOptions::new("You are a test.", "echo")
}

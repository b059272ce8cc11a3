//! Harness for end-to-end tests: the real runtime in-process on 127.0.0.1:0 with the echo
//! agent, and a raw WebSocket peer that speaks the wire protocol as JSON.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use runtimeuse_agents::EchoAgent;
use runtimeuse_server::server::{Server, ServerConfig, ServerHandle};
use runtimeuse_server::session::SessionConfig;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any single message before failing.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the runtime with the echo agent; `configure` may change any setting.
pub async fn start_runtime(configure: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut session = SessionConfig::new(Arc::new(EchoAgent));
    session.heartbeat_interval = Duration::from_secs(30);
    session.artifacts.late_event_grace = Duration::from_millis(300);
    session.commands.kill_grace = Duration::from_millis(500);
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), session);
    configure(&mut config);
    Server::bind(config).await.expect("bind").spawn()
}

/// A raw protocol peer.
pub struct Peer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Peer {
    /// Connects to `url` (panics on failure).
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Self { ws }
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next message, or `None` if the connection closed.
    pub async fn try_recv(&mut self) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("timed out waiting for a message");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("runtime sent invalid JSON"));
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message (panics when the connection closed).
    pub async fn recv(&mut self) -> Value {
        self.try_recv()
            .await
            .expect("connection closed unexpectedly")
    }

    /// Reads until a terminal message; returns the messages before it and the terminal.
    pub async fn until_terminal(&mut self) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if is_terminal(&message) {
                return (before, message);
            }
            before.push(message);
        }
    }

    /// Reads until the connection closes; returns everything received.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut all = Vec::new();
        while let Some(message) = self.try_recv().await {
            all.push(message);
        }
        all
    }

    /// Closes the connection abruptly (no end_session).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Whether `message` ends a request.
pub fn is_terminal(message: &Value) -> bool {
    matches!(
        message["message_type"].as_str(),
        Some("result_message" | "command_execution_result_message" | "error_message")
    )
}

/// An invocation as the PyPI client sends it (unset optionals as `null`).
pub fn invocation(prompt: &str) -> Value {
    json!({
        "message_type": "invocation_message",
        "source_id": null,
        "system_prompt": "You are a test.",
        "user_prompt": prompt,
        "agent_env": null,
        "output_format_json_schema_str": null,
        "secrets_to_redact": [],
        "artifacts_dirs": null,
        "artifacts_ignore_content": null,
        "pre_agent_invocation_commands": null,
        "post_agent_invocation_commands": null,
        "model": "echo-model",
        "pre_agent_downloadables": null,
    })
}

/// A command execution of `commands` (plain strings).
pub fn command_execution(commands: &[&str]) -> Value {
    json!({
        "message_type": "command_execution_message",
        "source_id": null,
        "secrets_to_redact": [],
        "commands": commands.iter().map(|c| json!({"command": c, "cwd": null, "env": null})).collect::<Vec<_>>(),
        "artifacts_dirs": null,
        "artifacts_ignore_content": null,
        "pre_execution_downloadables": null,
    })
}

/// Concatenated `text` of `command_output_message`s on `stream`.
pub fn output_text(messages: &[Value], stream: &str) -> String {
    messages
        .iter()
        .filter(|m| m["message_type"] == "command_output_message" && m["stream"] == stream)
        .filter_map(|m| m["text"].as_str())
        .collect()
}

/// Messages of one type.
pub fn of_type<'a>(messages: &'a [Value], message_type: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .filter(|m| m["message_type"] == message_type)
        .collect()
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits up to `timeout` for `pid` to be gone; returns whether it is.
pub async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !process_alive(pid)
}

/// Waits for a file holding a pid to appear and returns the pid.
pub async fn read_pid_file(path: &std::path::Path) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid file {} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A command whose shell starts a grandchild that ignores SIGTERM, records its pid in
/// `pid_file`, and sleeps: what must die when a request is stopped.
pub fn grandchild_command(pid_file: &std::path::Path) -> String {
    format!(
        "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 1000' & wait",
        pid_file.display()
    )
}

/// Starts [`grandchild_command`] as a command execution through `peer` and returns the
/// grandchild's pid, with the directory of its pid file (keep it alive with the test).
pub async fn start_grandchild(peer: &mut Peer) -> (tempfile::TempDir, i32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    peer.send(command_execution(&[&grandchild_command(&pid_file)]))
        .await;
    let pid = read_pid_file(&pid_file).await;
    (dir, pid)
}

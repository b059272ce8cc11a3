//! Support for the handler tests: the whole runtime serving a handler program, and a
//! WebSocket client that reads frames up to a request's terminal.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use runtimeuse_agents::handler::{HandlerAgent, HandlerConfig, HandlerProgram};
use runtimeuse_server::server::{Server, ServerConfig, ServerHandle};
use runtimeuse_server::session::SessionConfig;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Hang guard for one frame.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `python3 examples/handlers/python/handler.py`.
pub async fn python_handler() -> HandlerProgram {
    let script = repo().join("examples/handlers/python/handler.py");
    HandlerProgram::resolve(
        "python3",
        &[script.display().to_string()],
        "node",
        std::env::var("PATH").ok().as_deref(),
    )
    .await
    .expect("python3 is on PATH")
}

/// `python3 tests/handler_support/probe_handler.py ARGS…`: the handler for tests of how
/// handlers are run (environment, process tree, redaction).
pub async fn probe_handler(args: &[&str]) -> HandlerProgram {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/handler_support/probe_handler.py");
    let mut all = vec![script.display().to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    HandlerProgram::resolve(
        &python_interpreter(),
        &all,
        "node",
        std::env::var("PATH").ok().as_deref(),
    )
    .await
    .expect("python3 is on PATH")
}

/// The Python interpreter itself, not a version manager's shim (pyenv's rewrites `PATH`
/// and adds variables, which tests of the handler's environment must not see).
pub fn python_interpreter() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!path.is_empty(), "python3 does not know its executable");
    path
}

/// The session id of process `pid` (field 6 of `/proc/PID/stat`).
pub fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// A JS/TS module run through the Node adapter.
pub async fn node_handler(module: &Path) -> HandlerProgram {
    HandlerProgram::resolve(
        module.to_str().unwrap(),
        &[],
        "node",
        std::env::var("PATH").ok().as_deref(),
    )
    .await
    .expect("node is on PATH")
}

/// The runtime serving `program` on a free loopback port, with `tune` applied.
pub async fn serve(program: HandlerProgram, tune: impl FnOnce(&mut HandlerConfig)) -> ServerHandle {
    let mut config = HandlerConfig::new(program);
    tune(&mut config);
    let mut session = SessionConfig::new(Arc::new(HandlerAgent::new(config)));
    session.agent_cancel_grace = Duration::from_secs(10);
    let server = ServerConfig::new("127.0.0.1:0".parse().unwrap(), session);
    Server::bind(server).await.unwrap().spawn()
}

/// An invocation with prompt `prompt`, merged with `extra` fields.
pub fn invocation(prompt: &str, extra: Value) -> Value {
    let mut message = json!({
        "message_type": "invocation_message",
        "system_prompt": "You are a test.",
        "user_prompt": prompt,
        "model": "test-model",
        "secrets_to_redact": [],
    });
    if let (Some(message), Value::Object(extra)) = (message.as_object_mut(), extra) {
        message.extend(extra);
    }
    message
}

/// One WebSocket connection to the runtime.
pub struct Client {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to `server`.
    pub async fn connect(server: &ServerHandle) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        Self { socket }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame.
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
                .await
                .expect("no frame from the runtime")
                .expect("the socket closed")
                .unwrap();
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// Frames up to and including the next terminal (`result_message`/`error_message`),
    /// heartbeats left out.
    pub async fn until_terminal(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let kind = frame["message_type"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if kind == "heartbeat_message" {
                continue;
            }
            frames.push(frame);
            if kind == "result_message" || kind == "error_message" {
                return frames;
            }
        }
    }

    /// Sends `message` and returns the frames up to its terminal.
    pub async fn request(&mut self, message: &Value) -> Vec<Value> {
        self.send(message).await;
        self.until_terminal().await
    }
}

/// Sends one invocation on a fresh connection and returns its frames.
pub async fn invoke(server: &ServerHandle, message: &Value) -> Vec<Value> {
    Client::connect(server).await.request(message).await
}

/// The frames of `kind`.
pub fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames
        .iter()
        .filter(|f| f["message_type"] == kind)
        .collect()
}

/// The terminal frame.
pub fn terminal(frames: &[Value]) -> &Value {
    frames.last().expect("no frames")
}

/// Whether process `pid` still exists (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !state.starts_with('Z')
}

/// Waits (hang guard: 20 s) until none of `pids` is alive.
pub async fn wait_gone(pids: &[i32]) -> bool {
    for _ in 0..200 {
        if pids.iter().all(|&pid| !alive(pid)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits (hang guard: 20 s) for the pid file the Python handler writes.
pub async fn read_pids(path: &Path) -> Vec<i32> {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the handler never wrote {}", path.display());
}

/// Starts the ESCAPE handler on `client` and returns (handler pid, escaped sleep pid),
/// checked to be a real escape: alive, in a session other than the handler's.
pub async fn start_escape(client: &mut Client, dir: &std::path::Path) -> (i32, i32) {
    let pid_file = dir.join("pids");
    client
        .send(&invocation(
            "ESCAPE",
            json!({"agent_env": {"HANDLER_PID_FILE": pid_file}}),
        ))
        .await;
    let pids = read_pids(&pid_file).await;
    let [handler, escaped] = pids[..] else {
        panic!("expected two pids, got {pids:?}");
    };
    assert!(alive(escaped), "the escaped sleep is not running");
    assert_ne!(
        session_of(escaped),
        session_of(handler),
        "the sleep did not leave the handler's session"
    );
    (handler, escaped)
}

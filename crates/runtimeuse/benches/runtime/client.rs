//! The client side: a plain tokio-tungstenite peer speaking the wire protocol as JSON, and
//! an in-process WebSocket echo server as the round-trip floor.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for any one frame before the bench gives up.
const RECV_TIMEOUT: Duration = Duration::from_secs(120);

/// Connects to `url`.
pub async fn connect(url: &str) -> Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// A command execution of one command.
pub fn command_execution(command: &str, secrets: &[&str]) -> Value {
    json!({
        "message_type": "command_execution_message",
        "commands": [{"command": command}],
        "secrets_to_redact": secrets,
    })
}

/// An invocation of the echo agent.
pub fn invocation(prompt: &str) -> Value {
    json!({
        "message_type": "invocation_message",
        "system_prompt": "s",
        "user_prompt": prompt,
        "model": "m",
    })
}

async fn send(ws: &mut Ws, message: &Value) -> Result<()> {
    ws.send(Message::text(message.to_string()))
        .await
        .context("sending a frame")
}

/// The next text frame, parsed.
async fn recv(ws: &mut Ws) -> Result<Value> {
    loop {
        let next = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .context("timed out waiting for a frame")?;
        match next {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).context("a frame is not JSON");
            }
            Some(Ok(Message::Close(_))) | None => bail!("the connection closed"),
            Some(Err(e)) => return Err(e).context("reading a frame"),
            Some(Ok(_)) => {}
        }
    }
}

fn is_terminal(message: &Value) -> bool {
    matches!(
        message["message_type"].as_str(),
        Some("result_message" | "command_execution_result_message" | "error_message")
    )
}

/// What a client saw of one streamed command.
pub struct Streamed {
    /// Sum of the `text` lengths of stdout `command_output_message`s.
    pub bytes: u64,
    /// How many of them.
    pub frames: u64,
    /// The longest `text`.
    pub largest_frame: usize,
    /// From sending the request to receiving its terminal message.
    pub elapsed: Duration,
}

/// Runs `command` through the runtime, counting its streamed stdout and checking that
/// every byte is `expected` and that the command exited 0.
pub async fn stream(
    ws: &mut Ws,
    command: &str,
    secrets: &[&str],
    expected: u8,
) -> Result<Streamed> {
    let started = Instant::now();
    send(ws, &command_execution(command, secrets)).await?;
    let mut seen = Streamed {
        bytes: 0,
        frames: 0,
        largest_frame: 0,
        elapsed: Duration::ZERO,
    };
    let mut wrong = false;
    let terminal = loop {
        let message = recv(ws).await?;
        if is_terminal(&message) {
            break message;
        }
        if message["message_type"] != "command_output_message" {
            continue;
        }
        let text = message["text"]
            .as_str()
            .context("command output without text")?;
        if message["stream"] != "stdout" {
            bail!("{command:?} wrote to {}: {text:?}", message["stream"]);
        }
        wrong |= !crate::process::all_equal(text.as_bytes(), expected);
        seen.bytes += text.len() as u64;
        seen.frames += 1;
        seen.largest_frame = seen.largest_frame.max(text.len());
    };
    seen.elapsed = started.elapsed();
    if terminal["message_type"] != "command_execution_result_message" {
        bail!("{command:?} ended with {terminal}");
    }
    let exit_code = &terminal["results"][0]["exit_code"];
    if exit_code != 0 {
        bail!("{command:?} exited with {exit_code}");
    }
    if wrong {
        bail!(
            "the stream of {command:?} held a byte other than {:?}",
            char::from(expected)
        );
    }
    Ok(seen)
}

/// Sends `request` `n` times, one at a time, timing each up to its terminal message,
/// which `check` validates.
pub async fn round_trips(
    ws: &mut Ws,
    request: &Value,
    n: usize,
    check: impl Fn(&Value) -> Result<()>,
) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        send(ws, request).await?;
        let terminal = loop {
            let message = recv(ws).await?;
            if is_terminal(&message) {
                break message;
            }
        };
        times.push(started.elapsed());
        check(&terminal)?;
    }
    Ok(times)
}

/// Sends `end_session_message` and waits for the confirm and the close.
pub async fn end_session(mut ws: Ws) -> Result<()> {
    send(&mut ws, &json!({"message_type": "end_session_message"})).await?;
    loop {
        let message = recv(&mut ws).await?;
        if message["message_type"] == "end_session_confirm_message" {
            break;
        }
    }
    // The runtime closes after the confirm; read until it has.
    while let Some(Ok(_)) = tokio::time::timeout(RECV_TIMEOUT, ws.next())
        .await
        .context("timed out waiting for the close")?
    {}
    Ok(())
}

/// Waits until the runtime's `/health` reports no open session.
pub async fn wait_for_no_sessions(health_url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health: Value = reqwest::get(health_url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("GET /health")?
            .json()
            .await
            .context("GET /health")?;
        if health["sessions"] == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("a session is still open 10 s after it ended: {health}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a WebSocket server that echoes every text frame of one connection, on its own
/// thread and single-threaded runtime (as a separate server process would be); returns
/// its URL.
pub fn spawn_echo_server() -> Result<String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
    std::thread::spawn(move || {
        let served = async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let _ = ready_tx.send(Ok(listener.local_addr()?));
            let (stream, _) = listener.accept().await?;
            let mut ws = tokio_tungstenite::accept_async(stream).await?;
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() {
                    ws.send(message).await?;
                }
            }
            anyhow::Ok(())
        };
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(served));
        if let Err(e) = result {
            eprintln!("echo server: {e:#}");
        }
    });
    let addr = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the echo server did not start")??;
    Ok(format!("ws://{addr}"))
}

/// Round trips of `request` through the echo server: the same frame, parsed on return.
pub async fn echo_round_trips(ws: &mut Ws, request: &Value, n: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        send(ws, request).await?;
        let echoed = recv(ws).await?;
        times.push(started.elapsed());
        if &echoed != request {
            bail!("the echo server answered {echoed}");
        }
    }
    Ok(times)
}

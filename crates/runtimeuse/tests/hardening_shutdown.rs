//! The real binary under peers that never finish: shutdown stays bounded, and a ping flood
//! from a client that doesn't read can't grow the runtime's memory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Peer, command_execution, invocation};
use futures_util::SinkExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Longest a test waits for the runtime to exit: a hang guard, far above the bound.
const EXIT_GUARD: Duration = Duration::from_secs(90);

/// The documented bound with default flags (shutdown timeout 8 s, hard-stop grace 2 s),
/// plus slack for a busy machine. The runtime before this bound existed took 40 s for a
/// non-reading client and never exited with a half-sent request.
const EXIT_BOUND: Duration = Duration::from_secs(25);

/// The runtime binary on a free port; killed on drop.
struct Runtime {
    child: Child,
    // Kept open: the runtime must be able to write its start-up lines.
    _stdout: BufReader<ChildStdout>,
    addr: std::net::SocketAddr,
}

impl Runtime {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
            .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
            .args(["--kill-grace", "0.5", "--artifact-grace", "0.2"])
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn runtimeuse");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read startup line");
        let addr = line
            .trim()
            .strip_prefix("runtimeuse listening on ws://")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .parse()
            .expect("address");
        Self {
            child,
            _stdout: stdout,
            addr,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Sends SIGTERM; returns the exit code and how long the exit took.
    async fn terminate(&mut self) -> (Option<i32>, Duration) {
        kill(Pid::from_raw(self.pid()), Signal::SIGTERM).expect("SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code(), started.elapsed());
            }
            assert!(
                started.elapsed() < EXIT_GUARD,
                "the runtime did not exit within {EXIT_GUARD:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident memory in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_peer_with_half_an_http_request_does_not_keep_the_runtime_from_exiting() {
    let mut runtime = Runtime::start(&[]);
    let mut half = TcpStream::connect(runtime.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let _silent = TcpStream::connect(runtime.addr).await.unwrap();
    // An idle session that reads, and one that never reads.
    let mut idle = Peer::connect(&runtime.url()).await;
    let _mute = tokio_tungstenite::connect_async(runtime.url())
        .await
        .unwrap();
    let (code, took) = runtime.terminate().await;
    assert_eq!(code, Some(0));
    assert!(took < EXIT_BOUND, "exit took {took:?}");
    // The reading session was closed, not dropped.
    assert!(idle.until_closed().await.is_empty());
}

#[tokio::test]
async fn a_client_that_stopped_reading_does_not_delay_the_exit_past_the_bound() {
    let mut runtime = Runtime::start(&[]);
    let mut peer = Peer::connect(&runtime.url()).await;
    // Far more output than the socket buffers and the outbox hold; the peer reads none.
    peer.send(command_execution(&["yes output-line | head -c 200000000"]))
        .await;
    let mut other = Peer::connect(&runtime.url()).await;
    other.send(invocation("SLOW:60000")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, took) = runtime.terminate().await;
    assert_eq!(code, Some(0));
    assert!(took < EXIT_BOUND, "exit took {took:?}");
    // The well-behaved client got its terminal before the close.
    let rest = other.until_closed().await;
    assert!(
        rest.iter()
            .any(|m| m["error"] == runtimeuse_server::CANCELLED),
        "{rest:?}"
    );
    drop(peer);
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_does_not_read_keeps_memory_bounded() {
    const PINGS: usize = 400_000;
    let runtime = Runtime::start(&[]);
    let stream = TcpStream::connect(runtime.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(runtime.url(), stream)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = runtime.rss();
    let payload = vec![b'p'; 125];
    // Writing stops once the runtime stops reading; the timeout ends the flood then.
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        for i in 0..PINGS {
            ws.feed(Message::Ping(payload.clone().into())).await?;
            if i % 1000 == 0 {
                ws.flush().await?;
            }
        }
        ws.flush().await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = runtime.rss().saturating_sub(before);
    // Unbounded pongs would take about 127 bytes per ping (~50 MB here).
    assert!(
        grown < 16 * 1024 * 1024,
        "RSS grew by {} KiB under the flood",
        grown / 1024
    );
    drop(ws);
}

#[test]
fn limit_flags_out_of_range_fail_with_a_clear_message() {
    for (flag, expected) in [
        ("--max-sessions=0", "max-sessions"),
        ("--max-message-bytes=0", "max-message-bytes"),
        ("--header-read-timeout=0", "header-read-timeout"),
        ("--shutdown-timeout=-1", "shutdown-timeout"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
            .args([
                "--agent",
                "echo",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                flag,
            ])
            .output()
            .expect("run runtimeuse");
        assert!(!output.status.success(), "{flag}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{flag}: {stderr}");
    }
}

//! Cancellation, disconnects and shutdown kill whole process trees; large output streams
//! through the socket without loss.

mod common;

use std::time::{Duration, Instant};

use common::{Peer, command_execution, invocation, start_runtime, wait_gone};
use serde_json::json;

#[tokio::test]
async fn cancel_ends_the_request_and_kills_grandchildren() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let (_dir, pid) = common::start_grandchild(&mut peer).await;
    let started = Instant::now();
    peer.send(json!({"message_type": "cancel_message"})).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(
        terminal,
        json!({"message_type": "error_message", "error": "Request cancelled", "metadata": {}})
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wait_gone(pid, Duration::from_secs(5)).await,
        "grandchild {pid} survived cancel"
    );

    // The session stays open.
    peer.send(invocation("ECHO:after cancel")).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["text"], "after cancel");
}

#[tokio::test]
async fn cancel_stops_a_slow_agent_and_is_ignored_when_idle() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(json!({"message_type": "cancel_message"})).await;
    peer.send(invocation("SLOW:20000")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    peer.send(json!({"message_type": "cancel_message"})).await;
    let (before, terminal) = peer.until_terminal().await;
    assert!(
        before.is_empty(),
        "idle cancel must not be answered: {before:?}"
    );
    assert_eq!(terminal["error"], "Request cancelled");
    // Against SLOW:20000.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn cancel_during_pre_command_skips_the_agent() {
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("agent-ran");
    let mut message = invocation(&format!("WRITE_FILE:{} x", marker.display()));
    message["pre_agent_invocation_commands"] = json!([{"command": "sleep 30"}]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    peer.send(json!({"message_type": "cancel_message"})).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["error"], "Request cancelled");
    assert!(!marker.exists());
}

#[tokio::test]
async fn disconnect_kills_the_running_process_tree() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let (_dir, pid) = common::start_grandchild(&mut peer).await;
    peer.close().await;
    assert!(
        wait_gone(pid, Duration::from_secs(5)).await,
        "grandchild {pid} survived disconnect"
    );
}

#[tokio::test]
async fn large_output_streams_completely_through_the_socket() {
    const BYTES: u64 = 64 * 1024 * 1024;
    let runtime = start_runtime(|c| c.session.commands.capture_limit = 4096).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(command_execution(&[&format!(
        "head -c {BYTES} /dev/zero | tr '\\0' 'a'; echo; echo tail-marker"
    )]))
    .await;
    let mut streamed = 0u64;
    let mut last_text = String::new();
    let terminal = loop {
        let message = peer.recv().await;
        if message["message_type"] == "command_output_message" {
            let text = message["text"].as_str().unwrap();
            streamed += text.len() as u64;
            last_text = text.to_owned();
        } else if common::is_terminal(&message) {
            break message;
        }
    };
    assert_eq!(streamed, BYTES + 1 + "tail-marker\n".len() as u64);
    assert!(last_text.ends_with("tail-marker\n"));
    assert_eq!(terminal["results"][0]["exit_code"], 0);
    assert_eq!(terminal["results"][0]["stdout_truncated"], true);
    assert_eq!(
        terminal["results"][0]["stdout"].as_str().unwrap().len(),
        4096
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped_and_its_processes_killed() {
    let runtime = start_runtime(|c| c.ping_interval = Some(Duration::from_millis(100))).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let (_dir, pid) = common::start_grandchild(&mut peer).await;
    // The peer stays connected but never reads again, so it never answers a ping.
    let started = Instant::now();
    assert!(
        wait_gone(pid, Duration::from_secs(5)).await,
        "silent client's process survived"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    drop(peer);
}

#[tokio::test]
async fn a_client_that_answers_pings_keeps_a_long_quiet_request() {
    let runtime = start_runtime(|c| c.ping_interval = Some(Duration::from_millis(50))).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    // No heartbeat in 30 s, no output: only pongs keep the connection alive.
    peer.send(invocation("SLOW:700")).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["text"], "done");
}

/// The dead-client rule counts ping intervals in which the client neither sent nor took
/// anything; a reader that pauses (here for more than one interval at a time) but keeps
/// taking bytes is alive. Generous on purpose: the runtime and this reader share a busy
/// machine, and only three whole intervals without any progress end the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_of_long_output_is_not_mistaken_for_a_dead_client() {
    const INTERVAL: Duration = Duration::from_secs(1);
    let runtime = start_runtime(|c| {
        c.ping_interval = Some(INTERVAL);
        c.session.commands.capture_limit = 1024;
    })
    .await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    // Output keeps the socket and the outbox full for many ping intervals.
    peer.send(command_execution(&[
        "head -c 30000000 /dev/zero | tr '\\0' a; sleep 0.5; echo finished",
    ]))
    .await;
    let mut frames = 0u64;
    let mut pauses = 0u32;
    let terminal = loop {
        let message = peer.recv().await;
        if common::is_terminal(&message) {
            break message;
        }
        frames += 1;
        if frames.is_multiple_of(40) && pauses < 4 {
            pauses += 1;
            tokio::time::sleep(INTERVAL + INTERVAL / 4).await;
        }
    };
    assert!(pauses >= 3, "the output ended before the reader paused");
    assert_eq!(terminal["results"][0]["exit_code"], 0, "{terminal}");
}

//! One session watching `artifacts_dirs: ["/"]` stalls nobody else: while the real binary
//! walks and watches the whole file system for it, `/health` (a fresh TCP connection each
//! time) and a second session keep answering. Before the walk left the async workers, the
//! runtime froze for the length of the walk (seconds; 6–16 s were seen).

mod binary;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Peer, invocation, is_terminal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Slowest answer accepted from `/health` or the other session: generous for a busy 2-core
/// machine, far below the freezes a walk of `/` on an async worker caused.
const PROMPT: Duration = Duration::from_secs(3);

/// Hang guard for the whole `/` request (walk, watch, echo answer, held result).
const REQUEST_GUARD: Duration = Duration::from_secs(180);

/// Pause between two probes of the same kind.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// One timed answer: when the probe started and how long it took (`None`: no valid answer
/// within the guard).
#[derive(Debug, Clone, Copy)]
struct Probe {
    started: Instant,
    took: Option<Duration>,
}

/// `GET /health` over a new TCP connection; whether the answer was a 200.
async fn health(addr: SocketAddr) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(REQUEST_GUARD, exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Probes `/health` until `stop`.
async fn probe_health(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<Probe> {
    let mut probes = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let ok = health(addr).await;
        probes.push(Probe {
            started,
            took: ok.then(|| started.elapsed()),
        });
        tokio::time::sleep(PROBE_EVERY).await;
    }
    probes
}

/// Runs echo invocations one after another on its own session until `stop`.
async fn probe_session(url: String, stop: Arc<AtomicBool>) -> Vec<Probe> {
    let mut peer = Peer::connect(&url).await;
    let mut probes = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        peer.send(invocation("still answering")).await;
        let (_, terminal) = peer.until_terminal().await;
        let ok = terminal["message_type"] == "result_message";
        probes.push(Probe {
            started,
            took: ok.then(|| started.elapsed()),
        });
        tokio::time::sleep(PROBE_EVERY).await;
    }
    probes
}

/// Asserts that every probe started in `window` answered within [`PROMPT`]; returns how
/// many there were and the slowest answer.
fn check(kind: &str, probes: &[Probe], window: (Instant, Instant)) -> (usize, Duration) {
    let during: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.started >= window.0 && p.started <= window.1)
        .collect();
    let mut slowest = Duration::ZERO;
    for probe in &during {
        let at = probe.started - window.0;
        let took = probe
            .took
            .unwrap_or_else(|| panic!("{kind} probe {at:?} into the walk got no valid answer"));
        assert!(
            took <= PROMPT,
            "{kind} probe {at:?} into the walk of / took {took:?} (limit {PROMPT:?})"
        );
        slowest = slowest.max(took);
    }
    (during.len(), slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_the_root_directory_stalls_neither_health_nor_another_session() {
    let runtime = binary::Runtime::start(
        &["--artifact-grace", "0.2"],
        std::iter::empty::<(&str, &str)>(),
    );
    let url = format!("{}/", runtime.url);
    let addr: SocketAddr = runtime
        .url
        .trim_start_matches("ws://")
        .parse()
        .expect("runtime address");
    let stop = Arc::new(AtomicBool::new(false));
    let health_probes = tokio::spawn(probe_health(addr, stop.clone()));
    let session_probes = tokio::spawn(probe_session(url.clone(), stop.clone()));
    // Both probes are running before the walk starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut root_session = Peer::connect(&url).await;
    let mut request = invocation("watching /");
    request["artifacts_dirs"] = serde_json::json!(["/"]);
    let sent = Instant::now();
    root_session.send(request).await;
    // The watch is set up before the agent runs: the first answer ends the walk (an error
    // too, e.g. when the machine's inotify watches run out; the walk happened all the same).
    let first = tokio::time::timeout(REQUEST_GUARD, root_session.recv())
        .await
        .expect("the request watching / never answered");
    let walked = Instant::now();
    let mut terminal = first.clone();
    while !is_terminal(&terminal) {
        terminal = tokio::time::timeout(REQUEST_GUARD, root_session.recv())
            .await
            .expect("the request watching / never finished");
    }
    let finished = Instant::now();
    // Leave abruptly: the watch of / would otherwise announce every file the machine writes.
    root_session.close().await;
    tokio::time::sleep(PROBE_EVERY * 5).await;
    stop.store(true, Ordering::Release);
    let health_probes = health_probes.await.expect("health prober");
    let session_probes = session_probes.await.expect("session prober");

    let window = (sent, finished);
    let (health_count, health_slowest) = check("/health", &health_probes, window);
    let (session_count, session_slowest) = check("session", &session_probes, window);
    eprintln!(
        "walk of / took {:?} (first answer {} {}), request {:?}; during it {health_count} \
         /health answers (slowest {health_slowest:?}) and {session_count} answers to the other \
         session (slowest {session_slowest:?})",
        walked - sent,
        first["message_type"],
        first["error"],
        finished - sent,
    );
    assert!(
        health_count > 0 && session_count > 0,
        "no probe ran while / was watched"
    );
    // Directories that can't be watched (another user's /proc entries, say) are left out;
    // only the machine's inotify limit may refuse the watch.
    if terminal["message_type"] == "error_message" {
        let error = terminal["error"].as_str().unwrap_or_default();
        assert!(error.contains("watch limit"), "watching / failed: {error}");
    }
    // The probes after the walk are checked too: nothing may stay stuck once it is over.
    let all = (health_probes[0].started, Instant::now());
    check("/health", &health_probes, all);
    check("session", &session_probes, all);
}

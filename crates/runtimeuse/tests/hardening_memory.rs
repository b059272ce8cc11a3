//! Memory that sessions used goes back to the OS once they end: the real binary's resident
//! memory after a burst of concurrent sessions (big prompts echoed, megabytes of command
//! output) returns near what it was before the burst. With glibc's malloc left alone the
//! freed pages stayed in its per-thread arenas: after this burst the runtime held ~100 MiB
//! more than before it, for as long as it ran.

mod binary;
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Peer, command_execution, invocation, output_text};

/// Concurrent sessions in the burst: more than the async workers and blocking threads, so
/// that several allocator arenas fill.
const SESSIONS: usize = 16;

/// Rounds of the burst (each with fresh sessions).
const ROUNDS: usize = 2;

/// Size of each echoed prompt.
const PROMPT_BYTES: usize = 2 << 20;

/// Bytes of command output per session and round.
const OUTPUT_BYTES: usize = 6 << 20;

/// The burst must have raised resident memory by at least this much, or the test proves
/// nothing about giving it back.
const BURST_MIN_GROWTH_KIB: u64 = 32 << 10;

/// "Near the start": what may stay resident after the sessions ended (caches that live as
/// long as the process, the allocator's own bookkeeping).
const NEAR_START_KIB: u64 = 16 << 10;

/// How long resident memory is given to come back down (generous for a busy machine: the
/// release runs a second after the last session ended).
const SETTLE_GUARD: Duration = Duration::from_secs(60);

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// One session of the burst: a big prompt echoed, then a command printing `OUTPUT_BYTES`,
/// both checked, then an abrupt close.
async fn burst_session(url: String, round: usize, index: usize) {
    let mut peer = Peer::connect(&url).await;
    let filler = char::from(b'a' + u8::try_from((round * SESSIONS + index) % 26).expect("letter"));
    let prompt: String = std::iter::repeat_n(filler, PROMPT_BYTES).collect();
    peer.send(invocation(&format!("ECHO:{prompt}"))).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["message_type"], "result_message", "{terminal}");
    let lines = OUTPUT_BYTES / 1024;
    let command = format!(
        "i=0; line=$(head -c 1023 /dev/zero | tr '\\0' {filler}); \
         while [ $i -lt {lines} ]; do echo \"$line\"; i=$((i+1)); done"
    );
    peer.send(command_execution(&[command.as_str()])).await;
    let (messages, terminal) = peer.until_terminal().await;
    assert_eq!(
        terminal["message_type"], "command_execution_result_message",
        "{terminal}"
    );
    assert_eq!(output_text(&messages, "stdout").len(), lines * 1024);
    peer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_of_ended_sessions_goes_back_to_the_os() {
    let runtime = binary::Runtime::start(&[], std::iter::empty::<(&str, &str)>());
    let pid = runtime.pid();

    // One small session first, so that what lives as long as the process (lazily built
    // clients, thread stacks) is part of the start.
    let mut warm_up = Peer::connect(&runtime.url).await;
    warm_up.send(command_execution(&["echo warm"])).await;
    let _ = warm_up.until_terminal().await;
    warm_up.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(start));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, sampling) = (peak.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::Acquire) {
                peak.fetch_max(rss_kib(pid), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    for round in 0..ROUNDS {
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|index| tokio::spawn(burst_session(runtime.url.clone(), round, index)))
            .collect();
        for session in sessions {
            session.await.expect("burst session");
        }
    }
    sampling.store(false, Ordering::Release);
    sampler.await.expect("sampler");
    let peak = peak.load(Ordering::Acquire);
    assert!(
        peak >= start + BURST_MIN_GROWTH_KIB,
        "the burst raised RSS only from {start} to {peak} kB"
    );

    let deadline = tokio::time::Instant::now() + SETTLE_GUARD;
    let mut samples = Vec::new();
    loop {
        let now = rss_kib(pid);
        samples.push(now);
        if now <= start + NEAR_START_KIB {
            eprintln!("RSS {start} kB at the start, {peak} kB at the peak, then {samples:?} kB");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "RSS stayed high after every session ended: {start} kB at the start, {peak} kB \
             at the peak, then {samples:?} kB (one sample a second)"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

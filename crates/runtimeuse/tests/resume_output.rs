//! 200 MB of command output through the Rust client with `resume(true)` and a cutting
//! proxy, with the runtime's replay buffer at 4 MiB: the output arrives byte-exact (each
//! block once, in order) across cuts at chosen and random points; while the session is
//! detached the command is back-pressured (it stops reading its input once the buffer is
//! full) and the runtime's memory stays bounded.

mod binary;
mod common;
mod resume_support;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resume_support::{durable_runtime, read_chars, resume_client, rss_bytes, seed};
use runtimeuse_client::{Command, ExecuteCommandsOptions};
use runtimeuse_testkit::{CutPlan, CutProxy};

/// One block of the output: a numbered header line, then filler lines.
const BLOCK: usize = 1_000_000;
/// Blocks in the output: 200 MB.
const BLOCKS: usize = 200;
/// The runtime's replay buffer.
const BUFFER: u64 = 4 * 1024 * 1024;
/// Everything that may sit between the command's reads and the client's callback besides
/// the replay buffer (pipe, the runtime's outbox, socket buffers both sides of the proxy,
/// the client's inbound queue): generous; without back-pressure the gap is ~150 MB.
const IN_FLIGHT_SLACK: u64 = 64 * 1024 * 1024;
/// How much the runtime's RSS may grow over its idle size: generous too.
const RSS_GROWTH_LIMIT: u64 = 96 * 1024 * 1024;

/// Filler of one block after its header: printable lines, no JSON escapes but `\n`.
fn filler(header_len: usize) -> Vec<u8> {
    let line = b"the quick brown fox jumps over the lazy dog 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopq\n";
    let mut filler = Vec::with_capacity(BLOCK);
    while filler.len() < BLOCK - header_len {
        filler.extend_from_slice(line);
    }
    filler.truncate(BLOCK - header_len - 1);
    filler.push(b'\n');
    filler
}

fn header(block: usize) -> String {
    format!("block {block:06} of {BLOCKS:06}\n")
}

/// Block `index`, whole.
fn block(index: usize, filler: &[u8]) -> Vec<u8> {
    let mut block = header(index).into_bytes();
    block.extend_from_slice(filler);
    assert_eq!(block.len(), BLOCK);
    block
}

/// Checks streamed output against the expected blocks as it arrives, without keeping it.
struct Verifier {
    filler: Vec<u8>,
    current: Vec<u8>,
    block: usize,
    within: usize,
    total: u64,
    error: Option<String>,
}

impl Verifier {
    fn new() -> Self {
        let filler = filler(header(0).len());
        let current = block(0, &filler);
        Self {
            filler,
            current,
            block: 0,
            within: 0,
            total: 0,
            error: None,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        while !bytes.is_empty() {
            if self.block >= BLOCKS {
                self.error = Some(format!("{} bytes past the end", bytes.len()));
                return;
            }
            let take = bytes.len().min(BLOCK - self.within);
            if bytes[..take] != self.current[self.within..self.within + take] {
                self.error = Some(format!(
                    "mismatch in block {} at {} (offset {}): got {:?}",
                    self.block,
                    self.within,
                    self.total,
                    String::from_utf8_lossy(&bytes[..take.min(40)])
                ));
                return;
            }
            self.within += take;
            self.total += take as u64;
            bytes = &bytes[take..];
            if self.within == BLOCK {
                self.block += 1;
                self.within = 0;
                if self.block < BLOCKS {
                    self.current = block(self.block, &self.filler);
                }
            }
        }
    }
}

/// Writes the 200 MB input file the command `cat`s.
fn write_input(path: &std::path::Path) {
    let filler = filler(header(0).len());
    let mut file = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path).unwrap());
    for index in 0..BLOCKS {
        file.write_all(header(index).as_bytes()).unwrap();
        file.write_all(&filler).unwrap();
    }
    file.flush().unwrap();
}

/// Waits until `pid` stops reading (no progress for a second) or exits; returns its
/// last read count.
async fn wait_for_stall(pid: i32) -> Option<u64> {
    let mut last = read_chars(pid)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut still_since = tokio::time::Instant::now();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(now) = read_chars(pid) else {
            return Some(last);
        };
        if now != last {
            last = now;
            still_since = tokio::time::Instant::now();
        } else if still_since.elapsed() >= Duration::from_secs(1) {
            return Some(last);
        }
    }
    panic!("the command never stalled while detached (read {last} bytes)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_arrive_byte_exact_across_cuts_with_bounded_memory() {
    let seed = seed("200mb");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    write_input(&input);
    let pid_file = dir.path().join("pid");

    let runtime = durable_runtime(60.0, BUFFER, &["--capture-limit", "4096"]);
    let idle_rss = rss_bytes(runtime.pid()).expect("runtime RSS");
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    // Two random cuts early on, in the first connections' first 2..40 MB.
    proxy.set_plan(Some(CutPlan::random(seed, 2_000_000..=40_000_000).times(2)));

    let received = Arc::new(AtomicU64::new(0));
    let verifier = Arc::new(Mutex::new(Verifier::new()));
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    let done = Arc::new(AtomicBool::new(false));

    // RSS sampler.
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak_rss), Arc::clone(&done), runtime.pid());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                if let Some(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let client = resume_client(&proxy.ws_url());
    let options = {
        let (received, verifier) = (Arc::clone(&received), Arc::clone(&verifier));
        ExecuteCommandsOptions::new().on_command_output(move |output| {
            let (received, verifier) = (Arc::clone(&received), Arc::clone(&verifier));
            async move {
                verifier.lock().unwrap().feed(output.text.as_bytes());
                received.fetch_add(output.text.len() as u64, Ordering::SeqCst);
            }
        })
    };
    let command = format!(
        "echo $$ > {}; exec cat {}",
        pid_file.display(),
        input.display()
    );
    let call = tokio::spawn(async move {
        client
            .execute_commands(vec![Command::new(command)], options)
            .await
    });

    // Detach at 60 MB for as long as it takes the command to stall.
    let pid = common::read_pid_file(&pid_file).await;
    while received.load(Ordering::SeqCst) < 60_000_000 {
        assert!(
            !call.is_finished(),
            "the call ended early: {:?}",
            call.await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.set_refusing(true);
    proxy.cut();
    let received_at_cut = received.load(Ordering::SeqCst);
    let stalled_at = wait_for_stall(pid).await;
    let detached_rss = rss_bytes(runtime.pid()).expect("runtime RSS");
    proxy.set_refusing(false);

    // Two more cuts at chosen points.
    for at in [120_000_000, 180_000_000] {
        while received.load(Ordering::SeqCst) < at && !call.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        proxy.cut();
    }

    let result = tokio::time::timeout(Duration::from_secs(240), call)
        .await
        .expect("the call finishes")
        .unwrap()
        .unwrap_or_else(|e| panic!("seed {seed}: {e:?}"));
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();

    let verifier = verifier.lock().unwrap();
    assert_eq!(verifier.error, None, "seed {seed}");
    assert_eq!(
        verifier.total,
        (BLOCK * BLOCKS) as u64,
        "seed {seed}: every byte once"
    );
    assert_eq!(result.results.len(), 1);
    assert_eq!(result.results[0].exit_code, 0, "the command was not killed");
    let stats = proxy.stats();
    assert!(stats.cuts >= 3, "{stats:?}");
    assert!(
        result.metadata["reconnects"].as_u64() >= Some(3),
        "{:?} {stats:?}",
        result.metadata
    );

    let peak = peak_rss.load(Ordering::SeqCst);
    eprintln!(
        "200mb: received at cut {received_at_cut}, command read {stalled_at:?} when stalled; \
         RSS idle {idle_rss}, detached {detached_rss}, peak {peak}; {stats:?}"
    );
    if let Some(stalled_at) = stalled_at {
        assert!(
            stalled_at < (BLOCK * BLOCKS) as u64,
            "the command read all its input while detached: no back-pressure"
        );
        assert!(
            stalled_at.saturating_sub(received_at_cut) <= BUFFER + IN_FLIGHT_SLACK,
            "the command ran {} bytes ahead of the client while detached",
            stalled_at - received_at_cut
        );
    }
    assert!(
        peak.saturating_sub(idle_rss) <= RSS_GROWTH_LIMIT,
        "runtime RSS grew from {idle_rss} to {peak}"
    );
}

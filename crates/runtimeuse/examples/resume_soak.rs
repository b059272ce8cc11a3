//! Soak of resumable sessions (run by `scripts/resume-soak`): many durable sessions of the
//! Rust client (`resume(true)`) against the `runtimeuse` binary, each through its own
//! cutting TCP proxy that cuts it every few seconds, for a bounded time. Every request's
//! result is checked in full (streamed messages each once and in order, command output
//! byte-exact, uploads exactly once); a summary gives requests, cuts, reconnects,
//! failures and the runtime's RSS.
//!
//! `resume_soak <runtimeuse binary>`; environment: `RESUME_SOAK_SECS` (default 120),
//! `RESUME_SOAK_SESSIONS` (default 50), `RESUME_SOAK_ROUNDS` (default 1: the workload
//! repeated on the same runtime, RSS printed after each round, to tell a leak from
//! allocator retention), `RESUME_SOAK_CUT_SECS` (mean seconds between the
//! cuts of one session, default 3), `RESUME_SOAK_BUFFER` (the runtime's
//! `--resume-buffer`, default 8 MiB), `RESUME_SOAK_SEED` (cut timing and workload; default
//! from the clock, printed). Exits 1 when a request failed or its result was wrong.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use runtimeuse_client::{
    ArtifactUploadResult, Command, ExecuteCommandsOptions, QueryOptions, RuntimeUseClient, Session,
};
use runtimeuse_testkit::{BlobServer, CutProxy};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Longest one request may take before it counts as hung.
const REQUEST_GUARD: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    failures: AtomicU64,
    reconnects: AtomicU64,
    streamed_messages: AtomicU64,
    output_bytes: AtomicU64,
    uploads: AtomicU64,
}

/// A small seeded generator (SplitMix64) for cut timing and the workload mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Live processes whose parent is `pid`.
fn children(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .is_some_and(|ppid| ppid == pid.to_string())
            })
        })
        .count()
}

struct Ctx {
    counts: Counts,
    errors: Mutex<Vec<String>>,
    files: BlobServer,
    dir: std::path::PathBuf,
}

impl Ctx {
    fn fail(&self, what: String) {
        self.counts.failures.fetch_add(1, Ordering::SeqCst);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(what);
        }
    }
}

fn reconnects_of(metadata: &serde_json::Map<String, serde_json::Value>) -> u64 {
    metadata
        .get("reconnects")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// One request of a random kind on `session`, checked in full.
async fn request(ctx: &Ctx, session: &Session, worker: usize, n: u64, rng: &mut Rng) -> Result<()> {
    let options = || QueryOptions::new("You are a soak.", "echo-model").timeout(REQUEST_GUARD);
    match rng.below(4) {
        0 => {
            let count = 200 + rng.below(3000);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&seen);
            let options = options().on_assistant_message(move |m| {
                let sink = Arc::clone(&sink);
                async move { sink.lock().unwrap().push(m.text_blocks.join("|")) }
            });
            let result = session.query(format!("STREAM:{count}"), options).await?;
            if result.text() != Some(format!("streamed {count} messages").as_str()) {
                bail!("STREAM:{count} result {:?}", result.data);
            }
            let seen = seen.lock().unwrap();
            let expected = (1..=count).map(|i| format!("message {i} of {count}"));
            if seen.len() as u64 != count || !seen.iter().cloned().eq(expected) {
                bail!(
                    "STREAM:{count}: {} messages, not each once in order",
                    seen.len()
                );
            }
            ctx.counts
                .streamed_messages
                .fetch_add(count, Ordering::SeqCst);
            ctx.counts
                .reconnects
                .fetch_add(reconnects_of(&result.metadata), Ordering::SeqCst);
        }
        1 => {
            let lines = 10_000 + rng.below(200_000);
            let got = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&got);
            let options = ExecuteCommandsOptions::new().on_command_output(move |o| {
                let sink = Arc::clone(&sink);
                async move { sink.lock().unwrap().push_str(&o.text) }
            });
            let result = session
                .execute_commands(vec![Command::new(format!("seq 1 {lines}"))], options)
                .await?;
            let expected: String = (1..=lines).map(|i| format!("{i}\n")).collect();
            let got = got.lock().unwrap();
            if *got != expected {
                bail!(
                    "seq 1 {lines}: output of {} bytes differs from the {} expected",
                    got.len(),
                    expected.len()
                );
            }
            if result.results.len() != 1 || result.results[0].exit_code != 0 {
                bail!("seq 1 {lines}: {:?}", result.results);
            }
            ctx.counts
                .output_bytes
                .fetch_add(got.len() as u64, Ordering::SeqCst);
            ctx.counts
                .reconnects
                .fetch_add(reconnects_of(&result.metadata), Ordering::SeqCst);
        }
        2 => {
            let out = ctx.dir.join(format!("w{worker}"));
            let name = format!("w{worker}-{n}.txt");
            let path = out.join(&name);
            let content = format!("worker {worker} request {n}");
            let base = ctx.files.url("up");
            let asked = Arc::new(AtomicU64::new(0));
            let asked_in = Arc::clone(&asked);
            let options = options()
                .artifacts_dirs([out.display().to_string()])
                .on_artifact_upload_request(move |r| {
                    asked_in.fetch_add(1, Ordering::SeqCst);
                    let url = format!("{base}/{}", r.filename);
                    async move { ArtifactUploadResult::new(url, "text/plain") }
                });
            let result = session
                .query(format!("WRITE_FILE:{} {content}", path.display()), options)
                .await?;
            if result.text() != Some(format!("wrote {}", path.display()).as_str()) {
                bail!("WRITE_FILE result {:?}", result.data);
            }
            let uploads = ctx.files.uploads(&format!("up/{name}"));
            if asked.load(Ordering::SeqCst) != 1
                || uploads.len() != 1
                || uploads[0].body.as_deref() != Some(content.as_bytes())
            {
                bail!(
                    "WRITE_FILE {name}: {} requests, {} uploads",
                    asked.load(Ordering::SeqCst),
                    uploads.len()
                );
            }
            ctx.counts.uploads.fetch_add(1, Ordering::SeqCst);
            ctx.counts
                .reconnects
                .fetch_add(reconnects_of(&result.metadata), Ordering::SeqCst);
        }
        _ => {
            let text = format!("echo {worker}/{n} {}", rng.next());
            let result = session.query(format!("ECHO:{text}"), options()).await?;
            if result.text() != Some(text.as_str()) {
                bail!("ECHO result {:?}", result.data);
            }
            ctx.counts
                .reconnects
                .fetch_add(reconnects_of(&result.metadata), Ordering::SeqCst);
        }
    }
    Ok(())
}

/// One durable session through its own proxy until `deadline`; returns the proxy.
async fn worker(
    ctx: Arc<Ctx>,
    runtime_addr: std::net::SocketAddr,
    worker: usize,
    seed: u64,
    deadline: Instant,
    cut_secs: f64,
) -> Result<CutProxy> {
    let proxy = CutProxy::start(runtime_addr).await?;
    let client = RuntimeUseClient::builder(proxy.ws_url())
        .resume(true)
        .connect_timeout(Duration::from_secs(30))
        .build()?;
    let session = client.session().await.context("open the session")?;
    let mut rng = Rng(seed ^ (worker as u64).wrapping_mul(0x5851_f42d_4c95_7f2d));
    let cutter = {
        let proxy = proxy.clone();
        let mut rng = Rng(rng.next());
        tokio::spawn(async move {
            loop {
                let wait = cut_secs * (0.5 + (rng.below(1000) as f64) / 1000.0);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                proxy.cut();
            }
        })
    };
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        ctx.counts.requests.fetch_add(1, Ordering::SeqCst);
        match tokio::time::timeout(REQUEST_GUARD, request(&ctx, &session, worker, n, &mut rng))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ctx.fail(format!("worker {worker} request {n}: {e:#}")),
            Err(_) => ctx.fail(format!("worker {worker} request {n}: hung")),
        }
    }
    cutter.abort();
    if let Err(e) = tokio::time::timeout(REQUEST_GUARD, session.close())
        .await
        .unwrap_or_else(|_| {
            Err(runtimeuse_client::Error::ConnectionClosed {
                reason: "close hung".into(),
            })
        })
    {
        ctx.fail(format!("worker {worker} close: {e}"));
    }
    Ok(proxy)
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = std::env::args()
        .nth(1)
        .context("usage: resume_soak <runtimeuse binary>")?;
    let secs: u64 = env_or("RESUME_SOAK_SECS", 120);
    let sessions: usize = env_or("RESUME_SOAK_SESSIONS", 50);
    let rounds: usize = env_or("RESUME_SOAK_ROUNDS", 1);
    let cut_secs: f64 = env_or("RESUME_SOAK_CUT_SECS", 3.0);
    let buffer: u64 = env_or("RESUME_SOAK_BUFFER", 8 * 1024 * 1024);
    let seed: u64 = env_or(
        "RESUME_SOAK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    println!(
        "resume soak: {rounds} round(s) of {sessions} durable sessions for {secs} s, a cut every ~{cut_secs} s each, \
         --resume-buffer {buffer}, RESUME_SOAK_SEED={seed}"
    );

    let mut child = tokio::process::Command::new(&binary)
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .args(["--kill-grace", "0.5", "--resume-grace", "60"])
        .args(["--resume-buffer", &buffer.to_string()])
        .args(["--max-sessions", &(sessions * 2 + 16).to_string()])
        .env_remove("RUNTIMEUSE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {binary}"))?;
    let pid = child.id().context("runtime pid")?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = lines.next_line().await?.context("no start-up line")?;
    let url = first
        .strip_prefix("runtimeuse listening on ")
        .with_context(|| format!("unexpected start-up line {first:?}"))?
        .to_owned();
    let addr: std::net::SocketAddr = url.trim_start_matches("ws://").parse()?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let dir = tempfile::tempdir()?;
    let ctx = Arc::new(Ctx {
        counts: Counts::default(),
        errors: Mutex::new(Vec::new()),
        files: BlobServer::start().await,
        dir: dir.path().to_owned(),
    });
    let rss_start = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let started = Instant::now();
    let (mut cuts, mut connections, mut refused) = (0, 0, 0);
    for round in 0..rounds {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let workers: Vec<_> = (0..sessions)
            .map(|w| {
                // Distinct per round: file names and generator streams.
                let id = round * sessions + w;
                tokio::spawn(worker(Arc::clone(&ctx), addr, id, seed, deadline, cut_secs))
            })
            .collect();
        for (w, handle) in workers.into_iter().enumerate() {
            match handle.await {
                Ok(Ok(proxy)) => {
                    let stats = proxy.stats();
                    cuts += stats.cuts;
                    connections += stats.connections;
                    refused += stats.refused;
                }
                Ok(Err(e)) => ctx.fail(format!("round {round} worker {w}: {e:#}")),
                Err(e) => ctx.fail(format!("round {round} worker {w} panicked: {e}")),
            }
        }
        // Let the runtime finish ending the sessions (trees killed, uploads drained).
        tokio::time::sleep(Duration::from_secs(3)).await;
        if rounds > 1 {
            println!(
                "round {}: runtime RSS {} KiB, {} requests so far",
                round + 1,
                rss_kib(pid),
                ctx.counts.requests.load(Ordering::SeqCst)
            );
        }
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let rss_end = rss_kib(pid);
    let leftover_children = children(pid);
    // Every session ended: none left in the runtime.
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/health"))
        .await?
        .json()
        .await?;
    let sessions_left = health["sessions"].as_u64().unwrap_or(u64::MAX);
    let _ = child.start_kill();

    let c = &ctx.counts;
    let failures = c.failures.load(Ordering::SeqCst);
    println!("elapsed            {:.1} s", elapsed.as_secs_f64());
    println!("requests           {}", c.requests.load(Ordering::SeqCst));
    println!("failures           {failures}");
    println!("cuts               {cuts}");
    println!(
        "connections        {connections} ({} beyond the first of each session)",
        connections.saturating_sub(sessions as u64)
    );
    println!("reconnects (calls) {}", c.reconnects.load(Ordering::SeqCst));
    println!("refused by proxy   {refused}");
    println!(
        "streamed messages  {}",
        c.streamed_messages.load(Ordering::SeqCst)
    );
    println!(
        "output bytes       {}",
        c.output_bytes.load(Ordering::SeqCst)
    );
    println!("uploads            {}", c.uploads.load(Ordering::SeqCst));
    println!(
        "runtime RSS        start {} KiB, peak {} KiB, end {} KiB",
        rss_start,
        peak.load(Ordering::SeqCst),
        rss_end
    );
    println!("children left      {leftover_children}");
    println!("sessions left      {sessions_left}");
    for error in ctx.errors.lock().unwrap().iter() {
        println!("  error: {error}");
    }
    if failures > 0 || leftover_children > 0 || sessions_left > 0 {
        println!("RESULT: FAIL");
        std::process::exit(1);
    }
    println!("RESULT: OK");
    Ok(())
}

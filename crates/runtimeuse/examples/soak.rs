//! Soak of the `runtimeuse` binary (run by `scripts/soak`): hundreds of concurrent
//! loopback connections send thousands of mixed requests for a bounded time — echo,
//! streaming, commands, cancels, abrupt disconnects mid-command, slow readers,
//! end_session — then checks that the runtime leaked nothing: no process started by a
//! command still alive, file descriptors and threads back at their start, RSS near it.
//!
//! `soak <runtimeuse binary>`; environment: `SOAK_SECS` (default 120), `SOAK_CONNECTIONS`
//! (default 200), `SOAK_ROUNDS` (default 1): the workload is repeated that many times on
//! the same runtime process and RSS is reported after each round, which tells a leak
//! (grows again each round) from allocator retention (flat after the first). Exits 1
//! when a leak is found.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// Longest a single scenario may take before it counts as hung.
const SCENARIO_GUARD: Duration = Duration::from_secs(60);
/// Time given to the runtime to settle (kill trees, idle threads retire) before the end.
const SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
struct Counts {
    scenarios: AtomicU64,
    requests: AtomicU64,
    disconnects: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    fds: u64,
    threads: u64,
    rss_kib: u64,
}

fn sample(pid: u32) -> Result<Sample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Sample {
        fds,
        threads: field("Threads:"),
        rss_kib: field("VmRSS:"),
    })
}

/// Processes whose environment carries `tag` (every soak command gets it), wherever
/// they were reparented to.
fn tagged_processes(tag: &str) -> Vec<u32> {
    let needle = format!("SOAK_TAG={tag}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
        })
        .collect()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Ctx {
    url: String,
    tag: String,
    counts: Counts,
}

impl Ctx {
    fn command(&self, line: &str) -> Value {
        json!({"command": line, "env": {"SOAK_TAG": self.tag}})
    }

    fn execution(&self, lines: &[&str]) -> String {
        let commands: Vec<Value> = lines.iter().map(|l| self.command(l)).collect();
        json!({"message_type": "command_execution_message", "commands": commands}).to_string()
    }
}

fn invocation(prompt: &str) -> String {
    json!({
        "message_type": "invocation_message",
        "system_prompt": "soak", "user_prompt": prompt, "model": "echo",
        "secrets_to_redact": ["soak-secret"],
    })
    .to_string()
}

/// Reads until a terminal message; returns its type. `pace` slows the reader down.
async fn terminal(ws: &mut Socket, pace: Option<Duration>) -> Result<String> {
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame? else {
            continue;
        };
        let value: Value = serde_json::from_str(&text)?;
        let kind = value["message_type"].as_str().unwrap_or("").to_owned();
        if text.contains("soak-secret") {
            bail!("secret not redacted in {kind}");
        }
        match kind.as_str() {
            "result_message" | "command_execution_result_message" | "error_message" => {
                return Ok(kind);
            }
            _ => {}
        }
        if let Some(pace) = pace {
            tokio::time::sleep(pace).await;
        }
    }
    bail!("connection closed before a terminal message")
}

async fn expect(ws: &mut Socket, want: &str, pace: Option<Duration>) -> Result<()> {
    let got = terminal(ws, pace).await?;
    if got != want {
        bail!("expected {want}, got {got}");
    }
    Ok(())
}

/// One connection's life: a few requests of one scenario kind, then its ending.
async fn scenario(ctx: &Ctx, kind: u64) -> Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&ctx.url).await?;
    let requests = &ctx.counts.requests;
    match kind % 6 {
        0 => {
            for prompt in ["ECHO:hi", "STREAM:20", r#"STRUCTURED:{"n":1}"#, "ERROR:x"] {
                ws.send(Message::text(invocation(prompt))).await?;
                let want = if prompt.starts_with("ERROR") {
                    "error_message"
                } else {
                    "result_message"
                };
                expect(&mut ws, want, None).await?;
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        1 => {
            let exec = ctx.execution(&["echo out", "echo err >&2", "exit 3"]);
            for _ in 0..3 {
                ws.send(Message::text(exec.clone())).await?;
                expect(&mut ws, "command_execution_result_message", None).await?;
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        2 => {
            // Cancel a command tree mid-run.
            ws.send(Message::text(ctx.execution(&["sleep 30 & sleep 30"])))
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            ws.send(Message::text(
                json!({"message_type": "cancel_message"}).to_string(),
            ))
            .await?;
            expect(&mut ws, "error_message", None).await?;
            requests.fetch_add(1, Ordering::Relaxed);
        }
        3 => {
            // Abrupt disconnect mid-request: TCP gone, no close frame.
            ws.send(Message::text(ctx.execution(&["sleep 30 & sleep 30"])))
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(ws);
            ctx.counts.disconnects.fetch_add(1, Ordering::Relaxed);
            requests.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        4 => {
            // A slow reader of 2 MB of output.
            let big = "head -c 2000000 /dev/zero | tr '\\0' a";
            ws.send(Message::text(ctx.execution(&[big]))).await?;
            expect(
                &mut ws,
                "command_execution_result_message",
                Some(Duration::from_millis(2)),
            )
            .await?;
            requests.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            // Cancel an agent, then a second request on the same connection.
            ws.send(Message::text(invocation("SLOW:60000"))).await?;
            ws.send(Message::text(
                json!({"message_type": "cancel_message"}).to_string(),
            ))
            .await?;
            expect(&mut ws, "error_message", None).await?;
            ws.send(Message::text(invocation("ECHO:again"))).await?;
            expect(&mut ws, "result_message", None).await?;
            requests.fetch_add(2, Ordering::Relaxed);
        }
    }
    if kind.is_multiple_of(2) {
        ws.send(Message::text(
            json!({"message_type": "end_session_message"}).to_string(),
        ))
        .await?;
        while let Some(frame) = ws.next().await {
            if let Message::Text(text) = frame?
                && text.contains("end_session_confirm_message")
            {
                return Ok(());
            }
        }
        bail!("no end_session_confirm_message");
    }
    // Otherwise leave with a close frame.
    ws.close(None).await?;
    Ok(())
}

async fn worker(
    ctx: Arc<Ctx>,
    id: u64,
    until: Instant,
    errors: Arc<tokio::sync::Mutex<BTreeMap<String, u64>>>,
) {
    let mut n = id;
    while Instant::now() < until {
        let outcome = tokio::time::timeout(SCENARIO_GUARD, scenario(&ctx, n)).await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("scenario hung".to_owned()),
        };
        if let Some(error) = error {
            ctx.counts.failures.fetch_add(1, Ordering::Relaxed);
            *errors.lock().await.entry(error).or_default() += 1;
        }
        ctx.counts.scenarios.fetch_add(1, Ordering::Relaxed);
        n += 7;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = std::env::args()
        .nth(1)
        .context("usage: soak <runtimeuse binary>")?;
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let connections: u64 = std::env::var("SOAK_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let tag = format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );

    let mut child = tokio::process::Command::new(&binary)
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .args(["--artifact-grace", "0", "--kill-grace", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let pid = child.id().context("runtime pid")?;
    let stdout = child.stdout.take().context("runtime stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let addr = line
        .trim()
        .rsplit("ws://")
        .next()
        .context("no listening address")?
        .to_owned();
    let ctx = Arc::new(Ctx {
        url: format!("ws://{addr}/"),
        tag: tag.clone(),
        counts: Counts::default(),
    });

    // Warm up once so lazily created pools count in the baseline.
    scenario(&ctx, 1).await.context("warm-up scenario")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = sample(pid)?;
    println!(
        "soak: {connections} connections for {secs} s against {binary} (pid {pid})\nstart: fds {} threads {} rss {} KiB",
        start.fds, start.threads, start.rss_kib
    );

    let rounds: u64 = std::env::var("SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let began = Instant::now();
    let errors = Arc::new(tokio::sync::Mutex::new(BTreeMap::new()));
    let mut peak = start;
    let mut end = start;
    for round in 1..=rounds {
        let until = Instant::now() + Duration::from_secs(secs);
        let workers: Vec<_> = (0..connections)
            .map(|id| tokio::spawn(worker(ctx.clone(), id, until, errors.clone())))
            .collect();
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Ok(now) = sample(pid) {
                peak.fds = peak.fds.max(now.fds);
                peak.threads = peak.threads.max(now.threads);
                peak.rss_kib = peak.rss_kib.max(now.rss_kib);
            }
        }
        for w in workers {
            let _ = w.await;
        }
        tokio::time::sleep(SETTLE).await;
        end = sample(pid)?;
        println!(
            "round {round}/{rounds}: fds {} threads {} rss {} KiB",
            end.fds, end.threads, end.rss_kib
        );
    }
    let elapsed = began.elapsed().as_secs_f64();
    let leaked = tagged_processes(&tag);

    let c = &ctx.counts;
    let scenarios = c.scenarios.load(Ordering::Relaxed);
    let requests = c.requests.load(Ordering::Relaxed);
    println!(
        "ran: {scenarios} connections, {requests} requests ({:.0}/s), {} abrupt disconnects, {} failures, in {elapsed:.0} s",
        requests as f64 / elapsed,
        c.disconnects.load(Ordering::Relaxed),
        c.failures.load(Ordering::Relaxed),
    );
    println!(
        "peak:  fds {} threads {} rss {} KiB",
        peak.fds, peak.threads, peak.rss_kib
    );
    println!(
        "end:   fds {} threads {} rss {} KiB (rss {:.2}x start), command processes alive {}",
        end.fds,
        end.threads,
        end.rss_kib,
        end.rss_kib as f64 / start.rss_kib.max(1) as f64,
        leaked.len()
    );
    for (error, n) in errors.lock().await.iter() {
        println!("failure x{n}: {error}");
    }

    let mut problems = Vec::new();
    if !leaked.is_empty() {
        problems.push(format!("command processes left alive: {leaked:?}"));
    }
    if end.fds > start.fds + 4 {
        problems.push(format!("fds {} -> {}", start.fds, end.fds));
    }
    if end.threads > start.threads + 4 {
        problems.push(format!("threads {} -> {}", start.threads, end.threads));
    }
    if end.rss_kib > (start.rss_kib * 3).max(start.rss_kib + 64 * 1024) {
        problems.push(format!("rss {} KiB -> {} KiB", start.rss_kib, end.rss_kib));
    }
    if c.failures.load(Ordering::Relaxed) > 0 {
        problems.push("some scenarios failed (listed above)".to_owned());
    }
    let _ = child.kill().await;
    if problems.is_empty() {
        println!("soak: OK");
        Ok(())
    } else {
        bail!("soak found problems: {}", problems.join("; "))
    }
}

//! Soak of the `runtimeuse` binary (run by `scripts/soak`): hundreds of concurrent
//! loopback connections send thousands of mixed requests for a bounded time — echo,
//! streaming, commands, cancels, abrupt disconnects mid-command, slow readers,
//! end_session — then checks that the runtime leaked nothing: no process started by a
//! command still alive, file descriptors and threads back at their start, RSS near it.
//!
//! `soak <runtimeuse binary>`; environment:
//! - `SOAK_SECS` (default 40): length of one round;
//! - `SOAK_CONNECTIONS` (default 200): connections open at once;
//! - `SOAK_ROUNDS` (default 3): rounds on the same runtime process; RSS is taken after
//!   each, and must be back within [`NEAR_START_KIB`] of the start and not grow from
//!   round to round;
//! - `SOAK_MALLOC` (default `glibc`): the allocator settings to soak, one runtime process
//!   each: `glibc` (its defaults) and `tuned` (`MALLOC_ARENA_MAX=2`,
//!   `MALLOC_TRIM_THRESHOLD_=131072`);
//! - `SOAK_CONNECT_AT_ONCE` (default 32): most WebSocket handshakes in flight at once;
//! - `SOAK_MAX_SESSIONS` (default 4 x `SOAK_CONNECTIONS`): the runtime's `--max-sessions`.
//!   A session outlives its client while its request is stopped (process trees killed,
//!   within `--kill-grace`), so with the default cap of 256 the runtime refused a few
//!   reconnects (1013, or a broken pipe when the client was already sending) at 200
//!   connections. The peak of `runtimeuse_sessions_open` (from `/metrics`) is reported.
//!
//! The runtime gives the memory that ended sessions freed back to the OS a second after
//! sessions stop ending (runtimeuse-server's `memory` module); RSS is taken once
//! descriptors and threads have settled, at least [`SETTLE_MIN`] after the round.
//! Exits 1 when a leak or a failed scenario is found.

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
/// Longest the runtime is given to settle after a round (kill trees, idle blocking threads
/// retire after tokio's 10 s keep-alive).
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// Shortest settle after a round.
const SETTLE_MIN: Duration = Duration::from_secs(3);
/// Descriptors or threads above the start that still count as "back at the start".
const SLACK: u64 = 4;
/// RSS above the start that still counts as "back near the start" after a round: what
/// lives as long as the process (grown maps, the allocator's bookkeeping, pages that
/// still hold a live object among freed ones).
const NEAR_START_KIB: u64 = 16 * 1024;
/// The runtime's log filter: info, plus the accept loop's debug lines (evictions, HTTP
/// deadlines), which the report counts.
const RUNTIME_LOG: &str = "info,runtimeuse_server::listener=debug";

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
    /// Bounds the WebSocket handshakes in flight (see `SOAK_CONNECT_AT_ONCE`).
    connecting: tokio::sync::Semaphore,
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
        let text = match frame? {
            Message::Text(text) => text,
            Message::Close(Some(close)) => {
                bail!(
                    "closed by the runtime: {} {:?}",
                    close.code,
                    close.reason.as_str()
                )
            }
            _ => continue,
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

/// What each scenario kind does (`kind % 6`), for the failure report.
const KINDS: [&str; 6] = [
    "echo",
    "commands",
    "cancel command",
    "abrupt disconnect",
    "slow reader",
    "cancel agent",
];

/// Connects, at most `SOAK_CONNECT_AT_ONCE` handshakes at a time.
async fn connect(ctx: &Ctx) -> Result<Socket> {
    let _turn = ctx.connecting.acquire().await?;
    let (ws, _) = tokio_tungstenite::connect_async(&ctx.url).await?;
    Ok(ws)
}

/// One connection's life: a few requests of one scenario kind, then its ending. Errors
/// name the phase: `connect`, the scenario kind, or its ending.
async fn scenario(ctx: &Ctx, kind: u64) -> Result<()> {
    let mut ws = connect(ctx).await.context("connect")?;
    let name = KINDS[(kind % 6) as usize];
    requests(ctx, kind, &mut ws).await.context(name)?;
    if kind % 6 == 3 {
        return Ok(());
    }
    ending(kind, ws).await.context("ending")
}

/// The requests of one scenario kind on `ws`.
async fn requests(ctx: &Ctx, kind: u64, ws: &mut Socket) -> Result<()> {
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
                expect(ws, want, None).await?;
                requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        1 => {
            let exec = ctx.execution(&["echo out", "echo err >&2", "exit 3"]);
            for _ in 0..3 {
                ws.send(Message::text(exec.clone())).await?;
                expect(ws, "command_execution_result_message", None).await?;
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
            expect(ws, "error_message", None).await?;
            requests.fetch_add(1, Ordering::Relaxed);
        }
        3 => {
            // Abrupt disconnect mid-request: TCP gone, no close frame.
            ws.send(Message::text(ctx.execution(&["sleep 30 & sleep 30"])))
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Dropped by the caller, without a close frame.
            ctx.counts.disconnects.fetch_add(1, Ordering::Relaxed);
            requests.fetch_add(1, Ordering::Relaxed);
        }
        4 => {
            // A slow reader of 2 MB of output.
            let big = "head -c 2000000 /dev/zero | tr '\\0' a";
            ws.send(Message::text(ctx.execution(&[big]))).await?;
            expect(
                ws,
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
            expect(ws, "error_message", None).await?;
            ws.send(Message::text(invocation("ECHO:again"))).await?;
            expect(ws, "result_message", None).await?;
            requests.fetch_add(2, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Ends the connection: end_session and its confirm for even kinds, else a close frame.
async fn ending(kind: u64, mut ws: Socket) -> Result<()> {
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

/// Settings of one runtime process.
struct Variant {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const VARIANTS: [Variant; 2] = [
    Variant {
        name: "glibc",
        env: &[],
    },
    Variant {
        name: "tuned",
        env: &[
            ("MALLOC_ARENA_MAX", "2"),
            ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ],
    },
];

/// Glibc's malloc variables, removed from the runtime's environment unless a variant sets
/// them, so that `glibc` means the defaults.
const MALLOC_VARS: [&str; 5] = [
    "MALLOC_ARENA_MAX",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
];

/// The soak's settings, from the environment.
struct Settings {
    binary: String,
    secs: u64,
    connections: u64,
    rounds: u64,
    connect_at_once: usize,
    max_sessions: u64,
    variants: Vec<&'static Variant>,
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Result<Self> {
        let binary = std::env::args()
            .nth(1)
            .context("usage: soak <runtimeuse binary>")?;
        let wanted = std::env::var("SOAK_MALLOC").unwrap_or_else(|_| "glibc".to_owned());
        let variants = wanted
            .split(',')
            .map(|name| {
                VARIANTS
                    .iter()
                    .find(|v| v.name == name.trim())
                    .with_context(|| format!("SOAK_MALLOC: unknown setting {name:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let connections = env_number("SOAK_CONNECTIONS", 200);
        Ok(Self {
            binary,
            secs: env_number("SOAK_SECS", 40),
            connections,
            max_sessions: env_number("SOAK_MAX_SESSIONS", connections * 4).max(1),
            rounds: env_number("SOAK_ROUNDS", 3).max(1),
            connect_at_once: env_number("SOAK_CONNECT_AT_ONCE", 32).max(1),
            variants,
        })
    }
}

/// Lines of the runtime's log that say it closed or refused a connection itself.
const RUNTIME_CLOSES: [(&str, &str); 4] = [
    (
        "closed the oldest unfinished connection",
        "evicted in the HTTP phase",
    ),
    ("did not finish its request in time", "HTTP-phase deadline"),
    ("refused a session", "refused (session cap)"),
    ("treating it as gone", "dropped as a dead client"),
];

/// Counts the runtime's own closes in its log.
fn runtime_closes(log: &std::path::Path) -> Vec<(&'static str, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    RUNTIME_CLOSES
        .iter()
        .map(|(needle, what)| (*what, text.lines().filter(|l| l.contains(needle)).count()))
        .collect()
}

/// Waits (between [`SETTLE_MIN`] and [`SETTLE_MAX`]) until descriptors and threads are
/// back within [`SLACK`] of `start`; returns the last sample.
async fn settle(pid: u32, start: Sample) -> Result<Sample> {
    let began = Instant::now();
    tokio::time::sleep(SETTLE_MIN).await;
    loop {
        let now = sample(pid)?;
        let settled = now.fds <= start.fds + SLACK && now.threads <= start.threads + SLACK;
        if settled || began.elapsed() >= SETTLE_MAX {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `runtimeuse_sessions_open` from the runtime's `/metrics` (no token is set).
async fn sessions_open(addr: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix("runtimeuse_sessions_open "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// Samples [`sessions_open`] every 200 ms until `until`; returns the peak.
async fn peak_sessions(addr: String, until: Instant) -> u64 {
    let mut peak = 0;
    while Instant::now() < until {
        if let Some(open) = sessions_open(&addr).await {
            peak = peak.max(open);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peak
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Soaks one runtime process; returns the problems found.
async fn soak(settings: &Settings, variant: &Variant) -> Result<Vec<String>> {
    let tag = format!(
        "{}-{}-{}",
        std::process::id(),
        variant.name,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let log = std::env::temp_dir().join(format!("runtimeuse-soak-{tag}.log"));
    let mut command = tokio::process::Command::new(&settings.binary);
    command
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .args(["--artifact-grace", "0", "--kill-grace", "1"])
        .args(["--max-sessions", &settings.max_sessions.to_string()])
        .env("RUST_LOG", RUNTIME_LOG)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).context("runtime log file")?)
        .kill_on_drop(true);
    for var in MALLOC_VARS {
        command.env_remove(var);
    }
    command.envs(variant.env.iter().copied());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", settings.binary))?;
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
        connecting: tokio::sync::Semaphore::new(settings.connect_at_once),
    });

    // Warm up once so lazily created pools count in the baseline.
    scenario(&ctx, 1).await.context("warm-up scenario")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = sample(pid)?;
    let env: Vec<String> = variant
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "\n[{}] {} connections ({} handshakes at once, --max-sessions {}), {} x {} s against {} (pid {pid}{})",
        variant.name,
        settings.connections,
        settings.connect_at_once,
        settings.max_sessions,
        settings.rounds,
        settings.secs,
        settings.binary,
        if env.is_empty() {
            String::new()
        } else {
            format!(", {}", env.join(" "))
        },
    );
    println!(
        "start:     fds {} threads {} rss {:.1} MiB",
        start.fds,
        start.threads,
        mib(start.rss_kib)
    );

    let began = Instant::now();
    let errors = Arc::new(tokio::sync::Mutex::new(BTreeMap::new()));
    let mut peak = start;
    let mut after_rounds: Vec<Sample> = Vec::new();
    let mut peak_open = 0;
    for round in 1..=settings.rounds {
        let until = Instant::now() + Duration::from_secs(settings.secs);
        let open_sampler = tokio::spawn(peak_sessions(addr.clone(), until));
        let workers: Vec<_> = (0..settings.connections)
            .map(|id| tokio::spawn(worker(ctx.clone(), id, until, errors.clone())))
            .collect();
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Ok(now) = sample(pid) {
                peak.fds = peak.fds.max(now.fds);
                peak.threads = peak.threads.max(now.threads);
                peak.rss_kib = peak.rss_kib.max(now.rss_kib);
            }
        }
        for w in workers {
            let _ = w.await;
        }
        peak_open = peak_open.max(open_sampler.await.unwrap_or(0));
        let end = settle(pid, start).await?;
        let growth = after_rounds
            .first()
            .map(|first| {
                format!(
                    " ({:+.1} MiB since round 1)",
                    mib(end.rss_kib) - mib(first.rss_kib)
                )
            })
            .unwrap_or_default();
        println!(
            "round {round}/{}: fds {} threads {} rss {:.1} MiB{growth}",
            settings.rounds,
            end.fds,
            end.threads,
            mib(end.rss_kib)
        );
        after_rounds.push(end);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let leaked = tagged_processes(&tag);
    let end = *after_rounds.last().context("no round ran")?;
    let first = after_rounds[0];

    let c = &ctx.counts;
    let scenarios = c.scenarios.load(Ordering::Relaxed);
    let requests = c.requests.load(Ordering::Relaxed);
    let failures = c.failures.load(Ordering::Relaxed);
    println!(
        "ran:       {scenarios} connections, {requests} requests ({:.0}/s), {} abrupt disconnects, {failures} failures, in {elapsed:.0} s",
        requests as f64 / elapsed,
        c.disconnects.load(Ordering::Relaxed),
    );
    println!(
        "peak:      fds {} threads {} rss {:.1} MiB, sessions open {peak_open} (for {} connections)",
        peak.fds,
        peak.threads,
        mib(peak.rss_kib),
        settings.connections
    );
    println!(
        "end:       fds {} threads {} rss {:.1} MiB ({:.2}x start), command processes alive {}",
        end.fds,
        end.threads,
        mib(end.rss_kib),
        end.rss_kib as f64 / start.rss_kib.max(1) as f64,
        leaked.len()
    );
    let closes: Vec<String> = runtime_closes(&log)
        .into_iter()
        .map(|(what, n)| format!("{what} {n}"))
        .collect();
    println!("runtime:   {} (log {})", closes.join(", "), log.display());
    for (error, n) in errors.lock().await.iter() {
        println!("failure x{n}: {error}");
    }

    let mut problems = Vec::new();
    let name = variant.name;
    if !leaked.is_empty() {
        problems.push(format!("[{name}] command processes left alive: {leaked:?}"));
    }
    if end.fds > start.fds + SLACK {
        problems.push(format!("[{name}] fds {} -> {}", start.fds, end.fds));
    }
    if end.threads > start.threads + SLACK {
        problems.push(format!(
            "[{name}] threads {} -> {}",
            start.threads, end.threads
        ));
    }
    // Back near the start after every round: the runtime gave back what sessions freed.
    for (round, after) in after_rounds.iter().enumerate() {
        if after.rss_kib > start.rss_kib + NEAR_START_KIB {
            problems.push(format!(
                "[{name}] rss not back near the start after round {}: {:.1} MiB (start {:.1}, allowed {:.1})",
                round + 1,
                mib(after.rss_kib),
                mib(start.rss_kib),
                mib(start.rss_kib + NEAR_START_KIB)
            ));
        }
    }
    // A leak grows every round.
    let allowed = first.rss_kib + 4 * 1024 + first.rss_kib / 10;
    if settings.rounds > 1 && end.rss_kib > allowed {
        problems.push(format!(
            "[{name}] rss grew from round to round: {:.1} MiB after round 1, {:.1} MiB after round {} (allowed {:.1})",
            mib(first.rss_kib),
            mib(end.rss_kib),
            settings.rounds,
            mib(allowed)
        ));
    }
    if failures > 0 {
        problems.push(format!(
            "[{name}] {failures} scenarios failed (listed above)"
        ));
    }
    let _ = child.kill().await;
    if problems.is_empty() {
        let _ = std::fs::remove_file(&log);
    }
    Ok(problems)
}

#[tokio::main]
async fn main() -> Result<std::process::ExitCode> {
    let settings = Settings::from_env()?;
    let mut problems = Vec::new();
    for variant in &settings.variants {
        problems.extend(soak(&settings, variant).await?);
    }
    if problems.is_empty() {
        println!("\nsoak: OK");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!("\nsoak found problems: {}", problems.join("; "));
        Ok(std::process::ExitCode::FAILURE)
    }
}

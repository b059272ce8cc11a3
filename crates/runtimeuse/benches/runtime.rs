//! Benchmarks of the real `runtimeuse` release binary, each figure printed next to a
//! baseline measured in the same run on the same machine, so that the ratios hold up on a
//! busy or slow machine where absolute times do not.
//!
//! 1. Startup: spawn to the ready line, next to spawning and reaping `/bin/true`.
//! 2. Idle memory, before and after sessions, next to a `sleep` process.
//! 3. Streamed command output through the runtime to a WebSocket client, next to the same
//!    command read straight from a pipe; with and without a secret to redact.
//! 4. The runtime's peak memory while streaming N/4 and N bytes (it should not grow).
//! 5. Request round trips on one connection, next to a WebSocket echo server.
//!
//! Run with `scripts/bench` or `cargo bench -p runtimeuse --bench runtime`. Environment:
//! `BENCH_STREAM_MB` (N, default 512), `BENCH_REPS` (streaming runs per path, default 5),
//! `BENCH_SPAWNS` (default 20), `BENCH_ROUND_TRIPS` (default 200), `BENCH_RUNTIMEUSE_BIN`
//! (measure another build, e.g. an unstripped one to profile). Exits non-zero when a count
//! of streamed bytes is off or any request fails.

#[path = "runtime/client.rs"]
mod client;
#[path = "runtime/process.rs"]
mod process;
#[path = "runtime/report.rs"]
mod report;
#[path = "runtime/stream.rs"]
mod stream;

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process::Runtime;
use crate::report::{Table, median, mib, ms, quantile, ratio, section, time_ratio, us};

/// Knobs, from the environment.
struct Config {
    stream_mib: u64,
    reps: usize,
    spawns: usize,
    round_trips: usize,
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .ok()
            .with_context(|| format!("{name} must be a positive whole number, got {value:?}")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Self> {
        let config = Config {
            stream_mib: env_number("BENCH_STREAM_MB", 512)?,
            reps: env_number("BENCH_REPS", 5)?,
            spawns: env_number("BENCH_SPAWNS", 20)?,
            round_trips: env_number("BENCH_ROUND_TRIPS", 200)?,
        };
        if config.stream_mib == 0
            || config.reps == 0
            || config.spawns == 0
            || config.round_trips == 0
        {
            bail!(
                "BENCH_STREAM_MB, BENCH_REPS, BENCH_SPAWNS and BENCH_ROUND_TRIPS must be at least 1"
            );
        }
        Ok(config)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

fn run() -> Result<()> {
    let config = Config::from_env()?;
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!("runtimeuse benchmarks");
    println!("  binary: {}", process::binary());
    println!("  {cpus} CPUs, load average at start: {}", load_average());
    // The runtime reads its settings from these too; say so when one changes the figures.
    let overrides: Vec<String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("RUNTIMEUSE_") && name != "RUNTIMEUSE_TOKEN")
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !overrides.is_empty() {
        println!(
            "  runtime settings from the environment: {}",
            overrides.join(" ")
        );
    }
    // One thread for the client, so that it does not take both cores from the runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the client's async runtime")?;
    startup(config.spawns)?;
    rt.block_on(memory())?;
    stream::run(&rt, config.stream_mib, config.reps)?;
    rt.block_on(latency(config.round_trips))?;
    println!("\n  load average at end: {}", load_average());
    Ok(())
}

/// Section 1: spawn to ready line, interleaved with `/bin/true` so load hits both alike.
fn startup(spawns: usize) -> Result<()> {
    let (mut ready, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..spawns {
        floor.push(process::spawn_true()?);
        let (runtime, took) = Runtime::start()?;
        ready.push(took);
        runtime.stop()?;
    }
    section(&format!("1. Startup to listening ({spawns} spawns each)"));
    let mut table = Table::new(&["", "median", "p90", "min"]);
    for (name, times) in [
        ("runtimeuse: spawn to ready line", &ready),
        ("/bin/true: spawn to exit", &floor),
    ] {
        table.row(vec![
            name.to_owned(),
            ms(median(times)),
            ms(quantile(times, 0.9)),
            ms(quantile(times, 0.0)),
        ]);
    }
    table.row(vec![
        "ratio".to_owned(),
        time_ratio(median(&ready), median(&floor)),
        time_ratio(quantile(&ready, 0.9), quantile(&floor, 0.9)),
        time_ratio(quantile(&ready, 0.0), quantile(&floor, 0.0)),
    ]);
    table.print();
    Ok(())
}

/// One short session: a command and an invocation, then `end_session_message`.
async fn one_session(runtime: &Runtime) -> Result<()> {
    let mut ws = client::connect(runtime.url()).await?;
    client::round_trips(
        &mut ws,
        &client::command_execution("echo hi", &[]),
        1,
        expect_exit_0,
    )
    .await?;
    client::round_trips(&mut ws, &client::invocation("ECHO:x"), 1, expect_text_x).await?;
    client::end_session(ws).await?;
    client::wait_for_no_sessions(&runtime.health_url()).await
}

/// Section 2: resident memory at rest.
async fn memory() -> Result<()> {
    const MORE_SESSIONS: usize = 50;
    let (runtime, _) = Runtime::start()?;
    let pid = runtime.pid();
    let fresh = process::status_kib(pid, "VmRSS")?;
    one_session(&runtime).await?;
    let after_one = process::status_kib(pid, "VmRSS")?;
    for _ in 0..MORE_SESSIONS {
        one_session(&runtime).await?;
    }
    let after_more = process::status_kib(pid, "VmRSS")?;
    let peak = process::status_kib(pid, "VmHWM")?;
    runtime.stop()?;
    let sleep = process::sleep_rss_kib()?;

    section("2. Idle memory (VmRSS)");
    let mut table = Table::new(&["", "VmRSS", "vs sleep"]);
    #[allow(clippy::cast_precision_loss)]
    let vs_sleep = |kib: u64| ratio(kib as f64, sleep as f64);
    for (name, kib) in [
        ("runtime, just started".to_owned(), fresh),
        (
            "runtime, after one session came and went".to_owned(),
            after_one,
        ),
        (
            format!("runtime, after {MORE_SESSIONS} more sessions"),
            after_more,
        ),
        ("runtime, VmHWM over all of the above".to_owned(), peak),
        ("sleep 60 (a minimal process, for scale)".to_owned(), sleep),
    ] {
        table.row(vec![name, mib(kib), vs_sleep(kib)]);
    }
    table.print();
    Ok(())
}

fn expect_text_x(terminal: &Value) -> Result<()> {
    if terminal["message_type"] != "result_message" || terminal["data"]["text"] != "x" {
        bail!("ECHO:x answered {terminal}");
    }
    Ok(())
}

fn expect_exit_0(terminal: &Value) -> Result<()> {
    if terminal["message_type"] != "command_execution_result_message"
        || terminal["results"][0]["exit_code"] != 0
    {
        bail!("the command ended with {terminal}");
    }
    Ok(())
}

/// Section 5: request round trips on one connection.
async fn latency(n: usize) -> Result<()> {
    const WARM_UP: usize = 10;
    let commands = (n / 4).max(1);
    let invocation = client::invocation("ECHO:x");
    let (runtime, _) = Runtime::start()?;
    let mut ws = client::connect(runtime.url()).await?;
    client::round_trips(&mut ws, &invocation, WARM_UP, expect_text_x).await?;
    let echo_url = client::spawn_echo_server()?;
    let mut echo = client::connect(&echo_url).await?;
    client::echo_round_trips(&mut echo, &invocation, WARM_UP).await?;

    // Alternate in blocks so that background load hits both sides alike.
    let (mut agent, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..n.div_ceil(50) {
        let block = 50.min(n - agent.len());
        agent.extend(client::round_trips(&mut ws, &invocation, block, expect_text_x).await?);
        floor.extend(client::echo_round_trips(&mut echo, &invocation, block).await?);
    }
    let true_command = client::command_execution("true", &[]);
    let command = client::round_trips(&mut ws, &true_command, commands, expect_exit_0).await?;
    let mut shell = Vec::with_capacity(commands);
    for _ in 0..commands {
        shell.push(process::run_shell("true")?);
    }
    client::end_session(ws).await?;
    runtime.stop()?;

    section("5. Request round trips on one connection (send to terminal message)");
    let mut table = Table::new(&["", "n", "median", "p99", "median vs baseline"]);
    let rows = [
        (
            "invocation ECHO:x through the runtime",
            &agent[..],
            Some(&floor[..]),
        ),
        (
            "  baseline: same frame, WebSocket echo server",
            &floor[..],
            None,
        ),
        (
            "command `true` through the runtime",
            &command[..],
            Some(&shell[..]),
        ),
        (
            "  baseline: /bin/sh -c true spawned directly",
            &shell[..],
            None,
        ),
    ];
    for (name, times, baseline) in rows {
        table.row(vec![
            name.to_owned(),
            times.len().to_string(),
            us(median(times)),
            us(quantile(times, 0.99)),
            baseline.map_or_else(String::new, |b| time_ratio(median(times), median(b))),
        ]);
    }
    table.print();
    Ok(())
}

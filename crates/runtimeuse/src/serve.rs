//! `runtimeuse` (serve): builds the session settings from the flags and runs the server
//! until SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use runtimeuse_agents::{ClaudeAgent, ClaudeConfig, EchoAgent, OpenAiAgent, OpenAiConfig};
use runtimeuse_agents::{HandlerAgent, HandlerConfig, HandlerProgram};
use runtimeuse_server::agent::Agent;
use runtimeuse_server::process;
use runtimeuse_server::server::{Server, ServerConfig};
use runtimeuse_server::session::SessionConfig;
use tokio_util::sync::CancellationToken;

use crate::cli::{AgentKind, ProcessContainment, ServeArgs};

/// Longest duration any timing flag accepts (a day): beyond it a value is surely a typo.
const MAX_SECONDS: f64 = 86_400.0;

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !(0.0..=MAX_SECONDS).contains(&value) {
        bail!("--{name} must be between 0 and {MAX_SECONDS} seconds, got {value}");
    }
    Duration::try_from_secs_f64(value)
        .map_err(|e| anyhow::anyhow!("--{name}: {value} is not a duration: {e}"))
}

fn agent(args: &ServeArgs) -> anyhow::Result<Arc<dyn Agent>> {
    Ok(match args.agent {
        AgentKind::Echo => Arc::new(EchoAgent),
        AgentKind::Openai => Arc::new(OpenAiAgent::new(OpenAiConfig {
            max_turns: args.max_turns,
            ..OpenAiConfig::default()
        })),
        AgentKind::Claude => Arc::new(ClaudeAgent::new(claude_config(args)?)),
    })
}

fn claude_config(args: &ServeArgs) -> anyhow::Result<ClaudeConfig> {
    let mut config = ClaudeConfig::new(&args.claude_path);
    config.max_turns = Some(args.max_turns);
    config.idle_timeout = seconds("claude-idle-timeout", args.claude_idle_timeout)?;
    if config.idle_timeout.is_zero() {
        bail!("--claude-idle-timeout must be greater than zero");
    }
    config.stop_grace = seconds("kill-grace", args.kill_grace)?;
    Ok(config)
}

/// With `--agent claude` (and no `--handler`): checks once that the CLI runs, so that a
/// missing install stops the runtime at start-up with the install hint.
async fn check_claude(args: &ServeArgs) -> anyhow::Result<()> {
    if args.agent != AgentKind::Claude || !args.handler.is_empty() {
        return Ok(());
    }
    let version = runtimeuse_agents::claude::probe(&args.claude_path).await?;
    tracing::info!(%version, "Claude Code CLI found");
    Ok(())
}

/// The `--handler` agent, when one is given; checked here so that a missing program,
/// module or `node` stops the runtime at start-up with a clear message.
async fn handler_agent(args: &ServeArgs) -> anyhow::Result<Option<Arc<dyn Agent>>> {
    let Some((program, program_args)) = args.handler.split_first() else {
        return Ok(None);
    };
    // `--handler-arg`s (which may start with `-`) follow the arguments given with it.
    let program_args = [program_args, &args.handler_arg].concat();
    let path = std::env::var("PATH").ok();
    let resolved = HandlerProgram::resolve(program, &program_args, "node", path.as_deref())
        .await
        .context("--handler")?;
    let mut config = HandlerConfig::new(resolved);
    config.idle_timeout = seconds("handler-idle-timeout", args.handler_idle_timeout)?;
    if config.idle_timeout.is_zero() {
        bail!("--handler-idle-timeout must be greater than zero");
    }
    config.stop_grace = seconds("kill-grace", args.kill_grace)?;
    Ok(Some(Arc::new(HandlerAgent::new(config))))
}

async fn session_config(args: &ServeArgs) -> anyhow::Result<SessionConfig> {
    if args.max_turns == 0 {
        bail!("--max-turns must be at least 1");
    }
    let chosen = match handler_agent(args).await? {
        Some(handler) => handler,
        None => agent(args)?,
    };
    let mut config = SessionConfig::new(chosen);
    let heartbeat = seconds("heartbeat-interval", args.heartbeat_interval)?;
    if heartbeat.is_zero() {
        bail!("--heartbeat-interval must be greater than zero");
    }
    config.heartbeat_interval = heartbeat;
    config.commands.capture_limit = args.capture_limit;
    config.max_result_frame_bytes = args.max_result_frame_bytes;
    config.unzip_limits.max_total_bytes = args.max_unzip_bytes;
    config.unzip_limits.max_entries = args.max_unzip_entries;
    config.commands.kill_grace = seconds("kill-grace", args.kill_grace)?;
    config.artifacts.late_event_grace = seconds("artifact-grace", args.artifact_grace)?;
    config.artifacts.handshake_timeout = seconds(
        "artifact-handshake-timeout",
        args.artifact_handshake_timeout,
    )?;
    config.artifacts.upload_timeout =
        seconds("artifact-upload-timeout", args.artifact_upload_timeout)?;
    Ok(config)
}

/// Cancels `token` on the first SIGTERM or SIGINT.
fn cancel_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received; shutting down"),
        }
        token.cancel();
    });
    Ok(())
}

/// The limits of the network edge (see `runtimeuse_server::server`).
fn network_limits(config: &mut ServerConfig, args: &ServeArgs) -> anyhow::Result<()> {
    for (name, value) in [
        ("max-sessions", args.max_sessions),
        ("max-message-bytes", args.max_message_bytes),
        ("max-pending-connections", args.max_pending_connections),
        ("resume-buffer", args.resume_buffer),
    ] {
        if value == 0 {
            bail!("--{name} must be at least 1");
        }
    }
    config.max_sessions = args.max_sessions;
    config.max_message_bytes = args.max_message_bytes;
    config.max_pending_connections = args.max_pending_connections;
    config.header_read_timeout = seconds("header-read-timeout", args.header_read_timeout)?;
    if config.header_read_timeout.is_zero() {
        bail!("--header-read-timeout must be greater than zero");
    }
    config.shutdown_timeout = seconds("shutdown-timeout", args.shutdown_timeout)?;
    config.resume.grace = seconds("resume-grace", args.resume_grace)?;
    config.resume.buffer_bytes = args.resume_buffer;
    Ok(())
}

/// Serves until a signal arrives; exit code 0 after a clean shutdown.
/// `token` is the one resolved before logging started (see [`crate::token::resolve`]); it
/// is a secret like any other, redacted from what clients receive too.
pub async fn run(args: ServeArgs, token: Option<String>) -> anyhow::Result<ExitCode> {
    // Before anything is spawned (the start-up probes included): no child gets the
    // token, whatever variable of the runtime's environment holds it, and every child is
    // contained the way the flag says.
    if let Some(token) = &token {
        process::withhold_secret(token);
    }
    process::set_containment(match args.process_containment {
        ProcessContainment::Auto => process::Preference::Auto,
        ProcessContainment::Subreaper => process::Preference::Subreaper,
    });
    let mut sessions = session_config(&args).await?;
    check_claude(&args).await?;
    sessions.secrets = crate::token::redactor(token.as_deref());
    let mut config = ServerConfig::new(SocketAddr::new(args.host, args.port), sessions);
    config.token = token;
    network_limits(&mut config, &args)?;
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    // The only lines on stdout: scripts wait for them to know the port. The second is the
    // text upstream's runtime prints, which existing sandbox scripts wait for.
    // One write for both, so that a reader that stops after the first line cannot make
    // the second fail on a closed pipe.
    let ready = format!(
        "runtimeuse listening on ws://{addr}\nRuntimeUse server listening on port {}\n",
        addr.port()
    );
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(ready.as_bytes())
        .context("writing to stdout")?;
    stdout.flush().context("writing to stdout")?;
    drop(stdout);
    server.run_until(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

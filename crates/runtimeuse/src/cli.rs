//! Command-line arguments.

use std::net::IpAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// What `--version` prints after the name: the crate version and the git commit it was
/// built from (recorded by build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RUNTIMEUSE_COMMIT"),
    ")"
);

/// Run AI agents inside a sandbox and drive them over a WebSocket.
///
/// Without a subcommand, serves the runtime.
#[derive(Debug, Parser)]
#[command(name = "runtimeuse", version = VERSION, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the runtime server.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one prompt to a runtime; print assistant text and command output live, then
    /// the result (text, or structured output as JSON).
    Query(QueryArgs),
    /// Run shell commands in a runtime without the agent; print their output live and exit
    /// with the first failing command's exit code.
    Exec(ExecArgs),
}

/// Connection options shared by the client subcommands.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// WebSocket URL of the runtime, e.g. ws://127.0.0.1:8080
    pub ws_url: String,
    /// Token sent as `Authorization: Bearer`.
    #[arg(long, env = "RUNTIMEUSE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Overall time limit in seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Value to redact from everything the runtime sends back (repeatable).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Survive dropped connections: open a durable session (the runtime's resumable
    /// sessions) and reconnect after a drop, within the runtime's grace period, with
    /// nothing lost or printed twice.
    #[arg(long)]
    pub resume: bool,
}

/// `runtimeuse query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The prompt.
    pub prompt: String,
    /// Model name.
    #[arg(long, default_value = "gpt-4.1")]
    pub model: String,
    /// System prompt.
    #[arg(long = "system", default_value = "You are a helpful assistant.")]
    pub system_prompt: String,
    /// File holding a JSON schema (bare, or wrapped as {"type":"json_schema","schema":…});
    /// the result is then structured output, printed as JSON.
    #[arg(long)]
    pub schema_file: Option<std::path::PathBuf>,
}

/// `runtimeuse exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Working directory for the command (created if missing).
    #[arg(long)]
    pub cwd: Option<String>,
    /// The command, run with /bin/sh -c: one word is a shell command line as is
    /// (`-- 'make test | tee log'`); several words are one program and its arguments,
    /// each shell-quoted (`-- sh -c 'exit 3'`), as with `docker exec`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Which agent runs invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentKind {
    /// OpenAI Responses API with a shell tool and web search.
    Openai,
    /// Claude Code through the `claude` CLI.
    Claude,
    /// Deterministic agent for tests and demos (see PROTOCOL.md).
    Echo,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

/// How the process trees of commands, agents and handlers are kept killable whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProcessContainment {
    /// A cgroup v2 per tree where the runtime can create one, else the subreaper sweep.
    Auto,
    /// Always the runtime as child subreaper sweeping each tree (no cgroups).
    Subreaper,
}

/// Options of the runtime server.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Agent that runs invocations.
    #[arg(long, env = "RUNTIMEUSE_AGENT", value_enum, default_value = "openai")]
    pub agent: AgentKind,
    /// Serve invocations with this program instead of a built-in agent: started once per
    /// invocation, it speaks the JSON-lines handler protocol (docs/handler-protocol.md) on
    /// stdin/stdout. A `.js`/`.mjs`/`.cjs`/`.ts` module exporting an upstream AgentHandler
    /// runs through the built-in Node adapter (needs `node`). Its arguments follow it, up
    /// to the next option: `--handler python3 my_handler.py`; one that starts with `-`
    /// goes in `--handler-arg`.
    #[arg(long, value_name = "PROGRAM [ARGS]", num_args = 1..)]
    pub handler: Vec<String>,
    /// One more argument for the `--handler` program, after those given with it; it may
    /// start with `-`: `--handler python3 --handler-arg -u --handler-arg my_handler.py`.
    /// Repeatable, in order.
    #[arg(
        long,
        value_name = "ARG",
        requires = "handler",
        allow_hyphen_values = true
    )]
    pub handler_arg: Vec<String>,
    /// Seconds a handler may go without printing a protocol line (while none of its
    /// commands runs) before it is stopped and the request fails.
    #[arg(long, env = "RUNTIMEUSE_HANDLER_IDLE_TIMEOUT", default_value_t = 600.0)]
    pub handler_idle_timeout: f64,
    /// Address to listen on.
    #[arg(long, env = "RUNTIMEUSE_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one; the chosen port is printed).
    #[arg(long, env = "RUNTIMEUSE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Require this token at the WebSocket upgrade (`Authorization: Bearer` or `?token=`)
    /// and for `/metrics`. An empty token is refused.
    #[arg(long, env = "RUNTIMEUSE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Read the token from this file (trailing newline ignored), so that it is not in the
    /// runtime's environment, where a same-user process could read it.
    #[arg(
        long,
        env = "RUNTIMEUSE_TOKEN_FILE",
        value_name = "PATH",
        conflicts_with = "token"
    )]
    pub token_file: Option<std::path::PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        env = "RUNTIMEUSE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Seconds between heartbeat messages while a request runs.
    #[arg(long, env = "RUNTIMEUSE_HEARTBEAT_INTERVAL", default_value_t = 15.0)]
    pub heartbeat_interval: f64,
    /// Bytes of stdout kept per command in command execution results.
    #[arg(long, env = "RUNTIMEUSE_CAPTURE_LIMIT", default_value_t = 10 * 1024 * 1024)]
    pub capture_limit: usize,
    /// Largest command execution result frame in bytes; captured stdout is cut to fit
    /// (clients such as Python's `websockets` refuse frames over 1 MiB).
    #[arg(
        long,
        env = "RUNTIMEUSE_MAX_RESULT_FRAME_BYTES",
        default_value_t = 1_000_000
    )]
    pub max_result_frame_bytes: usize,
    /// Most bytes a downloaded .zip may expand to (counted as written).
    #[arg(long, env = "RUNTIMEUSE_MAX_UNZIP_BYTES", default_value_t = 16 * 1024 * 1024 * 1024)]
    pub max_unzip_bytes: u64,
    /// Most entries a downloaded .zip may hold.
    #[arg(
        long,
        env = "RUNTIMEUSE_MAX_UNZIP_ENTRIES",
        default_value_t = 1_000_000
    )]
    pub max_unzip_entries: usize,
    /// Seconds to wait for late artifact file events when a session ends.
    #[arg(long, env = "RUNTIMEUSE_ARTIFACT_GRACE", default_value_t = 3.0)]
    pub artifact_grace: f64,
    /// Seconds to wait for the client to answer pending artifact upload requests at the end.
    #[arg(
        long,
        env = "RUNTIMEUSE_ARTIFACT_HANDSHAKE_TIMEOUT",
        default_value_t = 60.0
    )]
    pub artifact_handshake_timeout: f64,
    /// Seconds to wait for running artifact uploads at the end.
    #[arg(
        long,
        env = "RUNTIMEUSE_ARTIFACT_UPLOAD_TIMEOUT",
        default_value_t = 30.0
    )]
    pub artifact_upload_timeout: f64,
    /// Most model turns (tool-call rounds) per invocation of an LLM agent.
    #[arg(long, env = "RUNTIMEUSE_MAX_TURNS", default_value_t = 10)]
    pub max_turns: u32,
    /// Seconds between SIGTERM and SIGKILL when a command's process group is stopped.
    #[arg(long, env = "RUNTIMEUSE_KILL_GRACE", default_value_t = 2.0)]
    pub kill_grace: f64,
    /// How a stopped process tree is killed whole, `setsid` escapes included: `auto` puts
    /// each tree in a cgroup v2 of its own where the runtime can create one, otherwise (and
    /// with `subreaper`) the runtime is child subreaper and sweeps the tree's processes.
    #[arg(
        long,
        env = "RUNTIMEUSE_PROCESS_CONTAINMENT",
        value_enum,
        default_value = "auto"
    )]
    pub process_containment: ProcessContainment,
    /// The Claude Code CLI run by `--agent claude` (checked once at start-up).
    #[arg(long, env = "RUNTIMEUSE_CLAUDE_PATH", default_value = "claude")]
    pub claude_path: std::path::PathBuf,
    /// Seconds the Claude Code CLI may print nothing (a long tool included) before it is
    /// stopped and the request fails.
    #[arg(long, env = "RUNTIMEUSE_CLAUDE_IDLE_TIMEOUT", default_value_t = 1800.0)]
    pub claude_idle_timeout: f64,
    /// Most sessions at once; a client past it is closed with code 1013 and a reason.
    #[arg(long, env = "RUNTIMEUSE_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: usize,
    /// Largest incoming WebSocket message in bytes (fragments count together); a larger
    /// one closes the connection with code 1009.
    #[arg(long, env = "RUNTIMEUSE_MAX_MESSAGE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Seconds a connection has to send its HTTP request (and get the upgrade or answer).
    #[arg(long, env = "RUNTIMEUSE_HEADER_READ_TIMEOUT", default_value_t = 10.0)]
    pub header_read_timeout: f64,
    /// Most connections that have not finished their HTTP request; past it the oldest is
    /// closed.
    #[arg(
        long,
        env = "RUNTIMEUSE_MAX_PENDING_CONNECTIONS",
        default_value_t = 128
    )]
    pub max_pending_connections: usize,
    /// Seconds shutdown waits for sessions before cutting their connections; the runtime
    /// exits at most 2 s later (plus --artifact-upload-timeout while uploads run).
    #[arg(long, env = "RUNTIMEUSE_SHUTDOWN_TIMEOUT", default_value_t = 8.0)]
    pub shutdown_timeout: f64,
    /// Seconds a durable session (the opt-in resume extension) goes on after its
    /// connection drops; past it the session ends and its process tree is killed.
    #[arg(long, env = "RUNTIMEUSE_RESUME_GRACE", default_value_t = 120.0)]
    pub resume_grace: f64,
    /// Bytes of sent, unacknowledged frames a durable session keeps for replay; past it
    /// output waits (commands are back-pressured), nothing is dropped.
    #[arg(long, env = "RUNTIMEUSE_RESUME_BUFFER", default_value_t = 64 * 1024 * 1024)]
    pub resume_buffer: usize,
}

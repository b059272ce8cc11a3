//! Running shell commands: process groups, streamed output, captured stdout, killing trees.
//! (Stub: signatures only; implemented separately.)

use std::path::PathBuf;
use std::time::Duration;

use runtimeuse_protocol::Command;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// Default cap on captured stdout in a command result (10 MiB).
pub const DEFAULT_CAPTURE_LIMIT: usize = 10 * 1024 * 1024;

/// How commands are run.
#[derive(Debug, Clone)]
pub struct CommandOptions {
    /// Bytes of stdout (and of stderr) kept for the result; streaming always carries all.
    pub capture_limit: usize,
    /// Time between SIGTERM and SIGKILL to the process group.
    pub kill_grace: Duration,
    /// After the shell exits, how long to keep reading pipes held open by background children.
    pub drain_after_exit: Duration,
    /// Directory used when a command has no `cwd`.
    pub default_cwd: PathBuf,
    /// Kill the command after this long (reported as timed out). `None`: no limit.
    pub timeout: Option<Duration>,
}

impl Default for CommandOptions {
    fn default() -> Self {
        Self {
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            kill_grace: Duration::from_secs(2),
            drain_after_exit: Duration::from_secs(2),
            default_cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            timeout: None,
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutcome {
    /// Exit code; `128 + N` when killed by signal N.
    pub exit_code: i32,
    /// Captured stdout (lossy UTF-8), at most `capture_limit` bytes.
    pub stdout: String,
    /// Whether stdout was longer than the limit.
    pub stdout_truncated: bool,
    /// Captured stderr (lossy UTF-8), at most `capture_limit` bytes.
    pub stderr: String,
    /// Whether stderr was longer than the limit.
    pub stderr_truncated: bool,
    /// Whether the command was killed because `timeout` passed.
    pub timed_out: bool,
}

/// Why a command could not produce an outcome.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The working directory could not be created.
    #[error("could not create working directory {path}: {source}")]
    Cwd {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `/bin/sh` could not be started.
    #[error("could not start command: {0}")]
    Spawn(std::io::Error),
    /// Waiting for the process or reading its pipes failed.
    #[error("error while running command: {0}")]
    Io(std::io::Error),
    /// The request was cancelled; the process tree was killed.
    #[error("command cancelled")]
    Cancelled,
}

/// Runs `command` with `/bin/sh -c` in its own process group.
pub async fn run_command(
    command: &Command,
    options: &CommandOptions,
    outbox: &Outbox,
    cancel: &CancellationToken,
) -> Result<CommandOutcome, CommandError> {
    let _ = (command, options, outbox, cancel);
    Err(CommandError::Spawn(std::io::Error::other(
        "not implemented",
    )))
}

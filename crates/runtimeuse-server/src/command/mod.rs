//! Running shell commands: streamed output, captured stdout, killing trees.
//!
//! [`run_command`] starts `/bin/sh -c <command>` through [`crate::process`] (its own
//! process group, its tree contained by a cgroup or the subreaper sweep),
//! streams both pipes through the session's [`Outbox`] as `command_output_message`s while
//! it runs, and on cancellation or timeout kills the whole tree (grandchildren included,
//! even those that called `setsid`).

mod pump;

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::process::ExitStatus;
use std::time::Duration;

use runtimeuse_protocol::{Command, OutputStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::process::{Environment, Process, ProcessError, Spawn};

use self::pump::{PumpContext, pump};

/// Default cap on captured stdout in a command result (10 MiB).
pub const DEFAULT_CAPTURE_LIMIT: usize = 10 * 1024 * 1024;

/// Exit code reported for a command killed because its `timeout` passed, whatever the
/// signal that ended it (the convention of coreutils' `timeout`). It is fixed so that a
/// shell which traps SIGTERM and exits 0 is still reported as a failure.
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// How commands are run.
#[derive(Debug, Clone)]
pub struct CommandOptions {
    /// Bytes of stdout (and of stderr) kept for the result; streaming always carries all.
    pub capture_limit: usize,
    /// Time between SIGTERM and SIGKILL to the process group.
    pub kill_grace: Duration,
    /// After the shell exits, how long to keep reading pipes held open by background children.
    pub drain_after_exit: Duration,
    /// Directory used when a command has no `cwd`; a relative `cwd` is resolved against it.
    pub default_cwd: PathBuf,
    /// Kill the command's process group after this long; the outcome then has `timed_out`
    /// set and exit code [`TIMEOUT_EXIT_CODE`]. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Variables removed from the command's environment, whether inherited from the
    /// runtime or set by `command.env` (an agent keeps its own credentials from the
    /// commands it runs this way). Default: none.
    pub env_remove: Vec<String>,
}

impl Default for CommandOptions {
    fn default() -> Self {
        Self {
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            kill_grace: Duration::from_secs(2),
            drain_after_exit: Duration::from_secs(2),
            default_cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            timeout: None,
            env_remove: Vec::new(),
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutcome {
    /// Exit code; `128 + N` when killed by signal N; [`TIMEOUT_EXIT_CODE`] when timed out.
    pub exit_code: i32,
    /// Captured stdout (lossy UTF-8, redacted like the stream), at most `capture_limit`
    /// bytes of the redacted text.
    pub stdout: String,
    /// Whether stdout was longer than the limit.
    pub stdout_truncated: bool,
    /// Captured stderr (lossy UTF-8, redacted like the stream), at most `capture_limit`
    /// bytes of the redacted text.
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
///
/// - The working directory is `command.cwd` (relative paths against
///   `options.default_cwd`) or `options.default_cwd`, created if missing.
/// - `command.env` is merged over [`Environment::inherited`] (the runtime's environment
///   without its `RUNTIMEUSE_*` settings and withheld credentials), then the variables
///   named in `options.env_remove` are taken out; stdin is `/dev/null`.
/// - stdout and stderr are streamed while the command runs, each as UTF-8 text (invalid
///   bytes become U+FFFD) redacted with the outbox's secrets, and captured up to
///   `options.capture_limit` bytes each, cut after redaction (never in half a secret). Sending waits for room in the outbox, which slows
///   the command down through its pipes instead of buffering. A closed outbox is not an
///   error: the output is then read and dropped.
/// - After the shell exits, pipes still held open by background processes are read for at
///   most `options.drain_after_exit`; those processes are left running.
/// - When `cancel` fires, the process group gets SIGTERM, then the whole tree SIGKILL once
///   `options.kill_grace` has passed without the shell exiting, then SIGKILL again after
///   the shell is reaped so no descendant survives; the result is
///   [`CommandError::Cancelled`]. `options.timeout` kills the tree the same way but
///   returns an outcome with `timed_out` set.
/// - If the returned future is dropped before it completes, the tree is killed with SIGKILL.
///
/// # Errors
///
/// [`CommandError::Cwd`] if the working directory cannot be created,
/// [`CommandError::Spawn`] if the shell cannot be started, [`CommandError::Io`] if
/// waiting for it or reading its pipes fails, [`CommandError::Cancelled`] on cancellation.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> Result<(), runtimeuse_server::command::CommandError> {
/// use runtimeuse_protocol::Command;
/// use runtimeuse_server::command::{CommandOptions, run_command};
/// use runtimeuse_server::outbox::Outbox;
/// use tokio_util::sync::CancellationToken;
///
/// let (outbox, _frames) = Outbox::channel(64);
/// let outcome = run_command(
///     &Command::new("echo hello"),
///     &CommandOptions::default(),
///     &outbox,
///     &CancellationToken::new(),
/// )
/// .await?;
/// assert_eq!(outcome.stdout, "hello\n");
/// # Ok(())
/// # }
/// ```
pub async fn run_command(
    command: &Command,
    options: &CommandOptions,
    outbox: &Outbox,
    cancel: &CancellationToken,
) -> Result<CommandOutcome, CommandError> {
    if cancel.is_cancelled() {
        return Err(CommandError::Cancelled);
    }
    let mut child = spawn_shell(command, options).await?;
    let pid = child.id();
    let (Some(stdout), Some(stderr)) = (child.take_stdout(), child.take_stderr()) else {
        return Err(CommandError::Spawn(std::io::Error::other(
            "the shell's output pipes are missing",
        )));
    };

    let exited = CancellationToken::new();
    let context = PumpContext {
        outbox,
        command: &command.command,
        capture_limit: options.capture_limit,
        drain_after_exit: options.drain_after_exit,
        exited: &exited,
    };
    let mut pumps = pin!(async {
        tokio::join!(
            pump(stdout, OutputStream::Stdout, &context),
            pump(stderr, OutputStream::Stderr, &context),
        )
    });
    let mut pumped = None;
    let deadline = options.timeout.map(|timeout| Instant::now() + timeout);

    let end = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break End::Cancelled,
            status = child.wait() => break End::Exited(status.map_err(CommandError::Io)?),
            () = sleep_until(deadline) => break End::TimedOut,
            output = &mut pumps, if pumped.is_none() => pumped = Some(output),
        }
    };
    let (exit_code, timed_out) = match end {
        End::Exited(status) => (exit_code(status), false),
        End::Cancelled => {
            let killing = child.stop(options.kill_grace);
            let status = while_pumping(killing, &mut pumps, &mut pumped).await;
            tracing::debug!(pid, ?status, "command cancelled; process tree killed");
            return Err(CommandError::Cancelled);
        }
        End::TimedOut => {
            let killing = child.stop(options.kill_grace);
            let status = while_pumping(killing, &mut pumps, &mut pumped).await;
            tracing::debug!(pid, ?status, "command timed out; process tree killed");
            (TIMEOUT_EXIT_CODE, true)
        }
    };
    exited.cancel();

    let (stdout, stderr) = if let Some(output) = pumped {
        output
    } else {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                // Background processes still hold the pipes (or the client is slow).
                let status = child.stop(options.kill_grace).await;
                tracing::debug!(pid, ?status, "command cancelled while draining; process tree killed");
                return Err(CommandError::Cancelled);
            }
            output = &mut pumps => output,
        }
    };
    child.release();
    let stdout = stdout.map_err(CommandError::Io)?;
    let stderr = stderr.map_err(CommandError::Io)?;
    tracing::debug!(pid, exit_code, timed_out, "command finished");
    Ok(CommandOutcome {
        exit_code,
        stdout_truncated: stdout.truncated,
        stdout: stdout.into_text(),
        stderr_truncated: stderr.truncated,
        stderr: stderr.into_text(),
        timed_out,
    })
}

/// Creates the working directory and starts the shell through the process primitive
/// (its own process group and tree containment, an explicit environment).
async fn spawn_shell(command: &Command, options: &CommandOptions) -> Result<Process, CommandError> {
    let cwd = command.cwd.as_ref().map_or_else(
        || options.default_cwd.clone(),
        |cwd| options.default_cwd.join(cwd),
    );
    tokio::fs::create_dir_all(&cwd)
        .await
        .map_err(|source| CommandError::Cwd {
            path: cwd.clone(),
            source,
        })?;

    let mut env = Environment::inherited();
    if let Some(vars) = &command.env {
        env.extend(vars);
    }
    for name in &options.env_remove {
        env.remove(name);
    }
    let child = Spawn::new("/bin/sh")
        .arg("-c")
        .arg(&command.command)
        .current_dir(&cwd)
        .env(env)
        .spawn()
        .map_err(|ProcessError::Spawn { source, .. }| CommandError::Spawn(source))?;
    tracing::debug!(pid = child.id(), cwd = %cwd.display(), "command started");
    Ok(child)
}

/// How the wait for the shell ended.
enum End {
    Exited(ExitStatus),
    Cancelled,
    TimedOut,
}

/// The shell's exit code, or `128 + N` when signal N killed it.
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        // `wait` only reports exits and deaths by signal.
        .unwrap_or(-1)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Runs `task` to completion while the pumps keep reading, so that a command writing
/// while it is being killed never blocks on a full pipe.
async fn while_pumping<T, P>(
    task: T,
    pumps: &mut Pin<&mut P>,
    pumped: &mut Option<P::Output>,
) -> T::Output
where
    T: Future,
    P: Future,
{
    let mut task = pin!(task);
    loop {
        tokio::select! {
            biased;
            output = &mut task => return output,
            output = pumps.as_mut(), if pumped.is_none() => *pumped = Some(output),
        }
    }
}

//! The handler's process, started through the runtime's one process primitive
//! ([`runtimeuse_server::process`]): its own process group and tree containment, exactly
//! the invocation's environment, piped stdin/stdout, a bounded stderr tail, and the whole
//! tree killed when it is stopped or dropped.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use runtimeuse_server::process::{Environment, Process, ProcessError, Spawn, StderrTail};
use tokio::process::{ChildStdin, ChildStdout};

use super::program::HandlerProgram;

/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// A running handler.
pub(super) struct HandlerChild {
    process: Process,
    /// The handler's stdin; `None` once closed.
    pub stdin: Option<ChildStdin>,
    tail: Option<StderrTail>,
}

impl HandlerChild {
    /// Starts `program` in `cwd` with exactly `env` (the invocation's environment: the
    /// runtime's own without its `RUNTIMEUSE_*` settings and withheld credentials, with
    /// `agent_env` merged over it). Call it in the request's span: the stderr tail logs
    /// in it, so the session's secrets are redacted from those lines.
    pub fn spawn(
        program: &HandlerProgram,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> Result<Self, ProcessError> {
        let mut process = Spawn::new(&program.program)
            .args(&program.args)
            .env(env.iter().collect::<Environment>())
            .current_dir(cwd)
            .stdin_piped()
            .stderr_tail(STDERR_TAIL)
            .spawn()?;
        Ok(Self {
            stdin: process.take_stdin(),
            tail: process.stderr_tail(),
            process,
        })
    }

    /// The handler's stdout (the protocol), once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.process.take_stdout()
    }

    /// The last bytes the handler wrote to stderr so far.
    pub fn stderr_tail(&self) -> String {
        self.tail.as_ref().map(StderrTail::text).unwrap_or_default()
    }

    /// The stderr tail once stderr has closed (the handler exited), waiting at most `limit`
    /// for a process that still holds it open.
    pub async fn final_stderr_tail(&self, limit: Duration) -> String {
        match &self.tail {
            Some(tail) => tail.final_text(limit).await,
            None => String::new(),
        }
    }

    /// Waits for the handler to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.process.wait().await
    }

    /// Closes stdin and gives the handler `grace` to exit by itself (after its result or
    /// a `cancel` line), then [`Process::stop`]s its tree: SIGTERM, `grace`, SIGKILL, and
    /// whatever it left behind (background children, `setsid` escapes) is killed too.
    /// The handler's exit status, when it could be had.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        let exited = match tokio::time::timeout(grace, self.process.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        };
        let stopped = self.process.stop(grace).await.ok();
        exited.or(stopped)
    }
}

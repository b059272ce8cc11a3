//! The handler's process: started in its own process group with an explicit environment
//! and piped stdio; its stderr logged and its tail kept; stopped TERM → grace → KILL.
//!
//! Interim: this moves onto `runtimeuse_server::process` (the one spawn primitive) once
//! it lands.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::program::HandlerProgram;

/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// A running handler.
pub(super) struct HandlerChild {
    child: Child,
    pgid: Option<Pid>,
    /// The handler's stdin; `None` once closed.
    pub stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    tail: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl HandlerChild {
    /// Starts `program` in `cwd` with exactly `env`.
    pub fn spawn(
        program: &HandlerProgram,
        env: &BTreeMap<String, String>,
        cwd: &Path,
    ) -> std::io::Result<Self> {
        let mut command = tokio::process::Command::new(&program.program);
        command
            .args(&program.args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the handler's pipes are missing"));
        };
        let tail = Arc::new(Mutex::new(String::new()));
        let keep = tail.clone();
        let pid = child.id().unwrap_or_default();
        // In the request's span, so the log layer redacts the session's secrets.
        let stderr_reader = tokio::spawn(
            async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(target: "runtimeuse::handler", pid, "{line}");
                    if let Ok(mut tail) = keep.lock() {
                        tail.push_str(&line);
                        tail.push('\n');
                        if tail.len() > STDERR_TAIL {
                            let mut cut = tail.len() - STDERR_TAIL;
                            while !tail.is_char_boundary(cut) {
                                cut += 1;
                            }
                            tail.drain(..cut);
                        }
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(Self {
            child,
            pgid,
            stdin: Some(stdin),
            stdout: Some(stdout),
            tail,
            stderr_reader: Some(stderr_reader),
        })
    }

    /// The handler's stdout (the protocol), once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The last bytes the handler wrote to stderr so far.
    pub fn stderr_tail(&self) -> String {
        self.tail.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The stderr tail once stderr has closed (the handler exited), waiting at most `limit`
    /// for a process that still holds it open.
    pub async fn final_stderr_tail(&mut self, limit: Duration) -> String {
        if let Some(reader) = self.stderr_reader.as_mut()
            && tokio::time::timeout(limit, reader).await.is_ok()
        {
            self.stderr_reader = None;
        }
        self.stderr_tail()
    }

    /// Waits for the handler to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Closes stdin, waits `grace` for the handler to exit by itself, then SIGTERM to its
    /// group, `grace` again, SIGKILL. The group is SIGKILLed at the end in any case.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        let status = if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            status.ok()
        } else {
            self.signal(Signal::SIGTERM);
            if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
                status.ok()
            } else {
                self.signal(Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        self.signal(Signal::SIGKILL);
        status
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for HandlerChild {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(reader) = &self.stderr_reader {
            reader.abort();
        }
    }
}

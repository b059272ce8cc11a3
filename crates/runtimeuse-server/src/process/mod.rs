//! One way to start a process: the primitive behind commands, the `claude` CLI and
//! handler programs.
//!
//! A child started with [`Spawn`] runs in its own process group, with an explicit
//! [`Environment`] (by default the runtime's own minus its `RUNTIMEUSE_*` settings and
//! the credentials registered with [`withhold_secret`]), piped stdout, stdin piped or
//! `/dev/null`, and stderr either piped or read into a bounded [`StderrTail`]. Its whole
//! tree (every descendant, including ones that left the group with `setsid`) is killed by
//! [`Process::stop`] (stdin closed, SIGTERM, a grace period, SIGKILL) and when the
//! [`Process`] is dropped; the child is reaped either way.
//!
//! # Usage
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use runtimeuse_server::process::{Environment, Spawn};
//! use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
//!
//! let mut env = Environment::inherited();
//! env.extend([("MODEL", "some-model")]);
//! let mut process = Spawn::new("my-agent")
//!     .args(["--verbose"])
//!     .env(env)
//!     .current_dir("/tmp")
//!     .stdin_piped()
//!     .stderr_tail(8 * 1024)
//!     .spawn()?;
//! let mut stdin = process.take_stdin().expect("piped");
//! let stdout = process.take_stdout().expect("always piped");
//! stdin.write_all(b"{\"hello\":1}\n").await?;
//! drop(stdin); // closes the child's stdin
//! let mut lines = BufReader::new(stdout).lines();
//! while let Some(line) = lines.next_line().await? {
//!     println!("{line}");
//! }
//! let status = process.wait().await?;
//! if !status.success() {
//!     let tail = process.stderr_tail().map(|t| t.text()).unwrap_or_default();
//!     eprintln!("failed: {tail}");
//! }
//! // On cancel instead: process.stop(Duration::from_secs(2)).await?;
//! // Dropping `process` kills whatever is left of its tree.
//! # Ok(())
//! # }
//! ```
//!
//! # Which kill mechanism applies
//!
//! Each process tree goes into a cgroup v2 of its own when the runtime can create one
//! (a writable cgroup2 mount, the runtime's own cgroup under it): stopping the tree
//! kills the cgroup, which no descendant can leave. Otherwise the runtime makes itself a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), so orphaned descendants are re-parented to
//! it instead of init, and stopping sweeps the tree: the process group, every descendant
//! of the child, and every adopted orphan that came from it (found by the
//! [`TREE_MARKER`] variable in its environment). [`Containment`] says which one a process
//! got; [`set_containment`] forces the fallback. Without either (the kernel refused
//! both), only the process group is killed.
//!
//! Safe Rust cannot run code between `fork` and `exec`, so in cgroup mode the child is
//! started through a tiny `/bin/sh` gate that waits for one line on stdin, written once
//! the child is in its cgroup, and then `exec`s the program (same pid; a missing program
//! is still an error of [`Spawn::spawn`]). The runtime is child subreaper in both modes
//! and reaps the orphans it adopts (at once after a kill, and from a background thread);
//! children of the runtime started other than through this module may be reaped by it
//! only if they leave the runtime's session.

mod cgroup;
mod env;
mod gate;
mod procfs;
mod sweep;
mod tail;
mod tree;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

pub use self::env::{Environment, WITHHELD_PREFIX, withhold_secret, withhold_variable};
pub use self::sweep::TREE_MARKER;
pub use self::tail::StderrTail;
use self::tree::Tree;
pub use self::tree::{Containment, Preference, set_containment};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started (missing, not executable, bad working directory).
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program, as given.
        program: String,
        /// The OS error.
        source: io::Error,
    },
}

/// What a child's stderr becomes.
#[derive(Debug, Clone, Copy)]
enum StderrMode {
    Piped,
    Tail(usize),
    Null,
}

/// How to start one process (a builder; [`spawn`](Self::spawn) starts it).
#[derive(Debug, Clone)]
pub struct Spawn {
    program: OsString,
    args: Vec<OsString>,
    env: Option<Environment>,
    cwd: Option<PathBuf>,
    stdin_piped: bool,
    stderr: StderrMode,
}

impl Spawn {
    /// Runs `program` (looked up on the child's `PATH` when it has no `/`), with the
    /// inherited [`Environment`], stdin `/dev/null`, stdout piped, stderr piped.
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: None,
            cwd: None,
            stdin_piped: false,
            stderr: StderrMode::Piped,
        }
    }

    /// Adds one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    #[must_use]
    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The child's whole environment (default: [`Environment::inherited`]). In the
    /// subreaper fallback the primitive adds one variable, [`TREE_MARKER`].
    #[must_use]
    pub fn env(mut self, env: Environment) -> Self {
        self.env = Some(env);
        self
    }

    /// The child's working directory (default: the runtime's).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Gives the child a pipe as stdin ([`Process::take_stdin`]); default `/dev/null`.
    #[must_use]
    pub fn stdin_piped(mut self) -> Self {
        self.stdin_piped = true;
        self
    }

    /// Reads stderr in the background, keeping its last `limit` bytes
    /// ([`Process::stderr_tail`]) and logging each line (info, target
    /// `runtimeuse::process`), instead of handing out the pipe.
    #[must_use]
    pub fn stderr_tail(mut self, limit: usize) -> Self {
        self.stderr = StderrMode::Tail(limit);
        self
    }

    /// Sends stderr to `/dev/null`.
    #[must_use]
    pub fn stderr_null(mut self) -> Self {
        self.stderr = StderrMode::Null;
        self
    }

    /// Starts the process (call it inside a tokio runtime).
    ///
    /// # Errors
    ///
    /// [`ProcessError::Spawn`] if the program cannot be started.
    pub fn spawn(self) -> Result<Process, ProcessError> {
        let fail = |source| ProcessError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        };
        let mut env = self.env.clone().unwrap_or_else(Environment::inherited);
        let prepared = tree::prepare(&mut env);
        let mut stdin = if self.stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut command = if prepared.is_cgroup() {
            let cwd = match &self.cwd {
                Some(cwd) => cwd.clone(),
                None => std::env::current_dir().map_err(fail)?,
            };
            let program = gate::resolve(&self.program, env.get("PATH"), &cwd).map_err(fail)?;
            let (args, gated, gate) =
                gate::close(&program, &self.args, env.get("PWD").is_some()).map_err(fail)?;
            stdin = gated;
            let mut command = tokio::process::Command::new(gate::SHELL);
            command.args(args);
            (command, Some(gate))
        } else {
            let mut command = tokio::process::Command::new(&self.program);
            command.args(&self.args);
            (command, None)
        };
        let (command, gate) = &mut command;
        command
            .env_clear()
            .envs(env.iter())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(match self.stderr {
                StderrMode::Null => Stdio::null(),
                StderrMode::Piped | StderrMode::Tail(_) => Stdio::piped(),
            })
            .process_group(0)
            // The leader only, and it is then reaped in the background; the tree guard
            // takes care of the rest.
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().map_err(fail)?;
        let pid = child.id().unwrap_or_default();
        let tree = Tree::adopt(pid, prepared);
        let stdin = match gate.take() {
            // Dropping `tree` on error kills the held child.
            Some(gate) => gate.open(self.stdin_piped).map_err(fail)?,
            None => child.stdin.take(),
        };
        let stdout = child.stdout.take();
        let (stderr, tail) = match (self.stderr, child.stderr.take()) {
            (StderrMode::Tail(limit), Some(stderr)) => (
                None,
                Some(StderrTail::spawn(
                    stderr,
                    limit,
                    pid,
                    self.program.to_string_lossy().into_owned(),
                )),
            ),
            (_, stderr) => (stderr, None),
        };
        tracing::debug!(pid, program = %self.program.to_string_lossy(), containment = ?tree.containment(), "process started");
        Ok(Process {
            child,
            tree,
            stdin,
            stdout,
            stderr,
            tail,
        })
    }
}

/// A running child and its tree. Dropping it SIGKILLs the whole tree (unless
/// [`release`](Self::release)d) and the child is reaped in the background.
#[derive(Debug)]
pub struct Process {
    child: Child,
    tree: Tree,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    tail: Option<StderrTail>,
}

impl Process {
    /// The child's pid (also its process group id).
    pub fn id(&self) -> u32 {
        self.tree.pid()
    }

    /// How the tree is contained (cgroup or subreaper sweep).
    pub fn containment(&self) -> Containment {
        self.tree.containment()
    }

    /// The child's stdin, if piped and not taken yet. Dropping it closes the pipe.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The child's stdout, if not taken yet.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The child's stderr, if piped (not a tail) and not taken yet.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.stderr.take()
    }

    /// The stderr tail, when started with [`Spawn::stderr_tail`].
    pub fn stderr_tail(&self) -> Option<StderrTail> {
        self.tail.clone()
    }

    /// Waits for the child (not its descendants) to exit. Cancel-safe.
    ///
    /// # Errors
    ///
    /// The OS error if waiting fails.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The child's status if it has exited, without waiting.
    ///
    /// # Errors
    ///
    /// The OS error if checking fails.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Stops the whole tree: closes stdin, SIGTERM to the process group, SIGKILL to the
    /// tree if the child is still alive after `grace`, reaps the child, then kills what
    /// is left of the tree (descendants that ignored SIGTERM or left the group).
    /// Returns the child's status.
    ///
    /// # Errors
    ///
    /// The OS error if waiting for the child fails (the tree is killed anyway).
    pub async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.stdin = None;
        self.tree.terminate_group();
        let status = if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
            status
        } else {
            self.tree.kill_all();
            self.child.wait().await
        };
        self.tree.kill_all();
        self.tree.settle().await;
        status
    }

    /// SIGKILLs the whole tree now (the child is reaped by a later `wait` or on drop).
    pub fn kill(&mut self) {
        self.tree.kill_all();
    }

    /// Leaves the descendants alone when dropped: for a child that exited normally and
    /// started background processes on purpose.
    pub fn release(&mut self) {
        self.tree.release();
    }
}

//! The real `runtimeuse` binary on 127.0.0.1:0 with the echo agent, for the kill and
//! environment tests (which need the runtime's own process: its environment, its
//! subreaper setting).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running runtime, killed on drop so a failing test leaves nothing behind.
pub struct Runtime {
    child: Child,
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// Kept open: the runtime prints more than one line.
    _stdout: BufReader<ChildStdout>,
}

impl Runtime {
    /// Starts the runtime with `args` and these variables added to the test's environment.
    pub fn start<K, V>(args: &[&str], env: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runtimeuse"));
        command
            .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
            .args(["--kill-grace", "0.5"])
            .args(args)
            .env_remove("RUNTIMEUSE_TOKEN")
            .env_remove("RUNTIMEUSE_TOKEN_FILE")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawn runtimeuse");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the start-up line");
        let url = line
            .trim()
            .strip_prefix("runtimeuse listening on ")
            .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"))
            .to_owned();
        Self {
            child,
            url,
            _stdout: stdout,
        }
    }

    /// The runtime's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

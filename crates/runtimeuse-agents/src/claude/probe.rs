//! The start-up check: does the `claude` CLI run at all?

use std::path::{Path, PathBuf};
use std::time::Duration;

use runtimeuse_server::process::Spawn;
use tokio::io::AsyncReadExt as _;

use super::run::INSTALL_HINT;

/// How long `claude --version` may take (a cold start of a large binary on a busy box).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the CLI is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    /// It could not be started.
    #[error("Claude Code CLI {program:?} could not be started: {reason}; {INSTALL_HINT}")]
    Missing {
        /// The program tried.
        program: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// It started but `--version` failed.
    #[error("Claude Code CLI {program:?} does not run (`--version` {reason}); {INSTALL_HINT}")]
    Broken {
        /// The program tried.
        program: PathBuf,
        /// How it failed, with its stderr.
        reason: String,
    },
}

/// Runs `program --version` once and returns what it printed.
///
/// # Errors
///
/// [`ClaudeError`] when the program is missing, exits non-zero or hangs, with the
/// install hint.
pub async fn probe(program: &Path) -> Result<String, ClaudeError> {
    let broken = |reason: String| ClaudeError::Broken {
        program: program.to_owned(),
        reason,
    };
    let mut process = Spawn::new(program)
        .arg("--version")
        .stderr_tail(4 * 1024)
        .spawn()
        .map_err(|e| ClaudeError::Missing {
            program: program.to_owned(),
            reason: match e {
                runtimeuse_server::process::ProcessError::Spawn { source, .. } => {
                    source.to_string()
                }
            },
        })?;
    let mut stdout = process.take_stdout();
    let run = async {
        let mut out = String::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.take(64 * 1024).read_to_string(&mut out).await;
        }
        (process.wait().await, out)
    };
    let (status, out) = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(done) => done,
        Err(_) => {
            return Err(broken(format!(
                "did not finish in {} s",
                PROBE_TIMEOUT.as_secs()
            )));
        }
    };
    let status = status.map_err(|e| broken(e.to_string()))?;
    if !status.success() {
        let tail = match process.stderr_tail() {
            Some(tail) => tail.final_text(PROBE_TIMEOUT).await,
            None => String::new(),
        };
        return Err(broken(format!("{status}: {}", tail.trim())));
    }
    Ok(out.trim().to_owned())
}

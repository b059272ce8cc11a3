//! Signalling a command's process group: TERM, a grace period, KILL, and a drop guard.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

/// The process group a command's shell leads (`process_group(0)` makes its id the pid).
///
/// While armed, dropping it SIGKILLs the whole group, so a `run_command` future that is
/// dropped half-way (its task aborted) still leaves no process of the command behind.
#[derive(Debug)]
pub(super) struct ProcessGroup {
    pgid: Pid,
    armed: bool,
}

impl ProcessGroup {
    /// The group led by the process `pid`; `None` if the pid does not fit a `pid_t`.
    pub(super) fn led_by(pid: u32) -> Option<Self> {
        let raw = i32::try_from(pid).ok().filter(|&raw| raw > 0)?;
        Some(Self {
            pgid: Pid::from_raw(raw),
            armed: true,
        })
    }

    /// Leaves the group alone when dropped (the command ended normally; background
    /// children it started on purpose may outlive it).
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Kills the tree: SIGTERM to the group, SIGKILL to it if the shell is still alive
    /// after `grace`, reaps the shell, then SIGKILLs the group again so that grandchildren
    /// which ignored SIGTERM (or outlived the shell) die too.
    pub(super) async fn terminate(
        &self,
        child: &mut Child,
        grace: Duration,
    ) -> io::Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let status = if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            status
        } else {
            self.signal(Signal::SIGKILL);
            child.wait().await
        };
        self.signal(Signal::SIGKILL);
        status
    }

    fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            // The whole group is already gone.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(pgid = self.pgid.as_raw(), %signal, %error, "could not signal process group");
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
        }
    }
}

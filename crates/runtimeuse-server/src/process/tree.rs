//! A process tree: the child's process group plus its containment (cgroup or sweep).

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::env::Environment;

/// How a process tree is kept together so that it can be killed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// Only the process group: descendants that call `setsid` can escape.
    ProcessGroup,
}

/// What [`prepare`] decided before the spawn.
#[derive(Debug)]
pub(super) struct Prepared;

/// Decides the containment of the next child and adjusts its environment for it.
pub(super) fn prepare(_env: &mut Environment) -> Prepared {
    Prepared
}

/// The tree of one child; killed with SIGKILL when dropped unless released.
#[derive(Debug)]
pub(super) struct Tree {
    pid: u32,
    pgid: Option<Pid>,
    armed: bool,
}

impl Tree {
    /// The tree of the child `pid`, which leads its own process group.
    pub(super) fn adopt(pid: u32, _prepared: Prepared) -> Self {
        let pgid = i32::try_from(pid)
            .ok()
            .filter(|&raw| raw > 0)
            .map(Pid::from_raw);
        Self {
            pid,
            pgid,
            armed: true,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    pub(super) fn containment(&self) -> Containment {
        Containment::ProcessGroup
    }

    /// SIGTERM to the process group.
    pub(super) fn terminate_group(&self) {
        self.signal_group(Signal::SIGTERM);
    }

    /// SIGKILL to every process of the tree.
    pub(super) fn kill_all(&self) {
        self.signal_group(Signal::SIGKILL);
    }

    pub(super) fn release(&mut self) {
        self.armed = false;
    }

    fn signal_group(&self, signal: Signal) {
        let Some(pgid) = self.pgid else { return };
        match killpg(pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(error) => {
                tracing::warn!(pgid = pgid.as_raw(), %signal, %error, "could not signal process group");
            }
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if self.armed {
            self.kill_all();
        }
    }
}

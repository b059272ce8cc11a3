//! A process tree: the child's process group plus its containment (cgroup or sweep).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::env::Environment;
use super::procfs;
use super::sweep::{self, TREE_MARKER, Target};

/// How long [`Tree::settle`] waits for a killed tree to be gone before leaving the rest
/// to the reaper thread (a hang guard; SIGKILL normally takes milliseconds).
const SETTLE_FOR: Duration = Duration::from_secs(10);

/// How a process tree is kept together so that it can be killed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containment {
    /// A cgroup v2 of its own; killing the tree kills the cgroup.
    Cgroup,
    /// The runtime is child subreaper; killing the tree sweeps its process group, its
    /// descendants and the orphans it adopted from it.
    Subreaper,
    /// Only the process group (neither of the above was possible): descendants that
    /// call `setsid` and outlive their parent escape.
    ProcessGroup,
}

/// Which containment to try for new processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preference {
    /// A cgroup when one can be created, otherwise the subreaper sweep.
    #[default]
    Auto,
    /// The subreaper sweep even when cgroups work (to test or compare the fallback).
    Subreaper,
}

static PREFERENCE: AtomicU8 = AtomicU8::new(0);
/// Set once creating or joining a cgroup failed, so later trees skip straight to the sweep.
static NO_CGROUPS: AtomicBool = AtomicBool::new(false);

/// Chooses the containment of processes started from now on (process-wide).
pub fn set_containment(preference: Preference) {
    PREFERENCE.store(
        match preference {
            Preference::Auto => 0,
            Preference::Subreaper => 1,
        },
        Ordering::Relaxed,
    );
}

/// What [`prepare`] decided before the spawn.
#[derive(Debug)]
pub(super) enum Prepared {
    Cgroup(Cgroup),
    Sweep(Vec<u8>),
    Group,
}

impl Prepared {
    /// Whether the child goes into a cgroup (so must be held until it is in).
    pub(super) fn is_cgroup(&self) -> bool {
        matches!(self, Self::Cgroup(_))
    }
}

/// Decides the containment of the next child and marks its environment for it.
pub(super) fn prepare(env: &mut Environment) -> Prepared {
    if PREFERENCE.load(Ordering::Relaxed) == 0 && !NO_CGROUPS.load(Ordering::Relaxed) {
        match Cgroup::create() {
            // Subreaper as well, so that the runtime itself reaps the orphans it kills
            // rather than relying on whatever init the machine has.
            Ok(cgroup) => {
                sweep::enable_subreaper();
                return Prepared::Cgroup(cgroup);
            }
            Err(error) => no_cgroups(&error),
        }
    }
    if sweep::enable_subreaper() {
        let value = sweep::new_marker();
        let entry = format!("{TREE_MARKER}={value}").into_bytes();
        env.set(TREE_MARKER, value);
        Prepared::Sweep(entry)
    } else {
        Prepared::Group
    }
}

fn no_cgroups(error: &dyn std::fmt::Display) {
    if !NO_CGROUPS.swap(true, Ordering::Relaxed) {
        tracing::info!(%error, "no cgroup v2 for process trees; using the subreaper sweep");
    }
}

#[derive(Debug)]
enum Hold {
    Cgroup(Cgroup),
    Sweep(Target),
    Group,
}

/// The tree of one child; killed with SIGKILL when dropped unless released.
#[derive(Debug)]
pub(super) struct Tree {
    pid: u32,
    pgid: Option<Pid>,
    hold: Option<Hold>,
    armed: bool,
}

impl Tree {
    /// The tree of the child `pid`, which leads its own process group.
    pub(super) fn adopt(pid: u32, prepared: Prepared) -> Self {
        let raw = i32::try_from(pid).ok().filter(|&raw| raw > 0);
        let pgid = raw.map(Pid::from_raw);
        let leader = raw.unwrap_or(0);
        sweep::register_leader(leader);
        let hold = match prepared {
            Prepared::Cgroup(cgroup) => match join(&cgroup, leader) {
                Ok(()) => Hold::Cgroup(cgroup),
                Err(error) => {
                    no_cgroups(&error);
                    cgroup.remove();
                    if sweep::enable_subreaper() {
                        Hold::Sweep(Target {
                            leader,
                            marker: None,
                            known: Vec::new(),
                        })
                    } else {
                        Hold::Group
                    }
                }
            },
            Prepared::Sweep(marker) => Hold::Sweep(Target {
                leader,
                marker: Some(marker),
                known: Vec::new(),
            }),
            Prepared::Group => Hold::Group,
        };
        Self {
            pid,
            pgid,
            hold: Some(hold),
            armed: true,
        }
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    pub(super) fn containment(&self) -> Containment {
        match self.hold {
            Some(Hold::Cgroup(_)) => Containment::Cgroup,
            Some(Hold::Sweep(_)) => Containment::Subreaper,
            Some(Hold::Group) | None => Containment::ProcessGroup,
        }
    }

    /// SIGTERM to the process group (a polite request; the tree is killed after).
    pub(super) fn terminate_group(&self) {
        self.signal_group(Signal::SIGTERM);
    }

    /// SIGKILL to every process of the tree that can be found now.
    pub(super) fn kill_all(&mut self) {
        self.signal_group(Signal::SIGKILL);
        match &mut self.hold {
            Some(Hold::Cgroup(cgroup)) => cgroup.kill(),
            Some(Hold::Sweep(target)) => {
                target.sweep_once();
            }
            Some(Hold::Group) | None => {}
        }
    }

    /// Kills the tree until nothing of it is left (bounded; the reaper thread finishes
    /// what remains), then removes its cgroup.
    pub(super) async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + SETTLE_FOR;
        while tokio::time::Instant::now() < deadline {
            let left = match &mut self.hold {
                Some(Hold::Cgroup(cgroup)) => {
                    cgroup.kill();
                    cgroup.procs().len()
                }
                Some(Hold::Sweep(target)) => target.sweep_once(),
                Some(Hold::Group) | None => 0,
            };
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(Hold::Cgroup(cgroup)) = &self.hold
            && !cgroup.procs().is_empty()
        {
            tracing::warn!(cgroup = %cgroup.dir().display(), "processes outlived the kill of their cgroup");
        }
        sweep::reap_adopted();
    }

    /// Leaves the descendants running when dropped.
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

/// Moves the child into the cgroup, then its descendants born before the move (the
/// child may fork between `exec` and the move).
fn join(cgroup: &Cgroup, leader: i32) -> std::io::Result<()> {
    cgroup.add(leader)?;
    let processes = procfs::all();
    for pid in procfs::descendants(&processes, &[leader])
        .into_iter()
        .skip(1)
    {
        // A process that already exited cannot be moved, and need not be.
        let _ = cgroup.add(pid);
    }
    Ok(())
}

impl Drop for Tree {
    fn drop(&mut self) {
        if self.armed {
            self.kill_all();
        }
        sweep::unregister_leader(i32::try_from(self.pid).unwrap_or(0));
        match self.hold.take() {
            Some(Hold::Cgroup(cgroup)) if !cgroup.remove() => sweep::remove_later(cgroup),
            Some(Hold::Sweep(target)) if self.armed => sweep::sweep_later(target),
            _ => {}
        }
    }
}

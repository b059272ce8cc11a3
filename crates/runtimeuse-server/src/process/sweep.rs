//! The fallback when no cgroup can be made: the runtime as child subreaper, and a sweep
//! that finds every process of a tree, including orphans it adopted.
//!
//! With `PR_SET_CHILD_SUBREAPER`, a descendant whose parent dies (a double fork, a
//! `setsid … &` whose shell exits) is re-parented to the runtime instead of init, so it
//! stays findable. A sweep kills, until none is left alive: the tree's process group, the
//! child's descendants, and the runtime's adopted children that carry the tree's marker
//! in their environment (or were seen in the tree before), plus their descendants.
//! A process that both left the group and cleared its environment after being orphaned
//! is the one that can escape this mechanism (not the cgroup one).
//!
//! Adopted orphans that exit become zombies of the runtime; the janitor thread reaps
//! them (never a child the runtime started itself, whose owner reaps it).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use super::cgroup::Cgroup;
use super::procfs::{self, Stat};

/// The variable that marks a tree's processes in sweep mode (its value: the tree's id).
pub const TREE_MARKER: &str = "PROCESS_TREE_OF_RUNTIMEUSE";

/// How many past process groups and seen pids are remembered for reaping.
const MEMORY: usize = 4096;

/// How long the janitor keeps sweeping a dropped tree.
const SWEEP_FOR: Duration = Duration::from_secs(30);

/// Shared by trees and the janitor.
struct Registry {
    /// Pids of children started by [`super::Spawn`] whose owner still holds them: never
    /// reaped here.
    live_leaders: BTreeSet<i32>,
    /// Process groups of past and present trees, and pids seen in a tree: an adopted
    /// zombie among them is one of ours to reap.
    seen: VecDeque<i32>,
    /// Trees dropped while armed, swept again until empty.
    sweeps: Vec<(Target, Instant)>,
    /// Cgroups to remove once empty.
    cgroups: Vec<Cgroup>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live_leaders: BTreeSet::new(),
    seen: VecDeque::new(),
    sweeps: Vec::new(),
    cgroups: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Registry {
    fn remember(&mut self, pid: i32) {
        if !self.seen.contains(&pid) {
            if self.seen.len() >= MEMORY {
                self.seen.pop_front();
            }
            self.seen.push_back(pid);
        }
    }
}

/// Makes the runtime a child subreaper (once) and starts the janitor; `false` if the
/// kernel refused.
pub(super) fn enable_subreaper() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => {
            start_janitor();
            true
        }
        Err(error) => {
            tracing::warn!(%error, "cannot become child subreaper; setsid escapes survive kills");
            false
        }
    })
}

/// A fresh marker value for one tree.
pub(super) fn new_marker() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Records a child started by the primitive (so the janitor never reaps it).
pub(super) fn register_leader(pid: i32) {
    let mut registry = registry();
    registry.live_leaders.insert(pid);
    registry.remember(pid);
}

/// Its owner let go of the child.
pub(super) fn unregister_leader(pid: i32) {
    registry().live_leaders.remove(&pid);
}

/// Hands a dropped tree to the janitor, to sweep until nothing of it is left.
pub(super) fn sweep_later(target: Target) {
    registry().sweeps.push((target, Instant::now() + SWEEP_FOR));
    start_janitor();
}

/// Hands a cgroup to the janitor, to remove once its last process is gone.
pub(super) fn remove_later(cgroup: Cgroup) {
    registry().cgroups.push(cgroup);
    start_janitor();
}

/// What identifies one tree's processes.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The child (also the process group id).
    pub leader: i32,
    /// `MARKER=value`, as it appears in `/proc/<pid>/environ`.
    pub marker: Option<Vec<u8>>,
    /// Pids killed by earlier sweeps of this tree.
    pub known: Vec<i32>,
}

impl Target {
    /// SIGKILLs every live process of the tree; returns how many there were.
    pub(super) fn sweep_once(&mut self) -> usize {
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        let processes = procfs::all();
        let Some(own) = processes.iter().find(|p| p.pid == me).copied() else {
            return 0;
        };
        let roots: Vec<i32> = processes
            .iter()
            .filter(|p| self.is_root(p, &own))
            .map(|p| p.pid)
            .collect();
        let mut killed = 0;
        let mut registry = registry();
        for pid in procfs::descendants(&processes, &roots) {
            let Some(p) = processes.iter().find(|p| p.pid == pid) else {
                continue;
            };
            if p.zombie
                || p.pid == me
                || (registry.live_leaders.contains(&p.pid) && p.pid != self.leader)
            {
                continue;
            }
            if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed += 1;
                registry.remember(pid);
                if !self.known.contains(&pid) {
                    self.known.push(pid);
                }
            }
        }
        drop(registry);
        reap_adopted();
        killed
    }

    fn is_root(&self, p: &Stat, own: &Stat) -> bool {
        if p.pid == own.pid {
            return false;
        }
        let ours = p.ppid == own.pid;
        // The child itself, while it is still ours (a reaped pid may be reused).
        (ours && p.pid == self.leader)
            // The process group, within the runtime's session (setsid leaves both).
            || (p.pgrp == self.leader && p.session == own.session)
            // Adopted orphans from the tree.
            || (ours
                && (self.known.contains(&p.pid)
                    || self
                        .marker
                        .as_deref()
                        .is_some_and(|marker| procfs::environ_has(p.pid, marker))))
    }
}

/// Reaps the runtime's zombie children that it adopted (never one it started itself
/// and still owns, nor children of other code in the runtime's own process group).
pub(super) fn reap_adopted() {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let Some(own) = procfs::stat(me) else { return };
    let registry = registry();
    let adopted: Vec<i32> = procfs::own_children()
        .into_iter()
        .filter_map(procfs::stat)
        .filter(|p| {
            p.zombie
                && !registry.live_leaders.contains(&p.pid)
                && (p.session != own.session
                    || registry.seen.contains(&p.pgrp)
                    || registry.seen.contains(&p.pid))
        })
        .map(|p| p.pid)
        .collect();
    drop(registry);
    for pid in adopted {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// One background thread (not a task: it must outlive any tokio runtime) that finishes
/// sweeps of dropped trees, removes emptied cgroups and reaps adopted orphans.
fn start_janitor() {
    static JANITOR: OnceLock<Option<std::thread::Thread>> = OnceLock::new();
    let janitor = JANITOR.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("runtimeuse-reaper".into())
            .spawn(|| {
                loop {
                    let busy = janitor_round();
                    // Woken early (unpark) when work is handed over.
                    std::thread::park_timeout(if busy {
                        Duration::from_millis(50)
                    } else {
                        Duration::from_secs(1)
                    });
                }
            });
        match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(error) => {
                tracing::warn!(%error, "cannot start the process reaper thread");
                None
            }
        }
    });
    if let Some(thread) = janitor {
        thread.unpark();
    }
}

/// One round of the janitor; whether work is still pending.
fn janitor_round() -> bool {
    let (mut sweeps, cgroups) = {
        let mut registry = registry();
        (
            std::mem::take(&mut registry.sweeps),
            std::mem::take(&mut registry.cgroups),
        )
    };
    let now = Instant::now();
    sweeps.retain_mut(|(target, until)| target.sweep_once() > 0 && now < *until);
    let cgroups: Vec<Cgroup> = cgroups
        .into_iter()
        .filter(|cgroup| {
            if cgroup.procs().is_empty() {
                !cgroup.remove()
            } else {
                true
            }
        })
        .collect();
    reap_adopted();
    let mut registry = registry();
    let busy = !sweeps.is_empty() || !cgroups.is_empty();
    registry.sweeps.extend(sweeps);
    registry.cgroups.extend(cgroups);
    busy
}

//! A cgroup v2 per process tree: the one container no descendant can leave.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The runtime's own cgroup directory on a cgroup2 mount, if it has one.
fn own_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_own_dir).as_deref()
}

fn find_own_dir() -> Option<PathBuf> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroups.lines().find_map(|line| line.strip_prefix("0::"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options [optional...] - fstype source opts
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split_ascii_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = before.split_ascii_whitespace().collect();
        let (Some(root), Some(mountpoint)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let Some(inside) = own.strip_prefix(root.trim_end_matches('/')) else {
            continue;
        };
        let dir = Path::new(mountpoint).join(inside.trim_start_matches('/'));
        if dir.join("cgroup.procs").exists() {
            remove_stale(&dir);
            return Some(dir);
        }
    }
    None
}

/// Removes the empty cgroups that runtimes which are gone left behind (a process that
/// exits while a tree is being killed cannot wait to remove its cgroup).
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("runtimeuse-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Fails, harmlessly, while processes are still in it.
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// One tree's cgroup, a child of the runtime's own.
#[derive(Debug)]
pub(super) struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Creates a new, empty cgroup for one tree.
    pub(super) fn create() -> io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let base = own_dir().ok_or_else(|| io::Error::other("no cgroup2 hierarchy found"))?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("runtimeuse-{}-{n}", std::process::id()));
        fs::create_dir(&dir)?;
        Ok(Self { dir })
    }

    /// Moves `pid` into the cgroup.
    pub(super) fn add(&self, pid: i32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// The live processes in it.
    pub(super) fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|list| list.lines().filter_map(|p| p.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in it (`cgroup.kill`, or one by one on kernels before 5.14).
    pub(super) fn kill(&self) {
        if fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for pid in self.procs() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    /// Removes the cgroup if no process is left in it; returns whether it is gone.
    pub(super) fn remove(&self) -> bool {
        match fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(_) => false,
        }
    }

    /// Its directory, for logs.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Best effort: a cgroup never used (a failed spawn) or already emptied.
        let _ = fs::remove_dir(&self.dir);
    }
}

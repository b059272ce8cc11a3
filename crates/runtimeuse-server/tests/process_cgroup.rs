//! Process trees in a cgroup v2 of their own (where the runtime can create one).

mod process_common;

use process_common::*;
use runtimeuse_server::process::{Containment, Spawn};

/// Whether this machine lets the test process create a cgroup (otherwise the runtime
/// falls back, which `process_subreaper` tests).
fn cgroups_available() -> bool {
    let probe = Spawn::new("/bin/true").spawn();
    let available = probe.is_ok_and(|p| p.containment() == Containment::Cgroup);
    if !available {
        eprintln!("no writable cgroup v2 here: the cgroup path is not exercised");
    }
    available
}

#[tokio::test]
async fn stop_kills_setsid_and_double_fork_escapes_through_the_cgroup() {
    if cgroups_available() {
        stop_kills_every_escape(Containment::Cgroup).await;
    }
}

#[tokio::test]
async fn dropping_kills_setsid_and_double_fork_escapes_through_the_cgroup() {
    if cgroups_available() {
        drop_kills_every_escape().await;
    }
}

#[tokio::test]
async fn a_released_tree_keeps_its_background_children() {
    let background = release_leaves_background_children().await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(background),
        nix::sys::signal::Signal::SIGKILL,
    );
}

//! Shared by the process tests: scripts that escape their process group, and checks
//! that their processes are really gone.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use runtimeuse_server::process::{Process, Spawn};

/// Hang guard only, never a timing assertion.
pub const LONG: Duration = Duration::from_secs(30);

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` no longer runs; `false` if it still does after [`LONG`].
pub async fn wait_dead(pid: i32) -> bool {
    wait_until(|| !alive(pid)).await
}

/// Waits until `pid` is gone from `/proc` entirely (killed and reaped).
pub async fn wait_reaped(pid: i32) -> bool {
    wait_until(|| !Path::new(&format!("/proc/{pid}")).exists()).await
}

async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + LONG;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Reads the pid a script wrote to `path`, waiting for it.
pub async fn read_pid(path: &Path) -> i32 {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no pid written to {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ways a command leaves its process group; each writes the escaped process's pid to
/// the file given as `{pid}` and keeps the shell running.
pub const ESCAPES: &[(&str, &str)] = &[
    (
        "setsid in the background",
        "setsid sh -c 'echo $$ > {pid}; exec sleep 300' & sleep 300",
    ),
    (
        "double fork into a new session",
        "( setsid sh -c 'echo $$ > {pid}; exec sleep 300' & ) ; sleep 300",
    ),
    (
        "setsid -f",
        "setsid -f sh -c 'echo $$ > {pid}; exec sleep 300'; sleep 300",
    ),
    (
        "double fork ignoring SIGTERM",
        "( trap '' TERM; setsid sh -c 'trap \"\" TERM; echo $$ > {pid}; while :; do sleep 1; done' & ) ; sleep 300",
    ),
];

/// Starts `script` (with `{pid}` replaced) and returns the process and the escaped pid.
pub async fn start_escape(script: &str, dir: &Path) -> (Process, i32) {
    let pidfile: PathBuf = dir.join("escaped");
    let script = script.replace("{pid}", &pidfile.display().to_string());
    let process = Spawn::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawns");
    let escaped = read_pid(&pidfile).await;
    assert!(alive(escaped), "the escaped process should run");
    (process, escaped)
}

/// Every escape dies when the process is stopped, and is reaped.
pub async fn stop_kills_every_escape(expected: runtimeuse_server::process::Containment) {
    for (name, script) in ESCAPES {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut process, escaped) = start_escape(script, dir.path()).await;
        assert_eq!(process.containment(), expected, "{name}");
        let stopped = tokio::time::timeout(LONG, process.stop(Duration::from_millis(200))).await;
        assert!(stopped.is_ok(), "{name}: stop hung");
        assert!(wait_dead(escaped).await, "{name}: {escaped} survived stop");
        assert!(
            wait_reaped(escaped).await,
            "{name}: {escaped} left a zombie"
        );
    }
}

/// Every escape dies when the process is dropped, and is reaped.
pub async fn drop_kills_every_escape() {
    for (name, script) in ESCAPES {
        let dir = tempfile::tempdir().expect("tempdir");
        let (process, escaped) = start_escape(script, dir.path()).await;
        drop(process);
        assert!(
            wait_dead(escaped).await,
            "{name}: {escaped} survived the drop"
        );
        assert!(
            wait_reaped(escaped).await,
            "{name}: {escaped} left a zombie"
        );
    }
}

/// A released process's background children keep running.
pub async fn release_leaves_background_children() -> i32 {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("bg");
    let script = format!("sleep 300 & echo $! > {}", pidfile.display());
    let mut process = Spawn::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawns");
    assert!(process.wait().await.expect("waits").success());
    let background = read_pid(&pidfile).await;
    process.release();
    drop(process);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(alive(background), "a released tree was killed");
    background
}

//! `runtimeuse` as PID 1 (a container entry point without `--init`): orphans of commands
//! are reaped, and SIGTERM still shuts it down gracefully. Runs the real binary in a new
//! PID namespace with `unshare` (root on Linux).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Peer, command_execution};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["-fp", "--mount-proc", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The host pid of the process `unshare -f` forked (PID 1 inside the namespace).
fn forked_child(unshare: u32) -> i32 {
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .expect("children of unshare");
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("unshare has a child")
}

/// Kills `unshare` (and with it, through `--kill-child`, the whole namespace) if the test
/// fails before the graceful shutdown.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn run_one(peer: &mut Peer, command: &str) -> String {
    peer.send(command_execution(&[command])).await;
    let (_, result) = peer.until_terminal().await;
    result["results"][0]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn as_pid_1_it_reaps_orphans_and_still_shuts_down_on_sigterm() {
    if !unshare_works() {
        eprintln!("skipped: this machine does not allow PID namespaces (unshare -fp)");
        return;
    }
    let mut unshare = Command::new("unshare")
        .args(["-fp", "--mount-proc", "--kill-child=SIGKILL"])
        .arg(env!("CARGO_BIN_EXE_runtimeuse"))
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn unshare");
    let stdout = unshare.stdout.take().unwrap();
    let mut guard = KillOnDrop(Some(unshare));
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("runtimeuse listening on ")
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
        .to_owned();
    let mut peer = Peer::connect(&url).await;

    let pid1 = run_one(&mut peer, "tr '\\0' ' ' < /proc/1/cmdline").await;
    assert!(
        pid1.contains("runtimeuse --agent echo"),
        "PID 1 is {pid1:?}"
    );

    // The subshell exits at once, so `sleep` is orphaned and handed to PID 1.
    run_one(&mut peer, "(sleep 0.2 &); echo started").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let states = run_one(
        &mut peer,
        "for f in /proc/[0-9]*/stat; do cut -d' ' -f2,3 \"$f\"; done",
    )
    .await;
    assert!(
        !states.lines().any(|l| l.ends_with(" Z")),
        "zombies left behind:\n{states}"
    );

    let mut unshare = guard.0.take().unwrap();
    let init = forked_child(unshare.id());
    kill(Pid::from_raw(init), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || unshare.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

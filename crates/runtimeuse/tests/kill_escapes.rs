//! Kills are total: commands that leave their process group (`setsid`, `setsid -f`,
//! double forks) die on cancel and on disconnect, through the cgroup where the runtime
//! can create one and through the subreaper sweep (forced with
//! `--process-containment subreaper`).

mod binary;
mod common;

use std::time::Duration;

use binary::Runtime;
use common::{Peer, command_execution, process_alive, read_pid_file, wait_gone};
use serde_json::json;

/// Hang guard only.
const LONG: Duration = Duration::from_secs(30);

/// Commands whose escaped process writes its pid to `{pid}`.
const ESCAPES: &[(&str, &str)] = &[
    (
        "setsid in the background",
        "setsid sh -c 'echo $$ > {pid}; exec sleep 300' & sleep 300",
    ),
    (
        "double fork into a new session",
        "( setsid sh -c 'echo $$ > {pid}; exec sleep 300' & ) ; sleep 300",
    ),
    (
        "setsid -f ignoring SIGTERM",
        "setsid -f sh -c 'trap \"\" TERM; echo $$ > {pid}; while :; do sleep 1; done'; sleep 300",
    ),
];

#[derive(Clone, Copy, Debug)]
enum Stop {
    Cancel,
    Disconnect,
}

async fn escapes_die(containment: &str, stop: Stop) {
    let runtime = Runtime::start(&["--process-containment", containment], [("A", "b")]);
    for (name, script) in ESCAPES {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("escaped");
        let command = script.replace("{pid}", &pidfile.display().to_string());
        let mut peer = Peer::connect(&runtime.url).await;
        peer.send(command_execution(&[&command])).await;
        let escaped = read_pid_file(&pidfile).await;
        assert!(process_alive(escaped), "{name}: the escape should run");
        match stop {
            Stop::Cancel => {
                peer.send(json!({"message_type": "cancel_message"})).await;
                let (_, terminal) = peer.until_terminal().await;
                assert_eq!(terminal["error"], "Request cancelled", "{name}");
                peer.close().await;
            }
            Stop::Disconnect => drop(peer),
        }
        assert!(
            wait_gone(escaped, LONG).await,
            "{name}: {escaped} survived {stop:?} ({containment})"
        );
        // Nothing left behind: not even a zombie of the runtime.
        let deadline = tokio::time::Instant::now() + LONG;
        while std::path::Path::new(&format!("/proc/{escaped}")).exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: {escaped} was never reaped ({containment})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The runtime still serves.
    let mut peer = Peer::connect(&runtime.url).await;
    peer.send(command_execution(&["echo still here"])).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["exit_code"], 0, "{terminal}");
}

#[tokio::test]
async fn escapes_die_on_cancel_with_cgroups_where_available() {
    escapes_die("auto", Stop::Cancel).await;
}

#[tokio::test]
async fn escapes_die_on_disconnect_with_cgroups_where_available() {
    escapes_die("auto", Stop::Disconnect).await;
}

#[tokio::test]
async fn escapes_die_on_cancel_with_the_subreaper_sweep() {
    escapes_die("subreaper", Stop::Cancel).await;
}

#[tokio::test]
async fn escapes_die_on_disconnect_with_the_subreaper_sweep() {
    escapes_die("subreaper", Stop::Disconnect).await;
}

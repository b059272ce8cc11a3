//! Process trees in the fallback: the runtime as child subreaper, and sweeps.
//!
//! The fallback is forced (process-wide, which is why these tests have their own file).

mod process_common;

use process_common::*;
use runtimeuse_server::process::{Containment, Preference, set_containment};

fn force_fallback() {
    set_containment(Preference::Subreaper);
}

#[tokio::test]
async fn stop_kills_setsid_and_double_fork_escapes_by_sweeping() {
    force_fallback();
    stop_kills_every_escape(Containment::Subreaper).await;
}

#[tokio::test]
async fn dropping_kills_setsid_and_double_fork_escapes_by_sweeping() {
    force_fallback();
    drop_kills_every_escape().await;
}

#[tokio::test]
async fn a_released_tree_keeps_its_background_children_and_their_zombies_are_reaped() {
    force_fallback();
    let background = release_leaves_background_children().await;
    // Orphaned by its shell, the sleep is now the runtime's child: when it dies, the
    // reaper thread must reap it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(background),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        wait_reaped(background).await,
        "an adopted orphan stayed a zombie"
    );
}

#[tokio::test]
async fn the_fallback_adds_only_its_marker_to_the_environment() {
    force_fallback();
    let mut env = runtimeuse_server::process::Environment::empty();
    env.set("ONLY", "this");
    let mut process = runtimeuse_server::process::Spawn::new("/usr/bin/env")
        .env(env)
        .spawn()
        .expect("spawns");
    assert_eq!(process.containment(), Containment::Subreaper);
    let mut out = String::new();
    let mut stdout = process.take_stdout().expect("piped");
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
        .await
        .expect("reads");
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["ONLY", runtimeuse_server::process::TREE_MARKER]);
}

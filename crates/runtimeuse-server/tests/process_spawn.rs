//! The process primitive with real children: environment, stdio, stderr tail, stop, drop.

use std::path::Path;
use std::time::Duration;

use runtimeuse_server::process::{Environment, Spawn, TREE_MARKER, withhold_secret};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Hang guard only.
const LONG: Duration = Duration::from_secs(30);

async fn read_all(process: &mut runtimeuse_server::process::Process) -> String {
    let mut out = String::new();
    let mut stdout = process.take_stdout().expect("stdout is piped");
    tokio::time::timeout(LONG, stdout.read_to_string(&mut out))
        .await
        .expect("stdout ends")
        .expect("stdout reads");
    out
}

/// `env` output without the variable by which the subreaper fallback finds a tree's
/// processes (the one variable the primitive adds, and only in that mode).
fn without_marker(env_output: &str) -> String {
    env_output
        .lines()
        .filter(|line| !line.starts_with(&format!("{TREE_MARKER}=")))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie counts as dead: it no longer runs.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_dead(pid: i32) -> bool {
    let deadline = tokio::time::Instant::now() + LONG;
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn read_pid(path: &Path) -> i32 {
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

#[tokio::test]
async fn the_child_gets_exactly_the_given_environment() {
    let mut env = Environment::empty();
    env.set("ONLY", "this");
    let mut process = Spawn::new("/usr/bin/env").env(env).spawn().expect("spawns");
    assert_eq!(without_marker(&read_all(&mut process).await), "ONLY=this\n");
    assert!(process.wait().await.expect("waits").success());
}

#[tokio::test]
async fn inherited_environment_leaves_out_runtime_settings_and_withheld_credentials() {
    let secret = "proc-test-credential-7f3a";
    withhold_secret(secret);
    let mut env = Environment::filtered([
        ("RUNTIMEUSE_TOKEN".into(), "tok".into()),
        ("KEEP".into(), "yes".into()),
        ("HAS_SECRET".into(), format!("x{secret}y").into()),
    ]);
    env.set("FROM_REQUEST", "1");
    let mut process = Spawn::new("/usr/bin/env").env(env).spawn().expect("spawns");
    let out = without_marker(&read_all(&mut process).await);
    assert_eq!(out, "FROM_REQUEST=1\nKEEP=yes\n");
}

#[tokio::test]
async fn stdin_is_piped_and_closing_it_ends_the_child() {
    let mut process = Spawn::new("/bin/cat")
        .env(Environment::empty())
        .stdin_piped()
        .spawn()
        .expect("spawns");
    let mut stdin = process.take_stdin().expect("stdin is piped");
    stdin.write_all(b"round trip").await.expect("writes");
    drop(stdin);
    assert_eq!(read_all(&mut process).await, "round trip");
    assert!(process.wait().await.expect("waits").success());
}

#[tokio::test]
async fn stdin_defaults_to_dev_null() {
    let mut process = Spawn::new("/bin/cat").spawn().expect("spawns");
    assert!(process.take_stdin().is_none());
    assert_eq!(read_all(&mut process).await, "");
}

#[tokio::test]
async fn the_stderr_tail_keeps_only_the_last_bytes() {
    let mut process = Spawn::new("/bin/sh")
        .args([
            "-c",
            "i=0; while [ $i -lt 500 ]; do echo line-$i >&2; i=$((i+1)); done; echo the-end >&2",
        ])
        .stderr_tail(64)
        .spawn()
        .expect("spawns");
    assert!(process.take_stderr().is_none());
    process.wait().await.expect("waits");
    let tail = process.stderr_tail().expect("a tail");
    tokio::time::timeout(LONG, tail.closed())
        .await
        .expect("stderr closes");
    let text = tail.text();
    assert!(text.len() <= 64, "{text:?}");
    assert!(text.ends_with("line-499\nthe-end\n"), "{text:?}");
    assert!(!text.contains("line-1\n"));
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let error = Spawn::new("/nonexistent/program-xyz")
        .spawn()
        .expect_err("fails");
    assert!(
        error.to_string().contains("/nonexistent/program-xyz"),
        "{error}"
    );
}

#[tokio::test]
async fn stop_kills_the_group_including_children_that_ignore_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("grandchild");
    let script = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {}; while :; do sleep 1; done' & wait",
        pidfile.display()
    );
    let mut process = Spawn::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawns");
    let grandchild = read_pid(&pidfile).await;
    assert!(alive(grandchild));
    let status = tokio::time::timeout(LONG, process.stop(Duration::from_millis(300)))
        .await
        .expect("stop ends")
        .expect("stop waits");
    assert!(!status.success());
    assert!(
        wait_dead(grandchild).await,
        "grandchild {grandchild} survived stop"
    );
}

#[tokio::test]
async fn dropping_the_process_kills_its_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("child");
    let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let process = Spawn::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawns");
    let leader = i32::try_from(process.id()).expect("pid fits");
    let sleeper = read_pid(&pidfile).await;
    drop(process);
    assert!(
        wait_dead(sleeper).await,
        "sleep {sleeper} survived the drop"
    );
    let reaped = async {
        while std::path::Path::new(&format!("/proc/{leader}")).exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(
        tokio::time::timeout(LONG, reaped).await.is_ok(),
        "the shell {leader} was not reaped"
    );
}

#[tokio::test]
async fn a_program_name_is_found_on_the_runtimes_path_when_the_child_has_none() {
    let mut process = Spawn::new("true")
        .env(Environment::empty())
        .spawn()
        .expect("found on the runtime's PATH");
    assert!(process.wait().await.expect("waits").success());
}

#[tokio::test]
async fn a_relative_program_runs_from_the_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello from $0\n").expect("writes");
    let not_executable = dir.path().join("plain.txt");
    std::fs::write(&not_executable, "data").expect("writes");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let mut process = Spawn::new("./hello.sh")
        .current_dir(dir.path())
        .spawn()
        .expect("spawns");
    assert!(read_all(&mut process).await.starts_with("hello from "));
    let error = Spawn::new("./plain.txt")
        .current_dir(dir.path())
        .spawn()
        .expect_err("not executable");
    assert!(error.to_string().contains("plain.txt"), "{error}");
}

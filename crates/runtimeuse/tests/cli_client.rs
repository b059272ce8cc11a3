//! `runtimeuse query` and `runtimeuse exec` against the real runtime.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::start_runtime;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runtimeuse_testkit::{CutPlan, CutProxy};

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
            .args(&args)
            .output()
            .expect("run runtimeuse")
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn query_prints_assistant_text_then_the_result() {
    let runtime = start_runtime(|_| {}).await;
    let out = run(vec!["query".into(), runtime.ws_url(), "STREAM:2".into()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "message 1 of 2\nmessage 2 of 2\nstreamed 2 messages\n"
    );
}

#[tokio::test]
async fn query_with_a_schema_file_prints_structured_json() {
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"json_schema","schema":{"type":"object","required":["n"]}}"#,
    )
    .unwrap();
    let out = run(vec![
        "query".into(),
        runtime.ws_url(),
        r#"STRUCTURED:{"n": 5}"#.into(),
        "--schema-file".into(),
        schema.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, serde_json::json!({"n": 5}));
}

#[tokio::test]
async fn query_error_exits_non_zero_with_the_message_and_redacts_secrets() {
    let runtime = start_runtime(|_| {}).await;
    let out = run(vec![
        "query".into(),
        runtime.ws_url(),
        "ERROR:the key pw-123 is wrong".into(),
        "--secret".into(),
        "pw-123".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the key [REDACTED] is wrong"), "{stderr}");
    assert!(stderr.contains("echo_handler"), "{stderr}");
}

#[tokio::test]
async fn exec_streams_both_streams_and_exits_with_the_command_code() {
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("made");
    let out = run(vec![
        "exec".into(),
        runtime.ws_url(),
        "--cwd".into(),
        cwd.display().to_string(),
        "--".into(),
        // One word is a shell command line (several words would be one quoted argv).
        "pwd; echo oops >&2; exit 4".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stdout), format!("{}\n", cwd.display()));
    assert_eq!(text(&out.stderr), "oops\n");
}

#[tokio::test]
async fn exec_against_nothing_fails_with_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    let out = run(vec!["exec".into(), url.clone(), "--".into(), "true".into()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&url), "{}", text(&out.stderr));
}

/// Starts `runtimeuse exec ARGS -- sleep 1000` (stderr piped); returns it once the remote
/// command runs, with the remote command's pid.
async fn exec_sleeping(args: &[&str]) -> (std::process::Child, i32) {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let child = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
        .arg("exec")
        .args(args)
        .arg("--")
        .arg(format!("echo $$ > {}; exec sleep 1000", pid_file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let remote = common::read_pid_file(&pid_file).await;
    (child, remote)
}

#[tokio::test]
async fn ctrl_c_cancels_the_remote_command_and_exits_130() {
    let runtime = start_runtime(|_| {}).await;
    let (mut child, remote) = exec_sleeping(&[&runtime.ws_url()]).await;
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        common::wait_gone(remote, Duration::from_secs(5)).await,
        "remote command survived"
    );
}

/// `exec` of a command printing 5,000 numbered lines (about 60 KB of output frames)
/// through a proxy that cuts each of the first two connections after 8 KB.
async fn exec_through_cuts(resume: bool) -> (Output, CutProxy, String) {
    let runtime = start_runtime(|_| {}).await;
    let proxy = CutProxy::to_url(&runtime.ws_url()).await.unwrap();
    proxy.set_plan(Some(CutPlan::after_bytes(8 * 1024).times(2)));
    let mut args = vec!["exec".to_owned(), proxy.ws_url()];
    if resume {
        args.push("--resume".into());
    }
    args.extend(["--".into(), "seq -f 'line %g' 1 5000; exit 3".into()]);
    let out = run(args).await;
    let expected: String = (1..=5000).map(|i| format!("line {i}\n")).collect();
    drop(runtime);
    (out, proxy, expected)
}

#[tokio::test]
async fn exec_with_resume_survives_cuts_with_its_output_whole_and_its_exit_code() {
    let (out, proxy, expected) = exec_through_cuts(true).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(proxy.cuts(), 2, "both planned cuts happened");
    assert!(
        text(&out.stdout) == expected,
        "stdout is every line once and in order ({} bytes, expected {}); stderr: {stderr}",
        out.stdout.len(),
        expected.len()
    );
    assert_eq!(
        stderr,
        "runtimeuse: the connection dropped 2 times and was resumed\n"
    );
}

#[tokio::test]
async fn exec_without_resume_ends_at_the_first_cut() {
    let (out, proxy, expected) = exec_through_cuts(false).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(proxy.cuts(), 1);
    assert!(
        out.stdout.len() < expected.len(),
        "the output was cut short"
    );
}

#[tokio::test]
async fn a_second_ctrl_c_leaves_at_once_while_a_resume_waits_for_the_runtime() {
    let runtime = start_runtime(|_| {}).await;
    let proxy = CutProxy::to_url(&runtime.ws_url()).await.unwrap();
    let (mut child, remote) = exec_sleeping(&[&proxy.ws_url(), "--resume"]).await;
    // The runtime becomes unreachable: the client keeps trying to resume, for the
    // runtime's grace period (120 s), and the cancel cannot reach it.
    proxy.set_refusing(true);
    proxy.cut();
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first Ctrl-C waits for the runtime's confirmation"
    );
    kill(pid, Signal::SIGINT).unwrap();
    let waited = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
                    .unwrap();
                return Some((status, stderr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        None
    })
    .await
    .unwrap();
    let _ = kill(Pid::from_raw(remote), Signal::SIGKILL);
    let (status, stderr) = waited.expect("the second Ctrl-C left within 30 s");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted again"), "{stderr}");
}

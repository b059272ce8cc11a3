//! Token auth at the upgrade, and the real binary's startup line and graceful shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Peer, command_execution, start_runtime, wait_gone};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http};

async fn upgrade_status(request: http::Request<()>) -> u16 {
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn token_is_enforced_at_the_upgrade() {
    let runtime = start_runtime(|c| c.token = Some("t0ken".into())).await;
    let url = runtime.ws_url();

    let plain = url.as_str().into_client_request().unwrap();
    assert_eq!(upgrade_status(plain).await, 401);

    let mut wrong = url.as_str().into_client_request().unwrap();
    wrong
        .headers_mut()
        .insert("Authorization", "Bearer nope".parse().unwrap());
    assert_eq!(upgrade_status(wrong).await, 401);

    let mut bearer = url.as_str().into_client_request().unwrap();
    bearer
        .headers_mut()
        .insert("Authorization", "Bearer t0ken".parse().unwrap());
    assert_eq!(upgrade_status(bearer).await, 101);

    let query = format!("{url}?token=t0ken").into_client_request().unwrap();
    assert_eq!(upgrade_status(query).await, 101);
    let query = format!("{url}any/path?token=wrong")
        .into_client_request()
        .unwrap();
    assert_eq!(upgrade_status(query).await, 401);
}

#[tokio::test]
async fn without_a_token_any_path_upgrades() {
    let runtime = start_runtime(|_| {}).await;
    let url = format!("{}some/path?x=1", runtime.ws_url());
    let mut peer = Peer::connect(&url).await;
    peer.send(command_execution(&["echo hi"])).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["stdout"], "hi\n");
}

/// The real binary, started with `--port 0`. Killed on drop, so that a failing test does
/// not leave it running.
struct Binary {
    child: Option<std::process::Child>,
    url: String,
}

impl Binary {
    /// Starts `runtimeuse --agent AGENT … EXTRA`; with `log_level`, its stderr is captured
    /// at that `RUST_LOG` level (read it from [`Binary::terminate`]).
    fn start(agent: &str, extra: &[&str], log_level: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runtimeuse"));
        command
            .args(["--agent", agent, "--host", "127.0.0.1", "--port", "0"])
            .args(["--kill-grace", "0.5"])
            .args(extra)
            .env_remove("OPENAI_API_KEY")
            .stdout(Stdio::piped());
        match log_level {
            Some(level) => command.env("RUST_LOG", level).stderr(Stdio::piped()),
            None => command.stderr(Stdio::null()),
        };
        let mut child = command.spawn().expect("spawn runtimeuse");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read startup line");
        let url = line
            .trim()
            .strip_prefix("runtimeuse listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .to_owned();
        Self {
            child: Some(child),
            url,
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status and captured stderr.
    async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let child = self.child.take().expect("running");
        kill(
            Pid::from_raw(i32::try_from(child.id()).unwrap()),
            Signal::SIGTERM,
        )
        .unwrap();
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn sigterm_cancels_requests_kills_their_processes_and_exits_zero() {
    let runtime = Binary::start("echo", &["--artifact-grace", "0.2"], None);
    let mut peer = Peer::connect(&runtime.url).await;
    let (_dir, grandchild) = common::start_grandchild(&mut peer).await;

    let started = Instant::now();
    let (status, _) = tokio::join!(runtime.terminate(), async {
        let rest = peer.until_closed().await;
        let terminal = rest
            .iter()
            .find(|m| common::is_terminal(m))
            .expect("a terminal");
        assert_eq!(terminal["error"], "Request cancelled");
    })
    .0;
    assert_eq!(status.code(), Some(0), "runtime exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        wait_gone(grandchild, Duration::from_secs(5)).await,
        "grandchild survived shutdown"
    );
}

#[tokio::test]
async fn sigterm_with_no_sessions_exits_promptly() {
    let runtime = Binary::start("echo", &[], None);
    let health = format!("{}/health", runtime.url.replace("ws://", "http://"));
    let body = reqwest::get(&health).await.unwrap().text().await.unwrap();
    assert!(body.contains("\"agent\":\"echo\""), "{body}");
    let (status, _) = runtime.terminate().await;
    assert_eq!(status.code(), Some(0));
}

#[test]
fn invalid_flags_fail_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
        .args(["--agent", "echo", "--port", "0", "--heartbeat-interval=-1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("heartbeat-interval"), "{stderr}");

    for flag in ["--artifact-grace=1e30", "--kill-grace=NaN"] {
        let output = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
            .args(["--agent", "echo", "--port", "0", flag])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{flag}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("must be between"), "{flag}: {stderr}");
    }
}

#[tokio::test]
async fn openai_agent_is_the_one_serving_and_needs_a_key() {
    let runtime = Binary::start("openai", &["--max-turns", "3"], None);
    let mut peer = Peer::connect(&runtime.url).await;
    peer.send(common::invocation("hello")).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message");
    assert_eq!(error["metadata"]["error_name"], "MissingApiKey", "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("OPENAI_API_KEY"),
        "{error}"
    );
    let (status, _) = runtime.terminate().await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn secrets_never_reach_the_log_even_at_debug_level() {
    let runtime = Binary::start("echo", &[], Some("debug"));
    let secret = "zz-log-secret-42";
    let mut peer = Peer::connect(&runtime.url).await;
    let mut message = common::invocation(&format!("ERROR:failed with {secret}"));
    message["source_id"] = serde_json::json!(format!("job-{secret}"));
    message["secrets_to_redact"] = serde_json::json!([secret]);
    message["pre_agent_invocation_commands"] =
        serde_json::json!([{"command": format!("echo {secret}; exit 0")}]);
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["error"], "failed with [REDACTED]");
    peer.close().await;

    let (_, log) = runtime.terminate().await;
    assert!(
        log.contains("job-[REDACTED]"),
        "the source id should be logged, redacted:\n{log}"
    );
    assert!(!log.contains(secret), "secret in the log:\n{log}");
}

//! The real binary: `--token-file`, refusal of an empty token at start-up, the token
//! redacted from what clients receive, and `--log-format json` lines that are redacted
//! like text ones.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{Peer, command_execution};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, http};

/// The real binary on 127.0.0.1:0, killed on drop so a failing test leaves nothing behind.
struct Binary {
    child: Option<std::process::Child>,
    url: String,
    /// Kept open: the runtime prints more than one line, and a closed pipe would fail it.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Binary {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_runtimeuse"));
        command
            .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_remove("RUNTIMEUSE_TOKEN")
            .env_remove("RUNTIMEUSE_TOKEN_FILE")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn runtimeuse");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).expect("read startup line");
        let url = line
            .trim()
            .strip_prefix("runtimeuse listening on ")
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
            .to_owned();
        Self {
            child: Some(child),
            url,
            _stdout: stdout,
        }
    }

    /// SIGTERM, then the captured stderr.
    async fn stop(mut self) -> String {
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
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
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

/// Runs the binary expecting it to refuse to start; returns its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_runtimeuse"))
        .args(["--agent", "echo", "--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .env_remove("RUNTIMEUSE_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run runtimeuse");
    assert!(!output.status.success(), "started although it should not");
    assert!(output.stdout.is_empty(), "printed a listening line");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_empty_token_is_refused_at_start_up() {
    let flag = refused(&["--token", ""], &[]);
    assert!(flag.contains("empty"), "{flag}");
    let env = refused(&[], &[("RUNTIMEUSE_TOKEN", "")]);
    assert!(env.contains("RUNTIMEUSE_TOKEN"), "{env}");
    assert!(env.contains("empty"), "{env}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "\n").unwrap();
    let path = file.to_str().unwrap();
    let empty_file = refused(&["--token-file", path], &[]);
    assert!(empty_file.contains("empty"), "{empty_file}");
    let missing = refused(&["--token-file", "/nonexistent/token"], &[]);
    assert!(missing.contains("/nonexistent/token"), "{missing}");
}

async fn upgrade_status(url: &str, token: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert(
            "Authorization",
            http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn the_token_file_is_enforced_and_the_token_is_redacted_from_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-Token-4242\n").unwrap();
    let runtime = Binary::start(&["--token-file", file.to_str().unwrap()], &[]);
    assert_eq!(upgrade_status(&runtime.url, None).await, 401);
    assert_eq!(
        upgrade_status(&runtime.url, Some("file-Token-424")).await,
        401
    );

    let url = format!("{}/?token=file-Token-4242", runtime.url);
    let mut peer = Peer::connect(&url).await;
    // A command that learned the token (it read a file, say) cannot send it back.
    let print = format!("cat {}", file.display());
    peer.send(command_execution(&[&print])).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(
        terminal["results"][0]["stdout"], "[REDACTED]\n",
        "{terminal}"
    );
    peer.close().await;
    let stderr = runtime.stop().await;
    assert!(!stderr.contains("file-Token-4242"), "{stderr}");
}

#[tokio::test]
async fn json_log_lines_are_json_and_redacted() {
    let runtime = Binary::start(
        &["--log-format", "json", "--token", "json-log-token"],
        &[("RUST_LOG", "debug")],
    );
    let url = format!("{}/?token=json-log-token", runtime.url);
    let mut peer = Peer::connect(&url).await;
    let mut request = command_execution(&["echo hi"]);
    request["secrets_to_redact"] = json!(["json-log-secret"]);
    // The request span records the source id: a log field that carries the secret.
    request["source_id"] = json!("job-json-log-secret");
    peer.send(request).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["stdout"], "hi\n");
    // A malformed frame's error is logged, quoting its value.
    peer.send_raw(r#"{"message_type": "cancel_message", "bogus": "#)
        .await;
    let _ = peer.recv().await;
    peer.close().await;
    let stderr = runtime.stop().await;
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "request started"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["source_id"] == "job-[REDACTED]"),
        "the request span's field is redacted, not dropped: {stderr}"
    );
    assert!(!stderr.contains("json-log-secret"), "{stderr}");
    assert!(!stderr.contains("json-log-token"), "{stderr}");
}

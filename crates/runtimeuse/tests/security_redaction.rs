//! Redaction keeps the protocol intact, covers a secret's other forms, and a rejected
//! frame's secrets die with it. Each test reproduces a leak seen before the fix.

mod common;

use common::{Peer, command_execution, output_text, start_runtime};
use serde_json::{Value, json};

fn with_secrets(mut message: Value, secrets: &[&str]) -> Value {
    message["secrets_to_redact"] = json!(secrets);
    message
}

#[tokio::test]
async fn secrets_named_like_protocol_keys_leave_every_message_intact() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let secrets = [
        "message",
        "end_session_confirm",
        "message_type",
        "command_execution_result",
        "stdout",
        "results",
        "exit_code",
        "command_output",
    ];
    let request = with_secrets(
        command_execution(&["echo the message is in stdout"]),
        &secrets,
    );
    peer.send(request).await;
    let (before, terminal) = peer.until_terminal().await;
    assert_eq!(
        terminal["message_type"], "command_execution_result_message",
        "{terminal}"
    );
    assert_eq!(
        terminal["results"][0]["stdout"],
        "the [REDACTED] is in [REDACTED]\n"
    );
    assert_eq!(terminal["results"][0]["exit_code"], 0);
    assert_eq!(
        output_text(&before, "stdout"),
        "the [REDACTED] is in [REDACTED]\n"
    );
    peer.send(json!({"message_type": "end_session_message"}))
        .await;
    let confirm = peer.recv().await;
    assert_eq!(
        confirm,
        json!({"message_type": "end_session_confirm_message"})
    );
}

#[tokio::test]
async fn secrets_of_a_malformed_frame_are_not_kept_by_the_session() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let mut bad = with_secrets(command_execution(&["true"]), &["frame-only-secret"]);
    bad["commands"] = json!("frame-only-secret is not a list");
    peer.send(bad).await;
    let refusal = peer.recv().await;
    assert_eq!(refusal["message_type"], "error_message", "{refusal}");
    assert!(
        !refusal.to_string().contains("frame-only-secret"),
        "{refusal}"
    );

    // A later request that does not list it prints it as is: the rejected frame's
    // secrets did not become the session's.
    peer.send(command_execution(&["echo frame-only-secret"]))
        .await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["stdout"], "frame-only-secret\n");
}

#[tokio::test]
async fn secrets_of_a_request_refused_as_busy_are_not_kept_by_the_session() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    // Runs until the test lets it go, so the second request surely finds it in flight.
    let waiting = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo released",
        gate.display()
    );
    peer.send(command_execution(&[&waiting])).await;
    let busy = with_secrets(command_execution(&["true"]), &["busy-secret"]);
    peer.send(busy).await;
    let refusal = peer.recv().await;
    assert_eq!(refusal["message_type"], "error_message", "{refusal}");
    std::fs::write(&gate, "").unwrap();
    let (_, first) = peer.until_terminal().await;
    assert_eq!(first["results"][0]["stdout"], "released\n");

    peer.send(command_execution(&["echo busy-secret"])).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["stdout"], "busy-secret\n");
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_mixed_case_secret_host_is_redacted_from_a_download_error() {
    let port = closed_port();
    // The secret host resolves to loopback without any DNS query.
    let http = reqwest::Client::builder()
        .resolve(
            "secret-host.test",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .build()
        .unwrap();
    let runtime = start_runtime(move |c| c.session.http = http.into()).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut request = with_secrets(command_execution(&["true"]), &["Secret-Host.test"]);
    request["pre_execution_downloadables"] = json!([{
        "download_url": format!("http://Secret-Host.test:{port}/file.txt"),
        "working_dir": dir.path(),
    }]);
    peer.send(request).await;
    let (_, terminal) = peer.until_terminal().await;
    let error = terminal["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Download failed"), "{terminal}");
    assert!(
        !error.to_ascii_lowercase().contains("secret-host"),
        "{error}"
    );
    assert!(error.contains("[REDACTED]"), "{error}");
}

#[tokio::test]
async fn a_secret_in_a_url_path_is_redacted_in_its_percent_encoded_form() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut request = with_secrets(command_execution(&["true"]), &["my secret dir"]);
    // No file name in the URL: the error quotes its (percent-encoded) path.
    request["pre_execution_downloadables"] = json!([{
        "download_url": format!("http://127.0.0.1:{}/my secret dir/", closed_port()),
        "working_dir": dir.path(),
    }]);
    peer.send(request).await;
    let (_, terminal) = peer.until_terminal().await;
    let error = terminal["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("Download failed"), "{terminal}");
    assert!(!error.contains("my%20secret%20dir"), "{error}");
    assert!(!error.contains("my secret dir"), "{error}");
    assert!(error.contains("[REDACTED]"), "{error}");
}

#[tokio::test]
async fn many_secrets_over_megabytes_of_output_do_not_stall_other_sessions() {
    let runtime = start_runtime(|_| {}).await;
    let mut secrets: Vec<String> = (0..20_000).map(|i| format!("k{i:05}q")).collect();
    let long = "L".repeat(300) + "-the-long-secret-" + &"z".repeat(700);
    secrets.push(long.clone());
    // 5 MB of lines that each start the long secret without finishing it (the worst
    // case for the held tail), then the secret itself once.
    let script = format!(
        "yes \"$(printf 'L%.0s' $(seq 300))-the-long-secret-zz k12345q\" | head -c 5000000; \
         echo; echo {long}"
    );
    let mut request = command_execution(&[&script]);
    request["secrets_to_redact"] = json!(secrets);
    let mut heavy = Peer::connect(&runtime.ws_url()).await;
    heavy.send(request).await;
    let heavy_done = tokio::spawn(async move {
        let mut streamed = 0usize;
        let mut leaked = false;
        loop {
            let message = heavy.recv().await;
            if common::is_terminal(&message) {
                return (streamed, leaked, message);
            }
            let text = message["text"].as_str().unwrap_or_default();
            streamed += text.len();
            leaked |= text.contains("k12345q") || text.contains(&long);
        }
    });
    // Meanwhile another session is served as usual (each round trip bounded by the
    // harness's receive timeout).
    let mut light = Peer::connect(&runtime.ws_url()).await;
    for i in 0..5 {
        light
            .send(command_execution(&[&format!("echo ping {i}")]))
            .await;
        let (_, terminal) = light.until_terminal().await;
        assert_eq!(terminal["results"][0]["stdout"], format!("ping {i}\n"));
    }
    let (streamed, leaked, terminal) =
        tokio::time::timeout(std::time::Duration::from_secs(120), heavy_done)
            .await
            .expect("5 MB with 20k secrets did not finish in 120 s")
            .unwrap();
    assert_eq!(
        terminal["message_type"], "command_execution_result_message",
        "{terminal}"
    );
    assert!(!leaked, "a secret was streamed");
    assert!(streamed > 4_000_000, "streamed {streamed} bytes");
    let stdout = terminal["results"][0]["stdout"]
        .as_str()
        .unwrap_or_default();
    assert!(!stdout.contains("k12345q"));
}

//! How the runtime runs a handler process, behind the whole runtime (a real WebSocket
//! client, a real Python handler per invocation): its environment is exactly the
//! invocation's, credentials it prints come back redacted, stderr is not liveness, and its
//! whole tree dies on cancel and on disconnect, `setsid` escapes included.

mod handler_support;

use std::collections::BTreeMap;
use std::time::Duration;

use handler_support::{
    Client, alive, invocation, invoke, of_type, probe_handler, serve, start_escape, terminal,
    wait_gone,
};
use runtimeuse_server::process::TREE_MARKER;
use serde_json::{Value, json};

#[tokio::test]
async fn cancel_kills_a_grandchild_that_escaped_with_setsid() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(probe_handler(&[]).await, |_| {}).await;
    let mut client = Client::connect(&server).await;
    let (handler, escaped) = start_escape(&mut client, dir.path()).await;
    client
        .send(&json!({"message_type": "cancel_message"}))
        .await;
    let frames = client.until_terminal().await;
    assert_eq!(
        terminal(&frames)["error"],
        "Request cancelled",
        "{frames:?}"
    );
    assert!(
        wait_gone(&[handler, escaped]).await,
        "survived the cancel: handler alive={} escaped alive={}",
        alive(handler),
        alive(escaped)
    );
}

#[tokio::test]
async fn a_disconnect_kills_a_grandchild_that_escaped_with_setsid() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(probe_handler(&[]).await, |_| {}).await;
    let mut client = Client::connect(&server).await;
    let (handler, escaped) = start_escape(&mut client, dir.path()).await;
    drop(client);
    assert!(
        wait_gone(&[handler, escaped]).await,
        "survived the disconnect: handler alive={} escaped alive={}",
        alive(handler),
        alive(escaped)
    );
}

#[tokio::test]
async fn the_handler_process_environment_is_exactly_the_invocation_env() {
    let server = serve(probe_handler(&[]).await, |_| {}).await;
    let frames = invoke(
        &server,
        &invocation(
            "ENV",
            json!({"agent_env": {"FROM_AGENT_ENV": "yes", "PATH": "/usr/bin:/bin"}}),
        ),
    )
    .await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "result_message", "{frames:?}");
    let seen: Value = serde_json::from_str(last["data"]["text"].as_str().unwrap()).unwrap();
    let mut environ: BTreeMap<String, String> =
        serde_json::from_value(seen["environ"].clone()).unwrap();
    let mut told: BTreeMap<String, String> =
        serde_json::from_value(seen["invocation_env"].clone()).unwrap();
    // The process primitive's marker for its tree sweep (when it uses one) is the only
    // variable the handler may see beyond the invocation's; `PWD` and `_` are the
    // shell's business (in cgroup mode the child is exec'd by a `/bin/sh` gate, which
    // sets them to the real directory and command).
    environ.remove(TREE_MARKER);
    for shell_owned in ["PWD", "_"] {
        environ.remove(shell_owned);
        told.remove(shell_owned);
    }
    assert_eq!(
        environ, told,
        "process env differs from the invocation's env"
    );
    assert_eq!(
        environ.get("FROM_AGENT_ENV").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        environ.get("PATH").map(String::as_str),
        Some("/usr/bin:/bin")
    );
    assert!(
        environ.keys().all(|k| !k.starts_with("RUNTIMEUSE_")),
        "{environ:?}"
    );
    let proc = seen["proc"].as_str().unwrap();
    assert!(!proc.contains("RUNTIMEUSE_"), "{proc}");
}

#[tokio::test]
async fn credentials_in_agent_env_come_back_redacted_from_everything_the_handler_sends() {
    const KEY: &str = "sk-handler-credential-81f3";
    let server = serve(probe_handler(&[]).await, |_| {}).await;
    let secret_env = json!({"agent_env": {"API_KEY": KEY}, "secrets_to_redact": [KEY]});

    let frames = invoke(&server, &invocation("LEAK:API_KEY", secret_env.clone())).await;
    assert!(
        !serde_json::to_string(&frames).unwrap().contains(KEY),
        "{frames:?}"
    );
    let assistant = of_type(&frames, "assistant_message");
    assert_eq!(
        assistant[0]["text_blocks"],
        json!(["assistant sees [REDACTED]"])
    );
    let last = terminal(&frames);
    assert_eq!(last["data"]["text"], "result sees [REDACTED]", "{frames:?}");
    assert_eq!(last["metadata"]["seen"], "[REDACTED]");

    let frames = invoke(&server, &invocation("LEAK_CRASH:API_KEY", secret_env)).await;
    assert!(
        !serde_json::to_string(&frames).unwrap().contains(KEY),
        "{frames:?}"
    );
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message", "{frames:?}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("crashing with [REDACTED]"),
        "{last}"
    );
    assert!(
        last["metadata"]["stderr"]
            .as_str()
            .unwrap()
            .contains("crashing with [REDACTED]"),
        "{last}"
    );
}

#[tokio::test]
async fn stderr_output_does_not_keep_a_silent_handler_alive() {
    let server = serve(probe_handler(&[]).await, |c| {
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let frames = invoke(&server, &invocation("CHATTY", json!({}))).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message", "{frames:?}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("sent nothing for 1 s"), "{error}");
    assert!(error.contains("still thinking"), "{error}");
}

#[tokio::test]
async fn arguments_starting_with_a_hyphen_reach_the_handler() {
    let server = serve(probe_handler(&["--verbose", "-x", "--"]).await, |_| {}).await;
    let frames = invoke(&server, &invocation("ARGV", json!({}))).await;
    let argv: Vec<String> =
        serde_json::from_str(terminal(&frames)["data"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(argv, ["--verbose", "-x", "--"]);
}

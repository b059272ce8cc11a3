//! What runs gets an explicit environment: never the runtime's token (wherever it was
//! found), never its `RUNTIMEUSE_*` settings, always the request's env; and a variable
//! that is not UTF-8 in the runtime's environment breaks nothing.

mod binary;
mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

use binary::Runtime;
use common::{Peer, invocation, output_text};
use serde_json::json;

const TOKEN: &str = "tok-env-isolation-5d1c9";

/// Counts the token in the command's whole environment and in `/proc/self/environ` (read
/// by `cat`, whose own it is: dash's redirect would read an empty one), then shows the
/// rest of what the command sees.
const PROBE: &str = "env | grep -c 'tok-env-isolation-5d1c9'; \
    cat /proc/self/environ | tr '\\0' '\\n' | grep -c 'tok-env-isolation-5d1c9'; \
    env | grep -c '^RUNTIMEUSE_'; \
    echo \"request=$FROM_REQUEST kept=$KEPT\"; \
    printf %s \"$NOT_UTF8\" | od -An -tx1";

fn not_utf8() -> OsString {
    OsString::from_vec(b"\xff\xfeok".to_vec())
}

fn probe_execution() -> serde_json::Value {
    json!({
        "message_type": "command_execution_message",
        "source_id": null,
        "secrets_to_redact": [],
        "commands": [{"command": PROBE, "cwd": null, "env": {"FROM_REQUEST": "yes"}}],
        "artifacts_dirs": null,
        "artifacts_ignore_content": null,
        "pre_execution_downloadables": null,
    })
}

fn expected_probe_output() -> String {
    "0\n0\n0\nrequest=yes kept=1\n ff fe 6f 6b\n".to_owned()
}

fn runtime_env() -> Vec<(OsString, OsString)> {
    vec![
        ("COPY_OF_TOKEN".into(), format!("Bearer {TOKEN}").into()),
        ("RUNTIMEUSE_KILL_GRACE".into(), "0.5".into()),
        ("KEPT".into(), "1".into()),
        ("NOT_UTF8".into(), not_utf8()),
    ]
}

#[tokio::test]
async fn a_command_never_sees_the_token_from_the_environment() {
    let mut env = runtime_env();
    env.push(("RUNTIMEUSE_TOKEN".into(), TOKEN.into()));
    let runtime = Runtime::start(&[], env);
    let mut peer = Peer::connect(&format!("{}/?token={TOKEN}", runtime.url)).await;
    peer.send(probe_execution()).await;
    let (before, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["exit_code"], 0, "{terminal}");
    assert_eq!(output_text(&before, "stdout"), expected_probe_output());
    assert_eq!(terminal["results"][0]["stdout"], expected_probe_output());
}

#[tokio::test]
async fn a_command_never_sees_a_token_given_by_flag_in_another_variable() {
    let runtime = Runtime::start(&["--token", TOKEN], runtime_env());
    let mut peer = Peer::connect(&format!("{}/?token={TOKEN}", runtime.url)).await;
    peer.send(probe_execution()).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["stdout"], expected_probe_output());
}

#[tokio::test]
async fn the_subreaper_fallback_hides_the_token_too() {
    let mut env = runtime_env();
    env.push(("RUNTIMEUSE_TOKEN".into(), TOKEN.into()));
    let runtime = Runtime::start(&["--process-containment", "subreaper"], env);
    let mut peer = Peer::connect(&format!("{}/?token={TOKEN}", runtime.url)).await;
    peer.send(probe_execution()).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["results"][0]["stdout"], expected_probe_output());
}

#[tokio::test]
async fn a_non_utf8_variable_in_the_runtimes_environment_does_not_fail_invocations() {
    let runtime = Runtime::start(&[], runtime_env());
    let mut peer = Peer::connect(&runtime.url).await;
    for round in 0..2 {
        let mut message = invocation(&format!("ECHO:round {round}"));
        message["pre_agent_invocation_commands"] =
            json!([{"command": "true", "cwd": null, "env": null}]);
        peer.send(message).await;
        let (_, terminal) = peer.until_terminal().await;
        assert_eq!(terminal["message_type"], "result_message", "{terminal}");
        assert_eq!(terminal["data"]["text"], format!("round {round}"));
    }
}

/// A handler (any program) that answers with what it finds in its own environment.
const HANDLER: &str = r#"read -r _invocation
t=$(env | grep -c 'tok-env-isolation-5d1c9')
p=$(cat /proc/self/environ | tr '\0' '\n' | grep -c 'tok-env-isolation-5d1c9')
r=$(env | grep -c '^RUNTIMEUSE_')
printf '{"type":"result","data":{"type":"text","text":"%s %s %s kept=%s agent=%s"}}\n' "$t" "$p" "$r" "$KEPT" "$FROM_AGENT_ENV"
"#;

#[tokio::test]
async fn a_handler_never_sees_the_token_and_gets_the_agent_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("handler.sh");
    std::fs::write(&script, HANDLER).expect("writes the handler");
    let script = script.display().to_string();
    let mut env = runtime_env();
    env.push(("RUNTIMEUSE_TOKEN".into(), TOKEN.into()));
    let runtime = Runtime::start(&["--handler", "/bin/sh", &script], env);
    let mut peer = Peer::connect(&format!("{}/?token={TOKEN}", runtime.url)).await;
    let mut message = invocation("what do you see?");
    message["agent_env"] = json!({"FROM_AGENT_ENV": "here"});
    peer.send(message).await;
    let (_, terminal) = peer.until_terminal().await;
    assert_eq!(terminal["message_type"], "result_message", "{terminal}");
    assert_eq!(terminal["data"]["text"], "0 0 0 kept=1 agent=here");
}

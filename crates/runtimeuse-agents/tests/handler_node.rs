//! `--handler ./handler.mjs`: upstream-style `AgentHandler` modules run unchanged through
//! the Node adapter the runtime carries (examples/handlers/js/handler.mjs and modules
//! written by the tests), behind the whole runtime.

mod handler_support;

use std::path::PathBuf;

use handler_support::{Client, invocation, invoke, node_handler, of_type, repo, serve, terminal};
use runtimeuse_agents::handler::{HandlerError, HandlerProgram};
use serde_json::{Value, json};

fn example() -> PathBuf {
    repo().join("examples/handlers/js/handler.mjs")
}

/// Writes `source` as `name` in a fresh directory.
fn module(name: &str, source: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, source).unwrap();
    (dir, path)
}

#[tokio::test]
async fn text_structured_and_streamed_messages_come_through() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let frames = invoke(&server, &invocation("ECHO:hi from js", json!({}))).await;
    assert_eq!(
        terminal(&frames)["data"],
        json!({"type": "text", "text": "hi from js"})
    );

    let schema = json!({"type": "json_schema", "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}});
    let frames = invoke(
        &server,
        &invocation(
            r#"STRUCTURED:{"ok": true}"#,
            json!({"output_format_json_schema_str": schema.to_string()}),
        ),
    )
    .await;
    let last = terminal(&frames);
    assert_eq!(
        last["data"]["structured_output"],
        json!({"ok": true}),
        "{frames:?}"
    );
    assert_eq!(last["metadata"]["handler"], "js");

    let frames = invoke(&server, &invocation("STREAM:3", json!({}))).await;
    let streamed: Vec<&Value> = of_type(&frames, "assistant_message")
        .into_iter()
        .map(|f| &f["text_blocks"])
        .collect();
    assert_eq!(
        streamed,
        [
            &json!(["message 1 of 3"]),
            &json!(["message 2 of 3"]),
            &json!(["message 3 of 3"])
        ]
    );
    assert_eq!(terminal(&frames)["data"]["text"], "streamed 3 messages");
}

#[tokio::test]
async fn send_error_message_then_throw_is_one_error_with_the_metadata_given() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let frames = invoke(&server, &invocation("ERROR:bad things", json!({}))).await;
    assert_eq!(of_type(&frames, "error_message").len(), 1, "{frames:?}");
    let last = terminal(&frames);
    assert_eq!(last["error"], "bad things");
    assert_eq!(last["metadata"], json!({"source": "js_handler"}));
}

#[tokio::test]
async fn a_thrown_error_is_the_error_message_with_its_name() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let frames = invoke(&server, &invocation("THROW:kaput", json!({}))).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message");
    assert_eq!(last["error"], "kaput");
    assert_eq!(last["metadata"]["error_name"], "Error");
}

#[tokio::test]
async fn the_invocation_maps_onto_upstreams_fields() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let frames = invoke(
        &server,
        &invocation(
            "INVOCATION",
            json!({
                "agent_env": {"HANDLER_TEST_VAR": "v1"},
                "secrets_to_redact": ["opensesame"],
            }),
        ),
    )
    .await;
    let text = terminal(&frames)["data"]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let seen: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seen["systemPrompt"], "You are a test.");
    assert_eq!(seen["model"], "test-model");
    assert_eq!(seen["outputFormat"], Value::Null);
    assert_eq!(seen["secrets"], json!(["[REDACTED]"]));
    assert_eq!(seen["envValue"], "v1");
    assert_eq!(seen["processEnvValue"], "v1");
    assert_eq!(seen["hasSignal"], true);
}

#[tokio::test]
async fn console_log_goes_to_stderr_not_into_the_protocol() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let frames = invoke(&server, &invocation("LOG:{not a protocol line", json!({}))).await;
    assert_eq!(terminal(&frames)["data"]["text"], "logged", "{frames:?}");
}

#[tokio::test]
async fn run_command_has_the_runtime_run_it() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let frames = invoke(&server, &invocation("RUN:printf js-ran", json!({}))).await;
    let outputs = of_type(&frames, "command_output_message");
    assert_eq!(outputs[0]["text"], "js-ran", "{frames:?}");
    assert_eq!(terminal(&frames)["data"]["text"], "exit=0 stdout=js-ran");
}

#[tokio::test]
async fn cancel_aborts_the_signal_and_the_session_goes_on() {
    let server = serve(node_handler(&example()).await, |_| {}).await;
    let mut client = Client::connect(&server).await;
    client.send(&invocation("SLOW:60000", json!({}))).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    client
        .send(&json!({"message_type": "cancel_message"}))
        .await;
    let frames = client.until_terminal().await;
    assert_eq!(terminal(&frames)["error"], "Request cancelled");
    let frames = client.request(&invocation("ECHO:after", json!({}))).await;
    assert_eq!(terminal(&frames)["data"]["text"], "after");
}

#[tokio::test]
async fn a_default_export_and_a_commonjs_module_both_load() {
    let (_dir, path) = module(
        "default.mjs",
        "export default { async run(inv) { return { type: 'text', text: 'default:' + inv.userPrompt }; } };",
    );
    let server = serve(node_handler(&path).await, |_| {}).await;
    let frames = invoke(&server, &invocation("x", json!({}))).await;
    assert_eq!(terminal(&frames)["data"]["text"], "default:x");

    let (_dir, path) = module(
        "common.cjs",
        "module.exports = { handler: { run: async (inv) => ({ type: 'text', text: 'cjs:' + inv.model }) } };",
    );
    let server = serve(node_handler(&path).await, |_| {}).await;
    let frames = invoke(&server, &invocation("x", json!({}))).await;
    assert_eq!(terminal(&frames)["data"]["text"], "cjs:test-model");
}

#[tokio::test]
async fn a_module_without_a_handler_is_a_clear_error() {
    let (_dir, path) = module("nothing.mjs", "export const notAHandler = 1;");
    let server = serve(node_handler(&path).await, |_| {}).await;
    let frames = invoke(&server, &invocation("x", json!({}))).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("must export an AgentHandler"), "{error}");
}

#[tokio::test]
async fn a_module_that_fails_to_load_reports_why() {
    let (_dir, path) = module("broken.mjs", "export const handler = {;");
    let server = serve(node_handler(&path).await, |_| {}).await;
    let frames = invoke(&server, &invocation("x", json!({}))).await;
    let last = terminal(&frames);
    assert_eq!(last["message_type"], "error_message");
    assert_eq!(last["metadata"]["error_name"], "SyntaxError", "{last}");
}

#[tokio::test]
async fn typescript_runs_where_node_strips_types_and_is_refused_clearly_elsewhere() {
    let (_dir, path) = module(
        "typed.ts",
        "export const handler = { async run(inv: { userPrompt: string }): Promise<{ type: 'text'; text: string }> { return { type: 'text', text: 'ts:' + inv.userPrompt }; } };",
    );
    let resolved = HandlerProgram::resolve(
        path.to_str().unwrap(),
        &[],
        "node",
        std::env::var("PATH").ok().as_deref(),
    )
    .await;
    match resolved {
        Ok(program) => {
            let server = serve(program, |_| {}).await;
            let frames = invoke(&server, &invocation("y", json!({}))).await;
            assert_eq!(terminal(&frames)["data"]["text"], "ts:y", "{frames:?}");
        }
        Err(error @ HandlerError::TypeScriptUnsupported { .. }) => {
            assert!(error.to_string().contains("compile it to .js"), "{error}");
        }
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[tokio::test]
async fn a_missing_module_is_refused_at_start_up() {
    let error = HandlerProgram::resolve("/nonexistent/handler.js", &[], "node", Some("/usr/bin"))
        .await
        .unwrap_err();
    assert!(matches!(error, HandlerError::ModuleNotFound(_)), "{error}");
}

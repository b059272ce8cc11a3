//! Wire-level behaviour of a session: bad frames, unknown types, nulls, one request at a
//! time, exactly one terminal, end_session, many sessions, health.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Peer, command_execution, invocation, is_terminal, start_runtime};
use runtimeuse_agents::UnavailableAgent;
use serde_json::json;

#[tokio::test]
async fn malformed_json_gets_error_and_connection_stays_usable() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send_raw("{not json").await;
    let error = peer.recv().await;
    assert_eq!(error["message_type"], "error_message");
    assert!(
        error["error"].as_str().unwrap().contains("invalid JSON"),
        "{error}"
    );
    assert!(error["metadata"].is_object());

    peer.send(invocation("ECHO:still here")).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(
        result["data"],
        json!({"type": "text", "text": "still here"})
    );
}

#[tokio::test]
async fn missing_required_field_names_the_field() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(
        json!({"message_type": "invocation_message", "user_prompt": "x", "system_prompt": "s"}),
    )
    .await;
    let error = peer.recv().await;
    assert_eq!(error["message_type"], "error_message");
    let text = error["error"].as_str().unwrap();
    assert!(
        text.contains("invocation_message") && text.contains("model"),
        "{text}"
    );

    peer.send(json!({"message_type": "command_execution_message", "commands": null}))
        .await;
    let error = peer.recv().await;
    assert!(
        error["error"].as_str().unwrap().contains("commands"),
        "{error}"
    );

    peer.send_raw("[1,2]").await;
    assert!(
        peer.recv().await["error"]
            .as_str()
            .unwrap()
            .contains("object")
    );
    peer.send(json!({"no_type": 1})).await;
    assert!(
        peer.recv().await["error"]
            .as_str()
            .unwrap()
            .contains("message_type")
    );
}

#[tokio::test]
async fn unknown_message_type_is_ignored() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(json!({"message_type": "from_the_future", "x": 1}))
        .await;
    peer.send(invocation("ECHO:after unknown")).await;
    let (before, result) = peer.until_terminal().await;
    assert!(
        before.is_empty(),
        "unknown type must not be answered: {before:?}"
    );
    assert_eq!(result["data"]["text"], "after unknown");
}

#[tokio::test]
async fn omitted_optional_fields_and_unknown_fields_are_accepted() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(json!({
        "message_type": "invocation_message",
        "system_prompt": "s", "user_prompt": "plain prompt", "model": "m",
        "secrets_to_redact": null, "future_field": {"a": 1}
    }))
    .await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["message_type"], "result_message");
    assert_eq!(result["data"]["text"], "plain prompt");
    assert!(result["metadata"].is_object());
}

#[tokio::test]
async fn second_request_while_one_is_in_flight_is_refused() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(invocation("SLOW:800")).await;
    peer.send(invocation("ECHO:too early")).await;
    let refusal = peer.recv().await;
    assert_eq!(refusal["message_type"], "error_message");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("already in flight"),
        "{refusal}"
    );
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["text"], "done");
}

#[tokio::test]
async fn each_request_gets_exactly_one_terminal() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let requests = [
        invocation("ECHO:a"),
        invocation("ERROR:b"),
        command_execution(&["true", "false", "echo never"]),
        invocation("STREAM:2"),
    ];
    for request in requests {
        peer.send(request).await;
        peer.until_terminal().await;
    }
    peer.send(json!({"message_type": "end_session_message"}))
        .await;
    let rest = peer.until_closed().await;
    assert!(
        rest.iter().all(|m| !is_terminal(m)),
        "extra terminal: {rest:?}"
    );
    assert_eq!(
        rest.last().unwrap()["message_type"],
        "end_session_confirm_message"
    );
}

#[tokio::test]
async fn end_session_is_confirmed_then_the_socket_closes() {
    let runtime = start_runtime(|_| {}).await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(json!({"message_type": "end_session_message"}))
        .await;
    let all = peer.until_closed().await;
    assert_eq!(
        all,
        vec![json!({"message_type": "end_session_confirm_message"})]
    );
}

#[tokio::test]
async fn many_connections_are_served_at_once_each_its_own_session() {
    let runtime = start_runtime(|_| {}).await;
    let url = runtime.ws_url();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut peer = Peer::connect(&url).await;
                peer.send(invocation("SLOW:300")).await;
                let (_, slow) = peer.until_terminal().await;
                peer.send(invocation(&format!("ECHO:peer {i}"))).await;
                let (_, result) = peer.until_terminal().await;
                (slow["data"]["text"].clone(), result["data"]["text"].clone())
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for (i, task) in tasks.into_iter().enumerate() {
        let (slow, echoed) = task.await.unwrap();
        assert_eq!(slow, "done");
        assert_eq!(echoed, format!("peer {i}"));
    }
    // Eight 300 ms requests in parallel, not in series.
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn health_answers_without_auth_with_agent_and_open_sessions() {
    let runtime = start_runtime(|c| c.token = Some("sekrit".into())).await;
    let health = format!("{}/health", runtime.http_url());
    let body: serde_json::Value = reqwest::get(&health).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["agent"], "echo");
    assert_eq!(body["sessions"], 0);
    assert!(body["version"].is_string());

    let mut peer = Peer::connect(&format!("{}?token=sekrit", runtime.ws_url())).await;
    peer.send(invocation("ECHO:x")).await;
    peer.until_terminal().await;
    let body: serde_json::Value = reqwest::get(&health).await.unwrap().json().await.unwrap();
    assert_eq!(body["sessions"], 1);
}

#[tokio::test]
async fn an_agent_missing_from_the_build_fails_the_invocation_clearly() {
    let runtime = start_runtime(|c| {
        c.session.agent = Arc::new(UnavailableAgent::new("openai", "not built"));
    })
    .await;
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(invocation("hello")).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("openai agent is not available")
    );
    assert_eq!(error["metadata"]["error_name"], "AgentUnavailable");
    // The session survives for command executions.
    peer.send(command_execution(&["echo ok"])).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["stdout"], "ok\n");
}

//! The OpenAI agent when things go wrong: retries, provider errors, broken streams,
//! cancellation, the turn limit, missing credentials.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runtimeuse_agents::openai::{OpenAiAgent, OpenAiConfig};
use runtimeuse_server::agent::Agent;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use support::fake_openai::{FakeOpenAi, Scripted};
use support::harness::{KEY, config, context, env_for, request, run, run_with};
use support::responses::ResponseBuilder;

fn api_error(status: u16, kind: &str, code: Value, message: &str) -> Scripted {
    Scripted::Error {
        status,
        headers: Vec::new(),
        body: json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    }
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_delay_the_server_asks_for() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Error {
        status: 429,
        headers: vec![("retry-after", "1".into())],
        body: json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
    });
    fake.push(Scripted::Error {
        status: 429,
        headers: vec![("retry-after-ms", "200".into())],
        body: json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
    });
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message("Finally.")
            .completed(),
    ));
    let started = Instant::now();
    let done = run(&fake, "Hello", None).await;

    assert_eq!(done.text(), "Finally.");
    assert_eq!(fake.requests().len(), 3);
    // The configured backoff is 1 ms: only the headers explain the wait.
    assert!(
        started.elapsed() >= Duration::from_millis(1_200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        fake.requests()[2].body,
        fake.requests()[0].body,
        "the same request is resent"
    );
}

#[tokio::test]
async fn server_errors_exhaust_the_retries_and_report_status_type_and_message() {
    let fake = FakeOpenAi::start().await;
    for _ in 0..3 {
        fake.push(api_error(
            500,
            "server_error",
            Value::Null,
            "The server had an error while processing your request.",
        ));
    }
    let done = run(&fake, "Hello", None).await;

    assert_eq!(fake.requests().len(), 3, "attempts = 3");
    let error = done.error();
    assert_eq!(
        error.message,
        "OpenAI API error: status 500 (server_error): The server had an error while processing your request."
    );
    assert_eq!(error.metadata["status"], 500);
    assert_eq!(error.metadata["type"], "server_error");
    assert_eq!(error.metadata["code"], Value::Null);
    assert_eq!(error.metadata["error_name"], "OpenAIAPIError");
    assert_eq!(error.metadata["turns"], 1);
}

#[tokio::test]
async fn an_invalid_request_fails_at_once_without_retrying() {
    let fake = FakeOpenAi::start().await;
    fake.push(api_error(
        400,
        "invalid_request_error",
        json!("model_not_found"),
        "The requested model 'gpt-test' does not exist.",
    ));
    let done = run(&fake, "Hello", None).await;

    assert_eq!(fake.requests().len(), 1);
    let error = done.error();
    assert!(error.message.contains("400"), "{}", error.message);
    assert!(
        error.message.contains("invalid_request_error"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("does not exist"),
        "{}",
        error.message
    );
    assert_eq!(error.metadata["type"], "invalid_request_error");
    assert_eq!(error.metadata["code"], "model_not_found");
    assert!(!error.message.contains(KEY));
}

#[tokio::test]
async fn a_stream_that_ends_before_completion_is_an_error() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message("Half an answ")
            .unfinished(),
    ));
    let done = run(&fake, "Hello", None).await;

    let error = done.error();
    assert_eq!(error.metadata["error_name"], "OpenAIStreamError");
    assert!(
        error.message.contains("response.completed"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_failed_response_is_an_error_with_its_code() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1").failed("server_error", "Something broke."),
    ));
    let done = run(&fake, "Hello", None).await;

    let error = done.error();
    assert_eq!(error.metadata["error_name"], "ResponseFailed");
    assert_eq!(error.metadata["code"], "server_error");
    assert!(
        error.message.contains("Something broke."),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn cancel_mid_stream_returns_at_once_and_drops_the_connection() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::StreamThenHang(
        ResponseBuilder::new("resp_1")
            .message("Partial")
            .unfinished(),
    ));
    let agent = OpenAiAgent::new(config());
    let cancel = CancellationToken::new();
    let (ctx, mut frames) = context(cancel.clone());
    let task = tokio::spawn({
        let request = request(env_for(&fake), "Talk forever.", None);
        async move { agent.run(request, ctx).await }
    });
    fake.wait_for_requests(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished(), "the stream is held open");

    let cancelled_at = Instant::now();
    cancel.cancel();
    // The stream never ends by itself: any bound shows the cancel stopped it.
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the agent did not stop promptly")
        .unwrap();
    eprintln!("stopped {:?} after the cancel", cancelled_at.elapsed());
    let error = result.unwrap_err();
    assert_eq!(error.metadata["error_name"], "Cancelled");
    // The message that completed before the cancel was forwarded.
    let sent = frames.drain();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["text_blocks"], json!(["Partial"]));
    for _ in 0..100 {
        if fake.hanging_stream_dropped() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the HTTP stream was not dropped");
}

#[tokio::test]
async fn cancel_while_a_tool_command_runs_kills_it() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    let command = format!("sleep 2 && touch {}", marker.display());
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .shell_call("call_1", &command, None)
            .completed(),
    ));
    let agent = OpenAiAgent::new(config());
    let cancel = CancellationToken::new();
    let (ctx, _frames) = context(cancel.clone());
    let task = tokio::spawn({
        let request = request(env_for(&fake), "Sleep.", None);
        async move { agent.run(request, ctx).await }
    });
    fake.wait_for_requests(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the agent did not stop")
        .unwrap();
    assert_eq!(result.unwrap_err().metadata["error_name"], "Cancelled");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        !marker.exists(),
        "the command's process group was not killed"
    );
    assert_eq!(fake.requests().len(), 1, "no turn after the cancel");
}

#[tokio::test]
async fn max_turns_stops_a_model_that_keeps_calling_tools() {
    let fake = FakeOpenAi::start().await;
    for turn in 0..3 {
        fake.push(Scripted::Stream(
            ResponseBuilder::new(&format!("resp_{turn}"))
                .shell_call(&format!("call_{turn}"), "echo again", None)
                .completed(),
        ));
    }
    let agent = OpenAiAgent::new(OpenAiConfig {
        max_turns: 2,
        ..config()
    });
    let done = run_with(&agent, request(env_for(&fake), "Loop.", None)).await;

    let error = done.error();
    assert_eq!(error.message, "max turns (2) reached");
    assert_eq!(error.metadata["error_name"], "MaxTurnsExceeded");
    assert_eq!(error.metadata["max_turns"], 2);
    assert_eq!(error.metadata["turns"], 2);
    assert_eq!(error.metadata["usage"]["total_tokens"], 30);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_missing_api_key_fails_clearly_without_calling_the_api() {
    let fake = FakeOpenAi::start().await;
    let env = BTreeMap::from([("OPENAI_BASE_URL".to_owned(), fake.base_url())]);
    let done = run_with(&OpenAiAgent::new(config()), request(env, "Hello", None)).await;

    let error = done.error();
    assert_eq!(error.metadata["error_name"], "MissingApiKey");
    assert!(
        error.message.contains("OPENAI_API_KEY"),
        "{}",
        error.message
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn the_configured_base_url_is_used_when_the_environment_has_none() {
    let fake = FakeOpenAi::start().await;
    fake.push(Scripted::Stream(
        ResponseBuilder::new("resp_1")
            .message("Default URL.")
            .completed(),
    ));
    let agent = OpenAiAgent::new(OpenAiConfig {
        default_base_url: fake.base_url(),
        ..config()
    });
    let env = BTreeMap::from([("OPENAI_API_KEY".to_owned(), KEY.to_owned())]);
    let done = run_with(&agent, request(env, "Hello", None)).await;
    assert_eq!(done.text(), "Default URL.");
}

#[tokio::test]
async fn an_unreachable_server_is_a_connection_error_after_retries() {
    let env = BTreeMap::from([
        ("OPENAI_API_KEY".to_owned(), KEY.to_owned()),
        // Nothing listens on port 9 of the loopback.
        (
            "OPENAI_BASE_URL".to_owned(),
            "http://127.0.0.1:9/v1".to_owned(),
        ),
    ]);
    let done = run_with(&OpenAiAgent::new(config()), request(env, "Hello", None)).await;
    let error = done.error();
    assert_eq!(error.metadata["error_name"], "OpenAIConnectionError");
    assert!(!error.message.contains(KEY));
}

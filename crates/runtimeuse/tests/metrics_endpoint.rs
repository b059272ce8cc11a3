//! `GET /metrics`: requests driven through real sessions show up in the Prometheus text
//! format, read with a Prometheus text parser; the endpoint is behind the token.
//!
//! The metrics are process-wide, so one test drives everything and compares before/after.

mod common;

use std::collections::HashMap;

use common::{Peer, command_execution, invocation, start_runtime};
use prometheus_parse::{Scrape, Value as Sample};
use runtimeuse_testkit::blob_server::BlobServer;
use serde_json::{Value, json};

const TOKEN: &str = "metrics-t0ken";

/// `name{labels}` → value, for counters and gauges; `name_count{labels}` for histograms.
async fn scrape(base: &str) -> HashMap<String, f64> {
    let response = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.contains("text"), "{content_type}");
    let body = response.text().await.unwrap();
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parse /metrics");
    let mut out = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let key = format!("{}{{{}}}", sample.metric, labels.join(","));
        let value = match sample.value {
            Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => v,
            Sample::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Sample::Summary(_) => continue,
        };
        out.insert(key, value);
    }
    out
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

fn with_token(url: &str) -> String {
    format!("{url}?token={TOKEN}")
}

#[tokio::test]
async fn metrics_count_sessions_requests_bytes_artifacts_and_kills() {
    let files = BlobServer::start().await;
    let runtime = start_runtime(|c| c.token = Some(TOKEN.into())).await;
    let base = runtime.http_url();
    let before = scrape(&base).await;

    let mut peer = Peer::connect(&with_token(&runtime.ws_url())).await;
    // Two command executions that finish (one command fails: still a result).
    peer.send(command_execution(&["echo one"])).await;
    peer.until_terminal().await;
    peer.send(command_execution(&["exit 3"])).await;
    peer.until_terminal().await;
    // An invocation that writes an artifact, uploaded to the loopback file host.
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("out");
    let target = artifacts.join("report.txt");
    let mut message = invocation(&format!("WRITE_FILE:{} numbers", target.display()));
    message["artifacts_dirs"] = json!([artifacts]);
    peer.send(message).await;
    loop {
        let message: Value = peer.recv().await;
        if message["message_type"] == "artifact_upload_request_message" {
            peer.send(json!({
                "message_type": "artifact_upload_response_message",
                "filename": message["filename"],
                "filepath": message["filepath"],
                "presigned_url": files.url("bucket/report.txt"),
                "content_type": "text/plain",
            }))
            .await;
        }
        if common::is_terminal(&message) {
            assert_eq!(message["message_type"], "result_message", "{message}");
            break;
        }
    }
    // A command killed on cancel.
    peer.send(command_execution(&["echo started; sleep 300"]))
        .await;
    let first = peer.recv().await;
    assert_eq!(first["message_type"], "command_output_message", "{first}");
    peer.send(json!({"message_type": "cancel_message"})).await;
    let (_, cancelled) = peer.until_terminal().await;
    assert_eq!(cancelled["error"], runtimeuse_server::CANCELLED);
    // A request that fails.
    let mut failing = command_execution(&["true"]);
    failing["pre_execution_downloadables"] = json!([{
        "download_url": files.url("missing.txt"),
        "working_dir": dir.path(),
    }]);
    files.serve_status("missing.txt", 404);
    peer.send(failing).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message");

    let during = scrape(&base).await;
    assert_eq!(delta(&before, &during, "runtimeuse_sessions_open{}"), 1.0);

    peer.send(json!({"message_type": "end_session_message"}))
        .await;
    peer.until_closed().await;
    // The session's end is counted once its task finishes, just after the close.
    let mut after = scrape(&base).await;
    for _ in 0..200 {
        if delta(&before, &after, "runtimeuse_sessions_open{}") == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = scrape(&base).await;
    }

    let d = |key: &str| delta(&before, &after, key);
    assert_eq!(d("runtimeuse_sessions_open{}"), 0.0, "{after:?}");
    assert_eq!(d("runtimeuse_sessions_total{}"), 1.0, "{after:?}");
    assert_eq!(
        d("runtimeuse_requests_total{kind=command_execution,outcome=ok}"),
        2.0,
        "{after:?}"
    );
    assert_eq!(
        d("runtimeuse_requests_total{kind=command_execution,outcome=cancelled}"),
        1.0
    );
    assert_eq!(
        d("runtimeuse_requests_total{kind=command_execution,outcome=error}"),
        1.0
    );
    assert_eq!(
        d("runtimeuse_requests_total{kind=invocation,outcome=ok}"),
        1.0
    );
    assert_eq!(
        d("runtimeuse_request_duration_seconds_count{kind=command_execution}"),
        4.0,
        "{after:?}"
    );
    assert_eq!(d("runtimeuse_artifacts_total{outcome=uploaded}"), 1.0);
    assert_eq!(d("runtimeuse_commands_killed_total{reason=cancelled}"), 1.0);
    assert!(d("runtimeuse_bytes_streamed_total{}") > 200.0, "{after:?}");
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_set() {
    let runtime = start_runtime(|c| c.token = Some(TOKEN.into())).await;
    let url = format!("{}/metrics", runtime.http_url());
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let wrong = http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let query = http.get(with_token(&url)).send().await.unwrap();
    assert_eq!(query.status(), 200);
    assert!(
        query
            .text()
            .await
            .unwrap()
            .contains("runtimeuse_sessions_open")
    );

    let open = start_runtime(|_| {}).await;
    let plain = http
        .get(format!("{}/metrics", open.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
}

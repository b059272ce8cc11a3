//! `GET /metrics` counts what happens to durable (resumable) sessions: opened, resumed,
//! taken over, refused, ended, expired, and how many are detached now. Its own test binary,
//! so that no other test moves these process-wide counters meanwhile.

mod binary;
mod common;
mod resume_support;

use std::collections::HashMap;
use std::time::Duration;

use prometheus_parse::{Scrape, Value as Sample};
use resume_support::{DurablePeer, Frame, bogus_id, durable_runtime};
use serde_json::json;

async fn scrape(ws_url: &str) -> HashMap<String, f64> {
    let base = ws_url.trim_end_matches('/').replacen("ws://", "http://", 1);
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parse /metrics");
    scrape
        .samples
        .into_iter()
        .filter_map(|sample| {
            let value = match sample.value {
                Sample::Counter(v) | Sample::Gauge(v) | Sample::Untyped(v) => v,
                _ => return None,
            };
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            Some((format!("{}{{{}}}", sample.metric, labels.join(",")), value))
        })
        .collect()
}

fn event(metrics: &HashMap<String, f64>, event: &str) -> f64 {
    metrics
        .get(&format!(
            "runtimeuse_durable_sessions_total{{event={event}}}"
        ))
        .copied()
        .unwrap_or(0.0)
}

fn detached(metrics: &HashMap<String, f64>) -> f64 {
    metrics
        .get("runtimeuse_durable_sessions_detached{}")
        .copied()
        .unwrap_or(0.0)
}

/// Polls until `check` holds (the runtime notices a dropped socket asynchronously).
async fn eventually(url: &str, what: &str, check: impl Fn(&HashMap<String, f64>) -> bool) {
    for _ in 0..200 {
        let metrics = scrape(url).await;
        if check(&metrics) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", scrape(url).await);
}

#[tokio::test]
async fn durable_session_events_and_the_detached_gauge_are_counted() {
    let runtime = durable_runtime(1.0, 1 << 20, &[]);
    let url = runtime.url.clone();

    let (first, opened) = DurablePeer::open(&url).await;
    eventually(&url, "opened", |m| {
        event(m, "opened") == 1.0 && detached(m) == 0.0
    })
    .await;
    drop(first);
    eventually(&url, "detached after the cut", |m| detached(m) == 1.0).await;

    let (_second, _) = DurablePeer::resumed(&url, &opened.id, &opened.key, 0).await;
    eventually(&url, "resumed", |m| {
        event(m, "resumed") == 1.0 && detached(m) == 0.0
    })
    .await;
    let (mut third, _) = DurablePeer::resumed(&url, &opened.id, &opened.key, 0).await;
    eventually(&url, "taken over", |m| event(m, "taken_over") == 1.0).await;

    let (mut refused, first_frame) = DurablePeer::resume(&url, &bogus_id(), "nokey", 0).await;
    assert!(matches!(first_frame, Frame::Message(ref m) if m["message_type"] == "error_message"));
    let _ = refused.try_next(Duration::from_secs(2)).await;
    eventually(&url, "refused", |m| event(m, "refused") == 1.0).await;

    // A second session, left detached past its 1 s grace, expires.
    let (lost, _) = DurablePeer::open(&url).await;
    drop(lost);
    eventually(&url, "expired", |m| {
        event(m, "expired") == 1.0 && detached(m) == 0.0
    })
    .await;

    // The first one ends with end_session, acknowledged.
    third
        .send_seq(json!({"message_type": "end_session_message"}), 1)
        .await;
    loop {
        match third.next().await {
            Frame::Message(m) if m["message_type"] == "end_session_confirm_message" => {
                third.ack(resume_support::seq_of(&m)).await;
                break;
            }
            Frame::Message(_) => {}
            Frame::Closed(close) => panic!("closed before the confirm: {close:?}"),
        }
    }
    eventually(&url, "ended", |m| {
        event(m, "ended") == 1.0 && detached(m) == 0.0
    })
    .await;
    assert_eq!(event(&scrape(&url).await, "opened"), 2.0);
}

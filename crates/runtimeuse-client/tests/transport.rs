//! Custom transports: the request state machine over a `TransportLink` instead of a
//! WebSocket, with the "runtime" on the other end of the channels.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{assistant, options, text_result};
use futures_util::FutureExt;
use runtimeuse_client::{Error, RuntimeUseClient, Transport, TransportLink};
use serde_json::Value;
use tokio::sync::mpsc;

/// A transport whose every link is served by `serve(inbound_tx, outbound_rx)` in a task;
/// counts the links it opened.
fn transport<F, Fut>(opened: Arc<AtomicUsize>, serve: F) -> Transport
where
    F: Fn(mpsc::UnboundedSender<String>, mpsc::UnboundedReceiver<String>) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    Arc::new(move || {
        opened.fetch_add(1, Ordering::SeqCst);
        let (to_client, inbound) = mpsc::unbounded_channel();
        let (outbound, from_client) = mpsc::unbounded_channel();
        tokio::spawn(serve(to_client, from_client));
        async move { Ok(TransportLink::new(inbound, outbound)) }.boxed()
    })
}

fn message_type(frame: &str) -> String {
    serde_json::from_str::<Value>(frame).expect("a JSON frame")["message_type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn one_shot_calls_and_sessions_run_over_the_link() {
    let opened = Arc::new(AtomicUsize::new(0));
    let client = RuntimeUseClient::builder("ws://via-transport")
        .transport(transport(
            Arc::clone(&opened),
            |to_client, mut from_client| async move {
                while let Some(frame) = from_client.recv().await {
                    match message_type(&frame).as_str() {
                        "invocation_message" => {
                            let _ = to_client.send(assistant("working").to_string());
                            let _ = to_client.send(text_result("over the link").to_string());
                        }
                        "end_session_message" => {
                            let confirm = r#"{"message_type":"end_session_confirm_message"}"#;
                            let _ = to_client.send(confirm.to_owned());
                        }
                        _ => {}
                    }
                }
            },
        ))
        .build()
        .expect("a valid client");
    let result = client.query("hi", options()).await.expect("a result");
    assert_eq!(result.text(), Some("over the link"));
    let session = client.session().await.expect("a session");
    for _ in 0..3 {
        let result = session.query("again", options()).await.expect("a result");
        assert_eq!(result.text(), Some("over the link"));
    }
    session.close().await.expect("a confirmed close");
    assert_eq!(opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_link_closed_by_the_other_side_is_a_closed_connection() {
    let client = RuntimeUseClient::builder("ws://via-transport")
        .transport(transport(
            Arc::default(),
            |to_client, mut from_client| async move {
                let _ = from_client.recv().await;
                drop(to_client); // the "runtime" goes away mid-request
            },
        ))
        .build()
        .expect("a valid client");
    let error = tokio::time::timeout(Duration::from_secs(30), client.query("hi", options()))
        .await
        .expect("no hang");
    assert!(
        matches!(error, Err(Error::ConnectionClosed { .. })),
        "{error:?}"
    );
}

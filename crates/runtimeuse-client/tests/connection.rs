//! Dialling: auth header, extra headers, connect failures, builder validation.

mod common;

use common::{FakeRuntime, options, text_result};
use runtimeuse_client::{Error, RuntimeUseClient};

async fn answering_fake() -> FakeRuntime {
    FakeRuntime::start(|mut conn| async move {
        conn.expect("invocation_message").await;
        conn.send(text_result("ok")).await;
        conn.drain().await;
    })
    .await
}

#[tokio::test]
async fn auth_token_is_sent_as_a_bearer_header() {
    let fake = answering_fake().await;
    let client = RuntimeUseClient::builder(&fake.url)
        .auth_token("t0ken")
        .header("x-sandbox-id", "sbx-1")
        .build()
        .unwrap();

    client.query("p", options()).await.unwrap();

    let headers = fake.log.headers.lock().unwrap()[0].clone();
    assert_eq!(headers["authorization"], "Bearer t0ken");
    assert_eq!(headers["x-sandbox-id"], "sbx-1");
}

#[tokio::test]
async fn auth_token_does_not_leak_into_debug_output() {
    let client = RuntimeUseClient::builder("ws://127.0.0.1:8080")
        .auth_token("t0ken")
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains("t0ken"));
}

#[tokio::test]
async fn connect_failure_carries_the_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);

    let error = RuntimeUseClient::new(&url)
        .query("p", options())
        .await
        .unwrap_err();

    let Error::Connect { url: failed, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*failed, url);
    assert!(error.to_string().contains(&url));
}

#[tokio::test]
async fn connect_timeout_is_a_connect_error() {
    // Accepts TCP but never answers the WebSocket upgrade.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = RuntimeUseClient::builder(&url)
        .connect_timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();

    let error = client.session().await.unwrap_err();

    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
}

#[test]
fn builder_rejects_bad_urls_and_headers() {
    assert!(matches!(
        RuntimeUseClient::builder("http://127.0.0.1:8080").build(),
        Err(Error::InvalidOptions(_))
    ));
    assert!(matches!(
        RuntimeUseClient::builder("not a url").build(),
        Err(Error::InvalidOptions(_))
    ));
    assert!(matches!(
        RuntimeUseClient::builder("ws://h")
            .header("bad header", "v")
            .build(),
        Err(Error::InvalidOptions(_))
    ));
    assert!(matches!(
        RuntimeUseClient::builder("ws://h")
            .header("x", "line\nbreak")
            .build(),
        Err(Error::InvalidOptions(_))
    ));
}

#[tokio::test]
async fn credentials_in_the_url_stay_out_of_connect_errors() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("ws://user:PASSWORD-9@{address}/?token=SECRET-TOKEN-123&x=1");

    let error = RuntimeUseClient::new(&url)
        .query("p", options())
        .await
        .unwrap_err();

    let Error::Connect { url: shown, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*shown, format!("ws://***@{address}/?token=***&x=***"));
    let text = format!("{error} {error:?}");
    assert!(!text.contains("SECRET-TOKEN-123"), "{text}");
    assert!(!text.contains("PASSWORD-9"), "{text}");
}

#[test]
fn credentials_in_the_url_stay_out_of_builder_errors_and_debug_output() {
    let error = RuntimeUseClient::builder("http://h/?token=SECRET-TOKEN-123")
        .build()
        .unwrap_err();
    assert!(!error.to_string().contains("SECRET-TOKEN-123"), "{error}");
    assert!(error.to_string().contains("token=***"), "{error}");

    let builder = RuntimeUseClient::builder("ws://h/?token=SECRET-TOKEN-123").auth_token("t0ken");
    let client = builder.clone().build().unwrap();
    for debug in [format!("{builder:?}"), format!("{client:?}")] {
        assert!(!debug.contains("SECRET-TOKEN-123"), "{debug}");
        assert!(!debug.contains("t0ken"), "{debug}");
    }
    assert_eq!(client.url(), "ws://h/?token=SECRET-TOKEN-123");
}

#[tokio::test]
async fn a_token_in_the_url_query_is_sent_as_given() {
    let fake = answering_fake().await;
    let url = format!("{}/?token=t0ken", fake.url);

    RuntimeUseClient::new(&url)
        .query("p", options())
        .await
        .unwrap();

    assert_eq!(fake.connections(), 1);
}

//! The handler's `setsid` escape dies on cancel and on disconnect when the process
//! primitive contains trees by the subreaper sweep instead of a cgroup (as where no
//! cgroup v2 can be made). Its own test binary: the containment choice is process-wide.

mod handler_support;

use handler_support::{Client, alive, probe_handler, serve, start_escape, terminal, wait_gone};
use runtimeuse_server::process::{Preference, set_containment};
use serde_json::json;

#[tokio::test]
async fn cancel_and_disconnect_kill_a_setsid_escape_under_the_subreaper_sweep() {
    set_containment(Preference::Subreaper);
    let dir = tempfile::tempdir().unwrap();
    for phase in ["cancel", "disconnect"] {
        std::fs::create_dir(dir.path().join(phase)).unwrap();
    }
    let server = serve(probe_handler(&[]).await, |_| {}).await;

    let mut client = Client::connect(&server).await;
    let (handler, escaped) = start_escape(&mut client, &dir.path().join("cancel")).await;
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

    let mut client = Client::connect(&server).await;
    let (handler, escaped) = start_escape(&mut client, &dir.path().join("disconnect")).await;
    drop(client);
    assert!(
        wait_gone(&[handler, escaped]).await,
        "survived the disconnect: handler alive={} escaped alive={}",
        alive(handler),
        alive(escaped)
    );
}

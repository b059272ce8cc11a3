//! `ClientBuilder::resume` against the real runtime (in-process, echo agent) through a
//! proxy that cuts the connection: calls go on across cuts, every message arrives once and
//! in order, and the reconnections are counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtimeuse_agents::EchoAgent;
use runtimeuse_client::{Command, Error, ExecuteCommandsOptions, QueryOptions, RuntimeUseClient};
use runtimeuse_server::server::{Server, ServerConfig, ServerHandle};
use runtimeuse_server::session::SessionConfig;
use runtimeuse_testkit::cut_proxy::{CutPlan, CutProxy, Direction};

/// Every call's own limit: a broken resume fails the test instead of hanging it.
const CALL_LIMIT: Duration = Duration::from_secs(120);

async fn start_runtime(grace: Duration) -> ServerHandle {
    let mut session = SessionConfig::new(Arc::new(EchoAgent));
    session.heartbeat_interval = Duration::from_secs(30);
    session.commands.kill_grace = Duration::from_millis(500);
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), session);
    config.resume.grace = grace;
    Server::bind(config).await.unwrap().spawn()
}

fn client(url: &str) -> RuntimeUseClient {
    RuntimeUseClient::builder(url).resume(true).build().unwrap()
}

fn options() -> QueryOptions {
    QueryOptions::new("You are a test.", "echo-model").timeout(CALL_LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_query_survives_cuts_with_every_message_once_in_order() {
    const COUNT: usize = 3000;
    let runtime = start_runtime(Duration::from_secs(60)).await;
    let proxy = Arc::new(CutProxy::to_url(&runtime.ws_url()).await.unwrap());
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (sink, cutter) = (Arc::clone(&seen), Arc::clone(&proxy));
    let options = options().on_assistant_message(move |message| {
        let (sink, cutter) = (Arc::clone(&sink), Arc::clone(&cutter));
        async move {
            let mut seen = sink.lock().unwrap();
            seen.extend(message.text_blocks);
            // Two cuts in mid-stream, from inside the callback: the socket dies while
            // the runtime is still sending.
            if seen.len() == 500 || seen.len() == 1500 {
                cutter.cut();
            }
        }
    });

    let result = client(&proxy.ws_url())
        .query(format!("STREAM:{COUNT}"), options)
        .await
        .unwrap();

    assert_eq!(
        result.text(),
        Some(format!("streamed {COUNT} messages").as_str())
    );
    let seen = seen.lock().unwrap();
    let expected: Vec<String> = (1..=COUNT)
        .map(|i| format!("message {i} of {COUNT}"))
        .collect();
    assert_eq!(seen.len(), COUNT, "each message exactly once");
    assert!(*seen == expected, "in order");
    assert_eq!(result.metadata["reconnects"], 2);
    assert_eq!(
        result.metadata["agent"], "echo",
        "the runtime's metadata is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_output_is_byte_exact_across_random_cuts() {
    let runtime = start_runtime(Duration::from_secs(60)).await;
    let proxy = CutProxy::to_url(&runtime.ws_url()).await.unwrap();
    // Three connections cut after a random 64-512 KiB towards the client.
    proxy.set_plan(Some(
        CutPlan::random(17, 64 * 1024..=512 * 1024)
            .direction(Direction::ToClient)
            .times(3),
    ));
    let output = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&output);
    let options = ExecuteCommandsOptions::new()
        .timeout(CALL_LIMIT)
        .on_command_output(move |chunk| {
            let sink = Arc::clone(&sink);
            async move {
                if chunk.command.contains("seq") {
                    sink.lock().unwrap().push_str(&chunk.text);
                }
            }
        });

    let result = client(&proxy.ws_url())
        .execute_commands(vec![Command::new("seq 1 300000")], options)
        .await
        .unwrap();

    assert!(result.success());
    let expected: String = (1..=300_000).map(|i| format!("{i}\n")).collect();
    let output = output.lock().unwrap();
    assert_eq!(output.len(), expected.len());
    assert!(*output == expected, "byte-exact output");
    let reconnects = result.metadata["reconnects"].as_u64().unwrap();
    assert!(reconnects >= 1, "the plan cut at least once");
    assert_eq!(reconnects, proxy.cuts(), "one reconnect per cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_across_a_cut_between_calls_and_closes_cleanly() {
    let runtime = start_runtime(Duration::from_secs(60)).await;
    let proxy = CutProxy::to_url(&runtime.ws_url()).await.unwrap();
    let session = client(&proxy.ws_url()).session().await.unwrap();

    let first = session.query("ECHO:one", options()).await.unwrap();
    assert_eq!(first.text(), Some("one"));
    proxy.cut();
    let second = session.query("ECHO:two", options()).await.unwrap();
    assert_eq!(second.text(), Some("two"));
    // The resume happens before the call or during it, depending on when the drop is seen.
    let reconnects = second.metadata["reconnects"].as_u64().unwrap();
    assert!(reconnects <= 1, "{reconnects}");
    session.close().await.unwrap();
    assert!(proxy.connections() >= 2, "the session reconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_runtime_ends_the_call_when_the_grace_period_is_over() {
    let grace = Duration::from_secs(2);
    let runtime = start_runtime(grace).await;
    let proxy = Arc::new(CutProxy::to_url(&runtime.ws_url()).await.unwrap());
    let cutter = Arc::clone(&proxy);
    let options = options().on_assistant_message(move |_| {
        let cutter = Arc::clone(&cutter);
        async move {
            cutter.set_refusing(true);
            cutter.cut();
        }
    });
    let started = Instant::now();

    let error = client(&proxy.ws_url())
        .query("STREAM:100000", options)
        .await
        .unwrap_err();

    let elapsed = started.elapsed();
    let Error::ConnectionClosed { reason } = &error else {
        panic!("{error:?}");
    };
    assert!(reason.contains("grace period"), "{reason}");
    assert!(elapsed >= grace, "{elapsed:?}");
    assert!(elapsed < CALL_LIMIT, "{elapsed:?}");
    let refused = proxy.stats().refused;
    // Backoff from 100 ms doubling: a handful of attempts in 2 s, not a tight loop.
    assert!((2..=30).contains(&refused), "{refused} attempts");
}

//! The Rust client with `resume(true)` through a cutting TCP proxy, around the exchanges
//! where a lost or doubled frame would show: the artifact upload handshake, a cancel,
//! end_session; and the ends of the guarantee: grace expiry kills the tree, and without
//! the opt-in a cut cancels the request as before.

mod binary;
mod common;
mod resume_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resume_support::{durable_runtime, resume_client};
use runtimeuse_client::{
    ArtifactUploadResult, Command, ExecuteCommandsOptions, QueryOptions, RuntimeUseClient,
};
use runtimeuse_testkit::{BlobServer, CutProxy, Direction};

const BUFFER: u64 = 4 * 1024 * 1024;

fn options() -> QueryOptions {
    QueryOptions::new("You are a test.", "echo-model").timeout(Duration::from_secs(90))
}

/// Where the proxy cuts, relative to the client's answer to an upload request.
#[derive(Debug, Clone, Copy)]
enum AroundAnswer {
    /// While the callback runs: the answer is sent on the next connection.
    Before,
    /// After the answer's first byte.
    During,
    /// After the answer passed, on the runtime's next frame.
    After,
}

#[tokio::test]
async fn the_artifact_handshake_survives_cuts_around_the_answer_and_uploads_once() {
    let files = BlobServer::start().await;
    let runtime = durable_runtime(60.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let client = resume_client(&proxy.ws_url());
    let session = client.session().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (round, mode) in [
        AroundAnswer::Before,
        AroundAnswer::During,
        AroundAnswer::After,
    ]
    .into_iter()
    .enumerate()
    {
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let (asked_in, cutter, base) = (Arc::clone(&asked), proxy.clone(), files.url("up"));
        let options = options()
            .artifacts_dirs([out.display().to_string()])
            .on_artifact_upload_request(move |request| {
                asked_in.lock().unwrap().push(request.filename.clone());
                match mode {
                    AroundAnswer::Before => {
                        cutter.cut();
                    }
                    AroundAnswer::During => {
                        cutter.cut_live_after(Direction::ToTarget, 1);
                    }
                    AroundAnswer::After => {
                        cutter.cut_live_after(Direction::ToClient, 1);
                    }
                }
                let url = format!("{base}/{}", request.filename);
                async move { ArtifactUploadResult::new(url, "text/plain") }
            });
        let path = out.join(format!("round{round}.txt"));
        let content = format!("content of round {round} ({mode:?})");
        let cuts_before = proxy.cuts();
        let result = session
            .query(format!("WRITE_FILE:{} {content}", path.display()), options)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e:?}"));
        assert_eq!(
            result.text(),
            Some(format!("wrote {}", path.display()).as_str()),
            "{mode:?}"
        );
        assert_eq!(
            *asked.lock().unwrap(),
            vec![format!("round{round}.txt")],
            "{mode:?}: one upload request, seen once"
        );
        let name = format!("up/round{round}.txt");
        let uploads = files
            .wait_for_uploads(&name, 1, Duration::from_secs(10))
            .await;
        assert_eq!(uploads.len(), 1, "{mode:?}: uploaded once");
        assert_eq!(
            uploads[0].body.as_deref(),
            Some(content.as_bytes()),
            "{mode:?}"
        );
        assert_eq!(files.put_attempts(&name), 1, "{mode:?}");
        assert!(proxy.cuts() > cuts_before, "{mode:?}: the proxy cut");
        assert!(
            result.metadata["reconnects"].as_u64() >= Some(1),
            "{mode:?}: {:?}",
            result.metadata
        );
    }
    session.close().await.unwrap();
    // Late announcements after the close would show up as extra uploads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        files.uploaded_paths(),
        vec!["up/round0.txt", "up/round1.txt", "up/round2.txt"]
    );
}

/// Where the proxy cuts, relative to the cancel.
#[derive(Debug, Clone, Copy)]
enum AroundCancel {
    /// The link is down when the abort is issued.
    CutThenAbort,
    /// Only the cancel's first byte gets through.
    DuringCancel,
    /// Right after the abort is issued.
    AbortThenCut,
}

#[tokio::test]
async fn a_cancel_right_around_a_cut_takes_effect_once() {
    let runtime = durable_runtime(60.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let client = resume_client(&proxy.ws_url());
    let session = client.session().await.unwrap();
    for mode in [
        AroundCancel::CutThenAbort,
        AroundCancel::DuringCancel,
        AroundCancel::AbortThenCut,
    ] {
        let (abort, cutter) = (session.abort_handle(), proxy.clone());
        let trigger = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match mode {
                AroundCancel::CutThenAbort => {
                    cutter.cut();
                    abort.abort();
                }
                AroundCancel::DuringCancel => {
                    cutter.cut_live_after(Direction::ToTarget, 1);
                    abort.abort();
                }
                AroundCancel::AbortThenCut => {
                    abort.abort();
                    cutter.cut();
                }
            }
        });
        let started = Instant::now();
        let error = session
            .query("SLOW:60000", options())
            .await
            .expect_err("the request is cancelled");
        trigger.await.unwrap();
        assert!(error.is_cancelled(), "{mode:?}: {error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "{mode:?}: the cancel took effect ({:?})",
            started.elapsed()
        );
        // A cancel applied twice would hit this request.
        let next = session
            .query("SLOW:300", options())
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: the next request failed: {e:?}"));
        assert_eq!(next.text(), Some("done"), "{mode:?}");
    }
    session.close().await.unwrap();
    assert!(proxy.cuts() >= 3, "{:?}", proxy.stats());
}

#[tokio::test]
async fn end_session_across_a_cut_is_confirmed() {
    let runtime = durable_runtime(60.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let client = resume_client(&proxy.ws_url());
    for (case, arm) in [
        ("confirm cut", Some(Direction::ToClient)),
        ("end_session cut", Some(Direction::ToTarget)),
        ("link down", None),
    ] {
        let session = client.session().await.unwrap();
        let result = session
            .query("ECHO:before the end", options())
            .await
            .unwrap();
        assert_eq!(result.text(), Some("before the end"));
        let cuts_before = proxy.cuts();
        match arm {
            Some(direction) => {
                proxy.cut_live_after(direction, 1);
            }
            None => {
                proxy.cut();
            }
        }
        tokio::time::timeout(Duration::from_secs(60), session.close())
            .await
            .unwrap_or_else(|_| panic!("{case}: the close hangs"))
            .unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert!(proxy.cuts() > cuts_before, "{case}: the proxy cut");
    }
}

#[tokio::test]
async fn grace_expiry_ends_the_call_and_kills_the_tree() {
    let runtime = durable_runtime(2.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let client = resume_client(&proxy.ws_url());
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let command = common::grandchild_command(&pid_file);
    let call = tokio::spawn(async move {
        client
            .execute_commands(vec![Command::new(command)], ExecuteCommandsOptions::new())
            .await
    });
    let pid = common::read_pid_file(&pid_file).await;
    proxy.set_refusing(true);
    proxy.cut();
    assert!(
        common::process_alive(pid),
        "a detached session keeps its work"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call ends once the grace has passed")
        .unwrap();
    let error = outcome.expect_err("the session expired");
    assert!(!error.is_cancelled(), "{error:?}");
    assert!(
        common::wait_gone(pid, Duration::from_secs(20)).await,
        "the tree of an expired session dies ({pid})"
    );
    assert!(
        proxy.stats().refused >= 1,
        "the client tried to resume: {:?}",
        proxy.stats()
    );
}

#[tokio::test]
async fn without_resume_a_cut_ends_the_call_and_kills_its_command_as_before() {
    let runtime = durable_runtime(60.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let client = RuntimeUseClient::new(proxy.ws_url());
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let command = common::grandchild_command(&pid_file);
    let outputs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&outputs);
    let call = tokio::spawn(async move {
        let options = ExecuteCommandsOptions::new().on_command_output(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        client
            .execute_commands(vec![Command::new(command)], options)
            .await
    });
    let pid = common::read_pid_file(&pid_file).await;
    proxy.cut();
    let outcome = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the call ends with the connection")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        common::wait_gone(pid, Duration::from_secs(10)).await,
        "a cut of a non-durable connection kills its command ({pid})"
    );
    assert_eq!(proxy.connections(), 1, "no reconnection without resume");
}

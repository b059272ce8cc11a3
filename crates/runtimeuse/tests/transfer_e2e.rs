//! Downloads and artifact uploads through a real session, against a loopback file host.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Peer, command_execution, invocation, of_type, start_runtime};
use runtimeuse_testkit::BlobServer;
use serde_json::{Value, json};

fn zip_bytes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body, mode) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        writer.start_file(*name, options).unwrap();
        writer.write_all(body).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[tokio::test]
async fn downloads_land_in_working_dir_and_zips_are_extracted() {
    let files = BlobServer::start().await;
    files.serve_bytes("data/notes%20v1.txt", "plain file");
    files.serve_bytes(
        "bundle.zip",
        zip_bytes(&[
            ("pkg/run.sh", b"#!/bin/sh\necho ran\n", 0o755),
            ("pkg/readme", b"hi", 0o644),
        ]),
    );
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let mut message = command_execution(&["cat 'notes v1.txt'; ./pkg/run.sh; ls"]);
    message["commands"][0]["cwd"] = json!(work);
    message["pre_execution_downloadables"] = json!([
        {"download_url": files.url("data/notes%20v1.txt"), "working_dir": work},
        {"download_url": files.url("bundle.zip"), "working_dir": work},
    ]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["exit_code"], 0, "{result}");
    assert_eq!(
        result["results"][0]["stdout"],
        "plain fileran\nnotes v1.txt\npkg\n"
    );
}

#[tokio::test]
async fn failed_download_ends_the_invocation_with_status_and_reason() {
    let files = BlobServer::start().await;
    files.serve_status("gone.txt", 404);
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut message = invocation("ECHO:never");
    message["pre_agent_downloadables"] =
        json!([{"download_url": files.url("gone.txt"), "working_dir": dir.path()}]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message");
    assert_eq!(error["error"], "Download failed: 404 Not Found");
}

#[tokio::test]
async fn zip_entries_escaping_working_dir_are_refused() {
    let files = BlobServer::start().await;
    files.serve_bytes(
        "evil.zip",
        zip_bytes(&[
            ("ok.txt", b"fine", 0o644),
            ("../escaped.txt", b"bad", 0o644),
        ]),
    );
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("inner");
    let mut message = command_execution(&["echo should-not-run"]);
    message["pre_execution_downloadables"] =
        json!([{"download_url": files.url("evil.zip"), "working_dir": work}]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (before, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message", "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("escaped.txt"),
        "{error}"
    );
    assert!(!dir.path().join("escaped.txt").exists());
    assert!(of_type(&before, "command_output_message").is_empty());
}

/// Answers every upload request on `peer` with a URL on `files`; returns the messages
/// seen up to and including the terminal.
async fn answer_uploads_until_terminal(peer: &mut Peer, files: &BlobServer) -> (Vec<Value>, Value) {
    let mut seen = Vec::new();
    loop {
        let message = peer.recv().await;
        if message["message_type"] == "artifact_upload_request_message" {
            let name = message["filename"].as_str().unwrap();
            peer.send(json!({
                "message_type": "artifact_upload_response_message",
                "filename": name,
                "filepath": message["filepath"],
                "presigned_url": files.url(&format!("bucket/{name}?X-Amz-Signature=abc")),
                "content_type": "text/plain",
            }))
            .await;
        }
        if common::is_terminal(&message) {
            return (seen, message);
        }
        seen.push(message);
    }
}

#[tokio::test]
async fn written_file_is_announced_before_the_result_and_uploaded() {
    let files = BlobServer::start().await;
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let target = artifacts.join("sub/report.txt");
    let mut message = invocation(&format!(
        "WRITE_FILE:{} quarterly numbers",
        target.display()
    ));
    message["artifacts_dirs"] = json!([artifacts]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (seen, result) = answer_uploads_until_terminal(&mut peer, &files).await;
    let requests = of_type(&seen, "artifact_upload_request_message");
    assert_eq!(requests.len(), 1, "{seen:?}");
    assert_eq!(requests[0]["filename"], "report.txt");
    let canonical = std::fs::canonicalize(&target).unwrap();
    assert_eq!(requests[0]["filepath"], json!(canonical));
    assert_eq!(
        result["data"]["text"],
        format!("wrote {}", target.display())
    );

    // WRITE_FILE returns once its upload is done, so no waiting here.
    let uploads = files.uploads("bucket/report.txt");
    assert_eq!(
        uploads.len(),
        1,
        "result arrived before the upload finished"
    );
    assert_eq!(uploads[0].body.as_deref(), Some(&b"quarterly numbers"[..]));
    assert_eq!(uploads[0].content_type.as_deref(), Some("text/plain"));
}

#[tokio::test]
async fn end_session_drains_late_artifacts_before_confirming() {
    let files = BlobServer::start().await;
    let runtime =
        start_runtime(|c| c.session.artifacts.late_event_grace = Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("out");
    let mut message = command_execution(&[&format!(
        "(sleep 0.5; echo late > {}/late.txt) > /dev/null 2>&1 &",
        artifacts.display()
    )]);
    message["artifacts_dirs"] = json!([artifacts]);
    message["artifacts_ignore_content"] = json!("*.log\n");
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (_, result) = answer_uploads_until_terminal(&mut peer, &files).await;
    assert_eq!(result["results"][0]["exit_code"], 0);

    std::fs::write(artifacts.join("ignored.log"), "noise").unwrap();
    peer.send(json!({"message_type": "end_session_message"}))
        .await;
    let mut confirmed = false;
    while let Some(message) = peer.try_recv().await {
        match message["message_type"].as_str().unwrap() {
            "artifact_upload_request_message" => {
                assert_eq!(message["filename"], "late.txt", "{message}");
                peer.send(json!({
                    "message_type": "artifact_upload_response_message",
                    "filename": "late.txt",
                    "filepath": message["filepath"],
                    "presigned_url": files.url("bucket/late.txt"),
                    "content_type": "text/plain",
                }))
                .await;
            }
            "end_session_confirm_message" => confirmed = true,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(confirmed);
    // The upload finished before the confirm: no waiting needed here.
    let uploads = files.uploads("bucket/late.txt");
    assert_eq!(uploads.len(), 1, "late file not uploaded before confirm");
    assert_eq!(uploads[0].body.as_deref(), Some(&b"late\n"[..]));
    assert!(files.uploads("bucket/ignored.log").is_empty());
}

#[tokio::test]
async fn uploads_answered_before_a_disconnect_still_complete() {
    let files = BlobServer::start().await;
    files.fail_puts("bucket/flaky.txt", &[503]);
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("a");
    let mut message = invocation(&format!(
        "WRITE_FILE:{}/flaky.txt retried",
        artifacts.display()
    ));
    message["artifacts_dirs"] = json!([artifacts]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    answer_uploads_until_terminal(&mut peer, &files).await;
    peer.close().await;
    let uploads = files
        .wait_for_uploads("bucket/flaky.txt", 1, Duration::from_secs(10))
        .await;
    assert_eq!(uploads[0].body.as_deref(), Some(&b"retried"[..]));
    assert_eq!(files.put_attempts("bucket/flaky.txt"), 2);
}

#[tokio::test]
async fn a_client_leaving_with_unanswered_upload_requests_ends_its_session_promptly() {
    let runtime = start_runtime(|c| {
        c.session.artifacts.handshake_timeout = Duration::from_secs(60);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("a");
    let mut message = invocation(&format!(
        "WRITE_FILE:{}/never-answered.txt x",
        artifacts.display()
    ));
    message["artifacts_dirs"] = json!([artifacts]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let request = peer.recv().await;
    assert_eq!(request["message_type"], "artifact_upload_request_message");
    peer.close().await;

    let health = format!("{}/health", runtime.http_url());
    let started = std::time::Instant::now();
    loop {
        let body: Value = reqwest::get(&health).await.unwrap().json().await.unwrap();
        if body["sessions"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "session still open {:?} after the client left",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_result_waits_for_the_answer_about_a_file_written_at_the_very_end() {
    let files = BlobServer::start().await;
    let runtime = start_runtime(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("a");
    let mut message =
        command_execution(&[&format!("echo last > {}/last.txt", artifacts.display())]);
    message["artifacts_dirs"] = json!([artifacts]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let request = peer.recv().await;
    assert_eq!(
        request["message_type"], "artifact_upload_request_message",
        "{request}"
    );
    // A slow presigning callback: the command has long finished, but no terminal may
    // come before the answer (the Python client stops answering once it has a result).
    let early = tokio::time::timeout(Duration::from_millis(500), peer.recv()).await;
    assert!(
        early.is_err(),
        "terminal sent before the upload request was answered: {early:?}"
    );
    peer.send(json!({
        "message_type": "artifact_upload_response_message",
        "filename": "last.txt",
        "filepath": request["filepath"],
        "presigned_url": files.url("bucket/last.txt"),
        "content_type": "text/plain",
    }))
    .await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["results"][0]["exit_code"], 0);
    peer.close().await;
    let uploads = files
        .wait_for_uploads("bucket/last.txt", 1, Duration::from_secs(10))
        .await;
    assert_eq!(uploads[0].body.as_deref(), Some(&b"last\n"[..]));
}

#[tokio::test]
async fn zip_over_the_configured_expansion_limit_is_refused() {
    let files = BlobServer::start().await;
    files.serve_bytes("big.zip", zip_bytes(&[("big.bin", &[0u8; 200_000], 0o644)]));
    let runtime = start_runtime(|c| c.session.unzip_limits.max_total_bytes = 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut message = command_execution(&["echo should-not-run"]);
    message["pre_execution_downloadables"] =
        json!([{"download_url": files.url("big.zip"), "working_dir": dir.path()}]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    peer.send(message).await;
    let (_, error) = peer.until_terminal().await;
    assert_eq!(error["message_type"], "error_message", "{error}");
    let text = error["error"].as_str().unwrap();
    assert!(
        text.starts_with("Download failed: ") && text.contains("zip bomb"),
        "{text}"
    );
    assert!(!dir.path().join("big.bin").exists());
}

#[tokio::test]
async fn an_upload_request_never_answered_holds_back_only_the_next_result() {
    let runtime = start_runtime(|c| c.session.artifacts.result_hold = Duration::from_secs(6)).await;
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("a");
    // A client without an upload callback: it never answers.
    let mut message =
        command_execution(&[&format!("echo x > {}/unanswered.txt", artifacts.display())]);
    message["artifacts_dirs"] = json!([artifacts]);
    let mut peer = Peer::connect(&runtime.ws_url()).await;
    let started = std::time::Instant::now();
    peer.send(message).await;
    let (before, result) = peer.until_terminal().await;
    assert_eq!(of_type(&before, "artifact_upload_request_message").len(), 1);
    assert_eq!(result["results"][0]["exit_code"], 0);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    peer.send(invocation("ECHO:next")).await;
    let (_, result) = peer.until_terminal().await;
    assert_eq!(result["data"]["text"], "next");
    // Against the 6 s hold.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a stale handshake held back a later result for {:?}",
        started.elapsed()
    );
}

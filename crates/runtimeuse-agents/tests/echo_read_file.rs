//! The echo agent's `READ_FILE:` on real files, devices and pipes: bounded, never
//! blocking, stopped by cancellation.

use std::time::Duration;

use runtimeuse_agents::EchoAgent;
use runtimeuse_agents::echo::READ_FILE_LIMIT;
use runtimeuse_protocol::ResultData;
use runtimeuse_server::agent::{Agent, AgentContext, AgentError, AgentRequest};
use runtimeuse_server::artifacts::{ArtifactOptions, Artifacts};
use runtimeuse_server::command::CommandOptions;
use runtimeuse_server::outbox::Outbox;
use tokio_util::sync::CancellationToken;

/// Hang guard only: every case here answers in milliseconds.
const GUARD: Duration = Duration::from_secs(30);

async fn read_with(path: &str, cancel: CancellationToken) -> Result<String, AgentError> {
    let (outbox, _frames) = Outbox::channel(8);
    let artifacts = Artifacts::new(
        outbox.clone(),
        reqwest::Client::new(),
        ArtifactOptions::default(),
    );
    let ctx = AgentContext::new(cancel, outbox, CommandOptions::default(), artifacts);
    let request = AgentRequest {
        system_prompt: String::new(),
        user_prompt: format!("READ_FILE:{path}"),
        model: "echo".into(),
        output_schema: None,
        env: Default::default(),
        secrets: Default::default(),
        source_id: None,
    };
    let output = tokio::time::timeout(GUARD, EchoAgent.run(request, ctx))
        .await
        .expect("READ_FILE answers instead of hanging")?;
    match output.data {
        ResultData::Text { text } => Ok(text),
        other => panic!("expected a text result, got {other:?}"),
    }
}

async fn read(path: &str) -> Result<String, AgentError> {
    read_with(path, CancellationToken::new()).await
}

#[tokio::test]
async fn a_small_file_is_returned_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "line one\nline two\n").unwrap();
    assert_eq!(
        read(&path.display().to_string()).await.unwrap(),
        "line one\nline two\n"
    );
}

#[tokio::test]
async fn a_file_exactly_at_the_limit_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.txt");
    let limit = usize::try_from(READ_FILE_LIMIT).unwrap();
    std::fs::write(&path, "a".repeat(limit)).unwrap();
    assert_eq!(
        read(&path.display().to_string()).await.unwrap().len(),
        limit
    );
}

#[tokio::test]
async fn a_file_over_the_limit_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.bin");
    // Sparse: 4 GiB on paper, nothing on disk. Reading it whole would take 4 GiB of RAM.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let error = read(&path.display().to_string()).await.unwrap_err();
    assert!(error.message.contains("limit"), "{}", error.message);
    assert!(error.message.contains(&READ_FILE_LIMIT.to_string()));
    assert_eq!(error.metadata["source"], "echo_handler");
}

#[tokio::test]
async fn dev_zero_is_refused_at_once_instead_of_filling_memory() {
    let error = read("/dev/zero").await.unwrap_err();
    assert!(
        error.message.contains("not a regular file"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_fifo_without_writer_is_refused_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let error = read(&fifo.display().to_string()).await.unwrap_err();
    assert!(
        error.message.contains("not a regular file"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_proc_file_reporting_size_zero_is_still_read() {
    let status = read("/proc/self/status").await.unwrap();
    assert!(status.contains("Name:"), "{status}");
}

#[tokio::test]
async fn a_directory_or_a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = read(&dir.path().display().to_string()).await.unwrap_err();
    assert!(
        error.message.contains("not a regular file"),
        "{}",
        error.message
    );
    let missing = dir.path().join("missing.txt");
    let error = read(&missing.display().to_string()).await.unwrap_err();
    assert!(
        error.message.contains("could not read"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn invalid_utf8_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    std::fs::write(&path, b"caf\xe9").unwrap();
    let error = read(&path.display().to_string()).await.unwrap_err();
    assert!(error.message.contains("UTF-8"), "{}", error.message);
}

#[tokio::test]
async fn a_cancelled_request_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "x".repeat(100_000)).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let error = read_with(&path.display().to_string(), cancel)
        .await
        .unwrap_err();
    assert_eq!(error.message, "cancelled");
}

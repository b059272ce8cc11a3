//! Presigned uploads against the real loopback blob server: body and headers, retries,
//! errors, memory, and files that must not be sent (symlinks, FIFOs).

mod support;

use std::time::{Duration, Instant};

use runtimeuse_server::upload::{RetryPolicy, UploadError, upload_file};
use runtimeuse_testkit::BlobServer;
use runtimeuse_testkit::blob_server::{FNV_OFFSET, checksum};

use support::memory::RssWatch;
use support::{HEAVY, LARGE, MIB, RSS_BUDGET, fast_retries, refused_port, sparse_file};

/// The test kit's FNV-1a checksum of `len` zero bytes, in closed form: xor with zero is a
/// no-op, so each byte only multiplies by the prime (hashing 512 MiB in a debug build takes
/// seconds).
fn checksum_of_zeros(len: u64) -> u64 {
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    FNV_OFFSET.wrapping_mul(FNV_PRIME.wrapping_pow(u32::try_from(len).unwrap()))
}

#[test]
fn checksum_of_zeros_matches_the_test_kit() {
    for len in [0usize, 1, 7, 4096] {
        assert_eq!(checksum_of_zeros(len as u64), checksum(&vec![0; len]));
    }
}

/// Writes `payload` to a fresh `a.txt` and uploads it to `url` as text/plain with
/// `retries`.
async fn upload_payload(url: &str, retries: &RetryPolicy) -> Result<u64, UploadError> {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();
    upload_file(&reqwest::Client::new(), &file, url, "text/plain", retries).await
}

#[tokio::test]
async fn upload_sends_exact_body_content_type_and_content_length() {
    let server = BlobServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("report.json");
    std::fs::write(&file, br#"{"ok":true}"#).unwrap();

    let sent = upload_file(
        &reqwest::Client::new(),
        &file,
        &server.url("bucket/report.json?X-Amz-Signature=abc"),
        "application/json",
        &fast_retries(3),
    )
    .await
    .unwrap();

    assert_eq!(sent, 11);
    let uploads = server.uploads("bucket/report.json");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].body.as_deref(), Some(&br#"{"ok":true}"#[..]));
    assert_eq!(uploads[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(server.put_content_lengths("bucket/report.json"), [Some(11)]);
}

#[tokio::test]
async fn upload_retries_5xx_then_succeeds() {
    let server = BlobServer::start().await;
    server.fail_puts("a.txt", &[503, 503]);
    let sent = upload_payload(&server.url("a.txt"), &fast_retries(3))
        .await
        .unwrap();

    assert_eq!(sent, 7);
    assert_eq!(server.put_attempts("a.txt"), 3);
    assert_eq!(
        server.uploads("a.txt")[0].body.as_deref(),
        Some(&b"payload"[..])
    );
}

#[tokio::test]
async fn upload_gives_up_when_5xx_outlasts_the_attempts() {
    let server = BlobServer::start().await;
    server.fail_puts("a.txt", &[500, 502, 503, 504]);
    let err = upload_payload(&server.url("a.txt"), &fast_retries(3))
        .await
        .unwrap_err();

    assert!(matches!(err, UploadError::Status(503)), "{err}");
    assert_eq!(server.put_attempts("a.txt"), 3);
    assert!(server.uploads("a.txt").is_empty());
}

#[tokio::test]
async fn upload_403_fails_at_once() {
    let server = BlobServer::start().await;
    server.fail_puts("a.txt", &[403]);
    let err = upload_payload(&server.url("a.txt"), &fast_retries(4))
        .await
        .unwrap_err();

    assert!(matches!(err, UploadError::Status(403)), "{err}");
    assert_eq!(server.put_attempts("a.txt"), 1);
}

#[tokio::test]
async fn upload_connection_refused_fails_after_all_attempts() {
    let port = refused_port();
    let started = Instant::now();
    let err = upload_payload(
        &format!("http://127.0.0.1:{port}/a.txt?X-Amz-Signature=topsecret"),
        &fast_retries(3),
    )
    .await
    .unwrap_err();

    eprintln!("{err}");
    assert!(matches!(err, UploadError::Connection(_)), "{err}");
    assert!(!err.to_string().contains("topsecret"), "{err}");
    // Two backoffs (20 ms, then 40 ms) prove three attempts.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[tokio::test]
async fn upload_to_an_invalid_url_fails_without_retrying() {
    let started = Instant::now();
    let err = upload_payload(
        "not a url",
        &RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_secs(5),
            ..RetryPolicy::default()
        },
    )
    .await
    .unwrap_err();

    assert!(err.to_string().contains("invalid upload URL"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "retried");
}

#[tokio::test]
async fn upload_of_a_missing_file_fails_without_retrying() {
    let server = BlobServer::start().await;
    let tmp = tempfile::tempdir().unwrap();

    let err = upload_file(
        &reqwest::Client::new(),
        &tmp.path().join("gone.txt"),
        &server.url("gone.txt"),
        "text/plain",
        &fast_retries(3),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, UploadError::Read { .. }), "{err}");
    assert_eq!(server.put_attempts("gone.txt"), 0);
}

#[tokio::test]
async fn large_upload_streams_from_disk_with_flat_memory() {
    let _heavy = HEAVY.lock().await;
    let server = BlobServer::start().await;
    server.set_keep_body_limit(0); // measure the uploader, not the test server's buffer
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("large.bin");
    sparse_file(&file, LARGE);
    let expected = checksum_of_zeros(LARGE);

    let watch = RssWatch::start();
    let started = Instant::now();
    let sent = upload_file(
        &reqwest::Client::new(),
        &file,
        &server.url("large.bin"),
        "application/octet-stream",
        &fast_retries(1),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let growth = watch.growth();

    assert_eq!(sent, LARGE);
    let uploads = server.uploads("large.bin");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].len, LARGE);
    assert_eq!(uploads[0].checksum, expected);
    assert_eq!(server.put_content_lengths("large.bin"), [Some(LARGE)]);
    eprintln!(
        "512 MiB upload: {elapsed:?}, RSS growth {} MiB",
        growth / MIB
    );
    assert!(growth < RSS_BUDGET, "RSS grew by {} MiB", growth / MIB);
}

#[tokio::test]
async fn upload_refuses_a_symlink_swapped_in_for_the_file() {
    let server = BlobServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, b"API_KEY=hunter2").unwrap();
    let file = tmp.path().join("report.txt");
    std::os::unix::fs::symlink(&secret, &file).unwrap();

    let err = upload_file(
        &reqwest::Client::new(),
        &file,
        &server.url("report.txt"),
        "text/plain",
        &fast_retries(3),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, UploadError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(server.put_attempts("report.txt"), 0, "retried or sent");
}

#[tokio::test]
async fn upload_refuses_a_file_reached_through_a_symlinked_directory() {
    let server = BlobServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("environ"), b"API_KEY=hunter2").unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&secrets, out.join("d")).unwrap();

    let err = upload_file(
        &reqwest::Client::new(),
        &out.join("d/environ"),
        &server.url("environ"),
        "text/plain",
        &fast_retries(3),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, UploadError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(server.put_attempts("environ"), 0);
}

#[tokio::test]
async fn upload_refuses_a_fifo_without_waiting_for_a_writer() {
    let server = BlobServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());

    let err = tokio::time::timeout(
        Duration::from_secs(5),
        upload_file(
            &reqwest::Client::new(),
            &fifo,
            &server.url("pipe"),
            "text/plain",
            &fast_retries(3),
        ),
    )
    .await
    .expect("opening a FIFO must not block")
    .unwrap_err();

    assert!(matches!(err, UploadError::Refused { .. }), "{err}");
    assert_eq!(server.put_attempts("pipe"), 0);
}

#[tokio::test]
async fn upload_of_a_path_with_dot_dot_but_no_link_is_sent() {
    let server = BlobServer::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sub")).unwrap();
    std::fs::write(tmp.path().join("a.txt"), b"payload").unwrap();

    let sent = upload_file(
        &reqwest::Client::new(),
        &tmp.path().join("sub/../a.txt"),
        &server.url("a.txt"),
        "text/plain",
        &fast_retries(1),
    )
    .await
    .unwrap();

    assert_eq!(sent, 7);
}

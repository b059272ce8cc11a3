//! Plain downloads against the real loopback blob server: names, replacement, HTTP and
//! connection errors, cancellation, memory.

mod support;

use std::time::{Duration, Instant};

use runtimeuse_server::download::{DownloadError, download};
use runtimeuse_testkit::BlobServer;
use tokio_util::sync::CancellationToken;

use support::memory::RssWatch;
use support::{HEAVY, LARGE, MIB, RSS_BUDGET, entries, item, refused_port, sparse_file};

#[tokio::test]
async fn plain_download_lands_under_decoded_name_and_creates_working_dir() {
    let server = BlobServer::start().await;
    server.serve_bytes("files/my%20file.txt", b"hello world".to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/work");

    let path = download(
        &reqwest::Client::new(),
        &item(server.url("files/my%20file.txt?token=abc"), &dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(path, dir.join("my file.txt"));
    assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
    assert_eq!(entries(&dir), ["my file.txt"], "no temporary file left");
}

#[tokio::test]
async fn download_replaces_an_existing_file() {
    let server = BlobServer::start().await;
    server.serve_bytes("a.txt", b"new".to_vec());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.txt"), b"old content").unwrap();

    download(
        &reqwest::Client::new(),
        &item(server.url("a.txt"), tmp.path()),
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(std::fs::read(tmp.path().join("a.txt")).unwrap(), b"new");
}

async fn assert_status_error(status: u16, expected: &str) {
    let server = BlobServer::start().await;
    server.serve_status("f.bin", status);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");

    let err = download(
        &reqwest::Client::new(),
        &item(server.url("f.bin"), &dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();

    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, DownloadError::Status { .. }));
    assert!(
        entries(&dir).is_empty(),
        "left on disk: {:?}",
        entries(&dir)
    );
}

#[tokio::test]
async fn download_404_reports_status_and_reason_and_leaves_nothing() {
    assert_status_error(404, "Download failed: 404 Not Found").await;
}

#[tokio::test]
async fn download_500_reports_status_and_reason_and_leaves_nothing() {
    assert_status_error(500, "Download failed: 500 Internal Server Error").await;
}

#[tokio::test]
async fn download_connection_refused_names_the_host_but_not_the_query() {
    let port = refused_port();
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/f.txt?X-Amz-Signature=topsecret");

    let err = download(
        &reqwest::Client::new(),
        &item(url, tmp.path()),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();

    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("Download failed: "), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("topsecret"), "{text}");
    assert!(entries(tmp.path()).is_empty());
}

#[tokio::test]
async fn download_url_without_a_plain_file_name_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "http://127.0.0.1:9/dir/",
        "http://127.0.0.1:9/a%2Fb",
        "http://127.0.0.1:9",
    ] {
        let err = download(
            &reqwest::Client::new(),
            &item(url.to_owned(), tmp.path()),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("file name"), "{url}: {err}");
    }
}

#[tokio::test]
async fn cancel_during_download_returns_cancelled_and_leaves_no_partial_file() {
    let _heavy = HEAVY.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source.bin");
    sparse_file(&source, 2 * LARGE);
    let server = BlobServer::start().await;
    server.serve_file("big.bin", &source);
    let dir = tmp.path().join("work");
    let cancel = CancellationToken::new();

    let task = tokio::spawn({
        let (item, cancel) = (item(server.url("big.bin"), &dir), cancel.clone());
        async move { download(&reqwest::Client::new(), &item, &cancel).await }
    });
    // Wait until bytes are on disk, so the cancel lands mid-transfer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written = std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .find_map(|e| e.metadata().ok().map(|m| m.len()).filter(|&l| l > 0))
        });
        if written.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "download never started writing");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("cancel is prompt")
        .unwrap();

    assert!(
        matches!(result, Err(DownloadError::Cancelled)),
        "{result:?}"
    );
    eprintln!("download stopped {:?} after cancel", cancelled_at.elapsed());
    assert!(
        entries(&dir).is_empty(),
        "left on disk: {:?}",
        entries(&dir)
    );
}

#[tokio::test]
async fn large_download_streams_to_disk_with_flat_memory() {
    let _heavy = HEAVY.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source.bin");
    sparse_file(&source, LARGE);
    let server = BlobServer::start().await;
    server.serve_file("large.bin", &source);
    let dir = tmp.path().join("work");

    let watch = RssWatch::start();
    let started = Instant::now();
    let path = download(
        &reqwest::Client::new(),
        &item(server.url("large.bin"), &dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let growth = watch.growth();

    assert_eq!(std::fs::metadata(&path).unwrap().len(), LARGE);
    eprintln!(
        "512 MiB download: {elapsed:?}, RSS growth {} MiB",
        growth / MIB
    );
    assert!(growth < RSS_BUDGET, "RSS grew by {} MiB", growth / MIB);
}

//! Uploads to servers that stall: an attempt without progress is abandoned and retried,
//! a slow one that keeps moving is not.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtimeuse_server::upload::{RetryPolicy, UploadError, upload_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{HEAVY, MIB, sparse_file};

/// Reads one request's head from `stream`; returns the `Content-Length` and the body
/// bytes already read with the head.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<(u64, usize)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let len = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            return Some((len, head.len() - end - 4));
        }
    }
}

/// A loopback server that reads every request's head and then never answers; counts
/// the connections.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/a.txt?X-Amz-Signature=topsecret",
        listener.local_addr().unwrap()
    );
    let accepted = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let accepted = accepted.clone();
        async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = read_head(&mut stream).await;
                    std::future::pending::<()>().await;
                    drop(stream);
                });
            }
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn upload_attempt_without_progress_is_abandoned_and_retried() {
    let (url, accepted) = silent_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();
    let policy = RetryPolicy {
        attempts: 2,
        initial_backoff: Duration::from_millis(20),
        stall_timeout: Duration::from_millis(300),
    };
    let started = Instant::now();

    let err = tokio::time::timeout(
        Duration::from_secs(10),
        upload_file(&reqwest::Client::new(), &file, &url, "text/plain", &policy),
    )
    .await
    .expect("a silent server must not hang the upload")
    .unwrap_err();

    eprintln!("{err}");
    assert!(matches!(err, UploadError::Connection(_)), "{err}");
    assert!(err.to_string().contains("no progress"), "{err}");
    assert!(!err.to_string().contains("topsecret"), "{err}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "retried once");
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn slow_upload_that_keeps_moving_outlives_the_stall_timeout() {
    let _heavy = HEAVY.lock().await;
    // The server takes its body in small sips for well over the stall timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow.bin", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let (len, got) = read_head(&mut stream).await.unwrap();
        let mut got = got as u64;
        let mut buf = vec![0u8; 256 * 1024];
        while got < len {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "body ended early");
            got += n as u64;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        got
    });
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("slow.bin");
    sparse_file(&file, 32 * MIB);
    let policy = RetryPolicy {
        attempts: 1,
        stall_timeout: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let started = Instant::now();

    let sent = upload_file(
        &reqwest::Client::new(),
        &file,
        &url,
        "application/octet-stream",
        &policy,
    )
    .await
    .unwrap();
    let took = started.elapsed();

    eprintln!("slow upload took {took:?}");
    assert_eq!(sent, 32 * MIB);
    assert_eq!(server.await.unwrap(), 32 * MIB);
    assert!(
        took > Duration::from_secs(1),
        "not slower than the stall timeout: {took:?}"
    );
}

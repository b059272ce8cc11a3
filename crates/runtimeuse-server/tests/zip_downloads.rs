//! Zip archives through `download`: extraction over existing files, hostile archives that
//! must write nothing, corrupt archives, cancellation mid-extraction.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use runtimeuse_server::download::{DownloadError, download};
use runtimeuse_testkit::BlobServer;
use tokio_util::sync::CancellationToken;

use support::zips::{Entry, REGULAR, make_zip, zeros_zip};
use support::{GIB, HEAVY, entries, item, mode};

#[tokio::test]
async fn zip_is_extracted_with_dirs_and_modes_over_existing_files_then_deleted() {
    let archive = make_zip(&[
        ("bin/run.sh", Entry::File(b"#!/bin/sh\necho hi\n", 0o755)),
        ("a/b/c/deep.txt", Entry::File(b"deep", 0o640)),
        ("empty/", Entry::Dir),
        ("readme.txt", Entry::File(b"new readme", 0o644)),
        ("locked.txt", Entry::File(b"new locked", 0o644)),
    ]);
    let server = BlobServer::start().await;
    server.serve_bytes("bundle.zip", archive);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("readme.txt"),
        b"old readme, longer than the new one",
    )
    .unwrap();
    std::fs::write(dir.join("locked.txt"), b"old").unwrap();
    std::fs::set_permissions(dir.join("locked.txt"), PermissionsExt::from_mode(0o444)).unwrap();
    std::fs::write(dir.join("unrelated.txt"), b"kept").unwrap();

    let path = download(
        &reqwest::Client::new(),
        &item(server.url("bundle.zip"), &dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(path, dir);
    assert_eq!(
        entries(&dir),
        [
            "a",
            "bin",
            "empty",
            "locked.txt",
            "readme.txt",
            "unrelated.txt"
        ],
        "zip deleted, nothing else left"
    );
    assert_eq!(std::fs::read(dir.join("a/b/c/deep.txt")).unwrap(), b"deep");
    assert_eq!(
        std::fs::read(dir.join("readme.txt")).unwrap(),
        b"new readme"
    );
    assert_eq!(
        std::fs::read(dir.join("locked.txt")).unwrap(),
        b"new locked"
    );
    assert_eq!(mode(&dir.join("bin/run.sh")), 0o755);
    assert_eq!(mode(&dir.join("a/b/c/deep.txt")), 0o640);
    assert!(dir.join("empty").is_dir());
    let out = std::process::Command::new(dir.join("bin/run.sh"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"hi\n");
}

#[tokio::test]
async fn zip_name_is_matched_case_insensitively() {
    let server = BlobServer::start().await;
    server.serve_bytes(
        "BUNDLE.ZIP",
        make_zip(&[("x.txt", Entry::File(b"x", 0o644))]),
    );
    let tmp = tempfile::tempdir().unwrap();

    download(
        &reqwest::Client::new(),
        &item(server.url("BUNDLE.ZIP"), tmp.path()),
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    assert_eq!(entries(tmp.path()), ["x.txt"]);
}

async fn assert_hostile_zip_writes_nothing(archive: Vec<u8>, outside: &str) {
    let server = BlobServer::start().await;
    server.serve_bytes("evil.zip", archive);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");

    let err = download(
        &reqwest::Client::new(),
        &item(server.url("evil.zip"), &dir),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();

    let text = err.to_string();
    assert!(text.starts_with("Download failed: "), "{text}");
    assert!(text.contains("outside the destination"), "{text}");
    assert!(!tmp.path().join(outside).exists());
    assert_eq!(entries(tmp.path()), ["work"]);
    assert!(entries(&dir).is_empty(), "written: {:?}", entries(&dir));
}

#[tokio::test]
async fn zip_slip_parent_dir_entry_is_refused_and_nothing_is_written() {
    let archive = make_zip(&[
        ("ok.txt", Entry::File(b"fine", 0o644)),
        ("../evil.txt", Entry::File(b"pwned", 0o644)),
    ]);
    assert_hostile_zip_writes_nothing(archive, "evil.txt").await;
}

#[tokio::test]
async fn zip_slip_absolute_entry_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("abs-evil.txt");
    let archive = make_zip(&[
        ("ok.txt", Entry::File(b"fine", 0o644)),
        (target.to_str().unwrap(), Entry::File(b"pwned", 0o644)),
    ]);
    assert_hostile_zip_writes_nothing(archive, "evil.txt").await;
    assert!(!target.exists());
}

#[tokio::test]
async fn zip_symlink_pointing_outside_is_refused_and_nothing_is_written() {
    for target in ["/etc/passwd", "../outside", "sub/../../outside"] {
        let archive = make_zip(&[
            ("ok.txt", Entry::File(b"fine", 0o644)),
            ("link", Entry::Symlink(target)),
        ]);
        assert_hostile_zip_writes_nothing(archive, "outside").await;
    }
}

#[tokio::test]
async fn corrupt_zip_is_reported_and_removed() {
    let server = BlobServer::start().await;
    server.serve_bytes("broken.zip", b"this is not a zip".to_vec());
    let tmp = tempfile::tempdir().unwrap();

    let err = download(
        &reqwest::Client::new(),
        &item(server.url("broken.zip"), tmp.path()),
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();

    assert!(
        err.to_string().starts_with("Download failed: invalid zip"),
        "{err}"
    );
    assert!(entries(tmp.path()).is_empty());
}

#[tokio::test]
async fn cancel_during_zip_extraction_stops_it_promptly_and_leaves_no_partial_file() {
    let _heavy = HEAVY.lock().await;
    let server = BlobServer::start().await;
    server.serve_bytes("bomb.zip", zeros_zip("big.bin", 2 * GIB, None, REGULAR));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    let cancel = CancellationToken::new();

    let task = tokio::spawn({
        let (item, cancel) = (item(server.url("bomb.zip"), &dir), cancel.clone());
        async move { download(&reqwest::Client::new(), &item, &cancel).await }
    });
    // Wait until the extraction is writing, so the cancel lands mid-file.
    let extracted = dir.join("big.bin");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&extracted).map_or(0, |m| m.len()) == 0 {
        assert!(
            Instant::now() < deadline,
            "extraction never started writing"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("cancel during extraction is prompt")
        .unwrap();
    let took = cancelled_at.elapsed();

    assert!(
        matches!(result, Err(DownloadError::Cancelled)),
        "{result:?}"
    );
    eprintln!("extraction stopped {took:?} after cancel");
    assert!(
        entries(&dir).is_empty(),
        "left on disk: {:?}",
        entries(&dir)
    );
}

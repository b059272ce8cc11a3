//! Downloads (plain and zip), zip extraction safety and presigned uploads, against the
//! real loopback blob server.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtimeuse_protocol::Downloadable;
use runtimeuse_server::download::{DownloadError, download};
use runtimeuse_server::unzip::{UnzipError, UnzipLimits, extract_zip, extract_zip_with};
use runtimeuse_server::upload::{RetryPolicy, UploadError, upload_file};
use runtimeuse_testkit::BlobServer;
use runtimeuse_testkit::blob_server::{FNV_OFFSET, checksum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use zip::write::SimpleFileOptions;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const LARGE: u64 = 512 * MIB;
const RSS_BUDGET: u64 = 64 * MIB;

/// Tests that move hundreds of MiB or measure memory run one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn item(url: String, dir: &Path) -> Downloadable {
    Downloadable {
        download_url: url,
        working_dir: dir.display().to_string(),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A port on 127.0.0.1 with nothing listening.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

enum Entry<'a> {
    File(&'a [u8], u32),
    Dir,
    Symlink(&'a str),
}

fn make_zip(items: &[(&str, Entry<'_>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, entry) in items {
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        match entry {
            Entry::File(bytes, mode) => {
                zip.start_file(*name, options.unix_permissions(*mode))
                    .unwrap();
                zip.write_all(bytes).unwrap();
            }
            Entry::Dir => zip.add_directory(*name, options).unwrap(),
            Entry::Symlink(target) => zip.add_symlink(*name, *target, options).unwrap(),
        }
    }
    zip.finish().unwrap().into_inner()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Packs bits least significant first, as deflate does.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    len: u32,
}

impl Bits {
    fn push(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.len;
        self.len += bits;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A one-entry zip whose entry is about `len` zero bytes, deflated by hand (one fixed
/// Huffman block: a literal zero, then matches of 258 bytes at distance 1), so a
/// gigabyte costs ~6 MiB and no compression time. The header claims `declared` bytes
/// (the true length if `None`) and `unix_mode`. The CRC is not computed (hashing
/// gigabytes in a debug build is slow): these archives are for extractions that must
/// stop before the end, where the CRC is checked.
fn zeros_zip(name: &str, len: u64, declared: Option<u32>, unix_mode: u32) -> Vec<u8> {
    let matches = len.saturating_sub(1) / 258;
    let true_len = 1 + 258 * matches;
    let mut bits = Bits::default();
    bits.push(0b011, 3); // last block, fixed Huffman
    bits.push(0b0000_1100, 8); // literal 0 (code 00110000, sent high bit first)
    for _ in 0..matches {
        // length 258 (code 285 = 11000101, high bit first) then distance 1 (code 00000)
        bits.push(0b1010_0011, 13);
    }
    bits.push(0, 7); // end of block
    let data = bits.finish();

    let compressed = u32::try_from(data.len()).unwrap();
    let size = declared.unwrap_or_else(|| u32::try_from(true_len).unwrap());
    let name_len = u16::try_from(name.len()).unwrap();
    let mut zip = Vec::with_capacity(data.len() + 200);
    // local file header
    zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
    zip.extend_from_slice(&0u16.to_le_bytes()); // flags
    zip.extend_from_slice(&8u16.to_le_bytes()); // deflate
    zip.extend_from_slice(&0u16.to_le_bytes()); // time
    zip.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
    zip.extend_from_slice(&0u32.to_le_bytes()); // crc (not computed)
    zip.extend_from_slice(&compressed.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // extra
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(&data);
    // central directory
    let cd_start = u32::try_from(zip.len()).unwrap();
    zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    zip.extend_from_slice(&0x0314u16.to_le_bytes()); // made by unix, 2.0
    zip.extend_from_slice(&20u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&8u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&0x21u16.to_le_bytes());
    zip.extend_from_slice(&0u32.to_le_bytes());
    zip.extend_from_slice(&compressed.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
    zip.extend_from_slice(&(unix_mode << 16).to_le_bytes());
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name.as_bytes());
    let cd_len = u32::try_from(zip.len()).unwrap() - cd_start;
    // end of central directory
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]); // disks, one entry
    zip.extend_from_slice(&cd_len.to_le_bytes());
    zip.extend_from_slice(&cd_start.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

const REGULAR: u32 = 0o100_644;
const SYMLINK: u32 = 0o120_777;

#[test]
fn hand_made_zeros_zip_is_a_valid_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("z.zip");
    std::fs::write(&archive, zeros_zip("z.bin", 10_000, None, REGULAR)).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut entry = zip.by_index(0).unwrap();
    let mut out = Vec::new();
    // Only the (uncomputed) CRC is wrong.
    let err = std::io::Read::read_to_end(&mut entry, &mut out).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(out.len(), 1 + 258 * (9_999 / 258));
    assert!(out.iter().all(|&b| b == 0));
}

/// Resident memory of this process, from `/proc/self/status`.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Samples RSS every few milliseconds on a thread and reports the peak growth.
struct RssWatch {
    base: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl RssWatch {
    fn start() -> Self {
        let base = rss();
        let peak = Arc::new(AtomicU64::new(base));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Self {
            base,
            peak,
            stop,
            thread,
        }
    }

    fn growth(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.peak
            .load(Ordering::Relaxed)
            .max(rss())
            .saturating_sub(self.base)
    }
}

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

fn sparse_file(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

// ---------------------------------------------------------------- downloads

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
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("cancel is prompt")
        .unwrap();

    assert!(
        matches!(result, Err(DownloadError::Cancelled)),
        "{result:?}"
    );
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
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

// ---------------------------------------------------------------- zips

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

#[test]
fn zip_symlink_inside_the_destination_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let bytes = make_zip(&[
        ("pkg/cli.js", Entry::File(b"cli", 0o755)),
        (".bin/cli", Entry::Symlink("../pkg/cli.js")),
    ]);
    std::fs::write(&archive, bytes).unwrap();
    let dest = tmp.path().join("out");

    assert_eq!(extract_zip(&archive, &dest).unwrap(), 2);

    assert_eq!(
        std::fs::read_link(dest.join(".bin/cli")).unwrap(),
        PathBuf::from("../pkg/cli.js")
    );
    assert_eq!(std::fs::read(dest.join(".bin/cli")).unwrap(), b"cli");
}

#[test]
fn zip_chained_symlinks_that_escape_together_are_removed() {
    // Each link alone stays inside; `up/..` through `up -> .` leaves the destination.
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let bytes = make_zip(&[
        ("escape", Entry::Symlink("up/..")),
        ("write-out", Entry::Symlink("up/../created-outside")),
        ("up", Entry::Symlink(".")),
    ]);
    std::fs::write(&archive, bytes).unwrap();
    let dest = tmp.path().join("out");

    let err = extract_zip(&archive, &dest).unwrap_err();

    assert!(matches!(err, UnzipError::UnsafeSymlink { .. }), "{err}");
    assert!(
        !dest.join("escape").exists() && std::fs::symlink_metadata(dest.join("escape")).is_err()
    );
    assert!(std::fs::symlink_metadata(dest.join("write-out")).is_err());
}

#[test]
fn zip_entry_is_never_written_through_an_existing_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = tmp.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim.txt"), dest.join("file-link")).unwrap();
    let archive = tmp.path().join("a.zip");

    std::fs::write(
        &archive,
        make_zip(&[("file-link", Entry::File(b"new", 0o644))]),
    )
    .unwrap();
    extract_zip(&archive, &dest).unwrap();
    assert!(!outside.join("victim.txt").exists(), "link followed");
    assert_eq!(std::fs::read(dest.join("file-link")).unwrap(), b"new");

    std::fs::write(
        &archive,
        make_zip(&[("link/x.txt", Entry::File(b"x", 0o644))]),
    )
    .unwrap();
    let err = extract_zip(&archive, &dest).unwrap_err();
    assert!(matches!(err, UnzipError::ThroughSymlink { .. }), "{err}");
    assert!(entries(&outside).is_empty());
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
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("cancel during extraction is prompt")
        .unwrap();
    let took = cancelled_at.elapsed();

    assert!(
        matches!(result, Err(DownloadError::Cancelled)),
        "{result:?}"
    );
    eprintln!("extraction stopped {took:?} after cancel");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        entries(&dir).is_empty(),
        "left on disk: {:?}",
        entries(&dir)
    );
}

#[test]
fn zip_extraction_with_a_cancelled_token_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    std::fs::write(&archive, make_zip(&[("a.txt", Entry::File(b"a", 0o644))])).unwrap();
    let dest = tmp.path().join("out");
    let cancel = CancellationToken::new();
    cancel.cancel();

    let err = extract_zip_with(&archive, &dest, &UnzipLimits::default(), &cancel).unwrap_err();

    assert!(matches!(err, UnzipError::Cancelled), "{err}");
    assert!(entries(&dest).is_empty());
}

fn small_limits(max_total_bytes: u64) -> UnzipLimits {
    UnzipLimits {
        max_total_bytes,
        ..UnzipLimits::default()
    }
}

#[test]
fn zip_expanding_past_the_size_limit_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bomb.zip");
    std::fs::write(&archive, zeros_zip("big.bin", 64 * MIB, None, REGULAR)).unwrap();
    let dest = tmp.path().join("out");

    let err = extract_zip_with(
        &archive,
        &dest,
        &small_limits(MIB),
        &CancellationToken::new(),
    )
    .unwrap_err();

    assert!(matches!(err, UnzipError::TooLarge { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "zip archive expands to more than 1 MiB (the limit); refused as a possible zip bomb"
    );
    assert!(entries(&dest).is_empty(), "written: {:?}", entries(&dest));
}

#[test]
fn zip_lying_about_its_size_is_stopped_by_the_bytes_written() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("liar.zip");
    // The headers claim 10 bytes; the data inflates to 64 MiB.
    std::fs::write(&archive, zeros_zip("big.bin", 64 * MIB, Some(10), REGULAR)).unwrap();
    let dest = tmp.path().join("out");

    let err = extract_zip_with(
        &archive,
        &dest,
        &small_limits(MIB),
        &CancellationToken::new(),
    )
    .unwrap_err();

    assert!(matches!(err, UnzipError::TooLarge { .. }), "{err}");
    assert!(entries(&dest).is_empty(), "left: {:?}", entries(&dest));
}

#[test]
fn zip_within_the_size_limit_is_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    std::fs::write(
        &archive,
        make_zip(&[
            ("a.bin", Entry::File(&[7; 1000], 0o644)),
            ("b.bin", Entry::File(&[8; 24], 0o644)),
        ]),
    )
    .unwrap();
    let dest = tmp.path().join("out");

    let n = extract_zip_with(
        &archive,
        &dest,
        &small_limits(1024),
        &CancellationToken::new(),
    )
    .unwrap();

    assert_eq!(n, 2);
    assert_eq!(std::fs::read(dest.join("a.bin")).unwrap(), [7; 1000]);
}

#[test]
fn zip_with_too_many_entries_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("many.zip");
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let items: Vec<(&str, Entry<'_>)> = names
        .iter()
        .map(|n| (n.as_str(), Entry::File(b"x", 0o644)))
        .collect();
    std::fs::write(&archive, make_zip(&items)).unwrap();
    let dest = tmp.path().join("out");
    let limits = UnzipLimits {
        max_entries: 4,
        ..UnzipLimits::default()
    };

    let err = extract_zip_with(&archive, &dest, &limits, &CancellationToken::new()).unwrap_err();

    assert!(
        matches!(err, UnzipError::TooManyEntries { count: 5, limit: 4 }),
        "{err}"
    );
    assert!(entries(&dest).is_empty());
}

#[tokio::test]
async fn zip_symlink_with_a_huge_target_is_refused_without_reading_it() {
    let _heavy = HEAVY.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("link.zip");
    std::fs::write(&archive, zeros_zip("link", 256 * MIB, None, SYMLINK)).unwrap();
    let dest = tmp.path().join("out");

    let watch = RssWatch::start();
    let err = extract_zip(&archive, &dest).unwrap_err();
    let growth = watch.growth();

    assert!(
        matches!(err, UnzipError::SymlinkTargetTooLong { .. }),
        "{}",
        err.to_string().chars().take(200).collect::<String>()
    );
    assert!(
        err.to_string().len() < 200,
        "{} chars",
        err.to_string().len()
    );
    assert!(growth < RSS_BUDGET, "RSS grew by {} MiB", growth / MIB);
    assert!(entries(&dest).is_empty());
}

#[test]
fn zip_symlink_target_longer_than_linux_allows_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let fits = format!("{}a", "a/".repeat(2047)); // 4095 bytes, the most a link can hold
    std::fs::write(&archive, make_zip(&[("ok", Entry::Symlink(&fits))])).unwrap();
    let dest = tmp.path().join("out");
    extract_zip(&archive, &dest).unwrap();
    assert_eq!(
        std::fs::read_link(dest.join("ok")).unwrap(),
        PathBuf::from(&fits)
    );

    let too_long = format!("{fits}b");
    std::fs::write(
        &archive,
        make_zip(&[
            ("first.txt", Entry::File(b"x", 0o644)),
            ("long", Entry::Symlink(&too_long)),
        ]),
    )
    .unwrap();
    let err = extract_zip(&archive, &dest).unwrap_err();

    assert!(
        matches!(err, UnzipError::SymlinkTargetTooLong { ref entry } if entry == "long"),
        "{err}"
    );
    assert!(err.to_string().contains("4095"), "{err}");
    assert_eq!(entries(&dest), ["ok"], "nothing written");
}

#[test]
fn escaping_symlink_target_is_shortened_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let target = "../".repeat(1000);
    std::fs::write(&archive, make_zip(&[("link", Entry::Symlink(&target))])).unwrap();

    let err = extract_zip(&archive, &tmp.path().join("out")).unwrap_err();

    assert!(matches!(err, UnzipError::UnsafeSymlink { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("../../"), "{text}");
    assert!(text.len() < 300, "{} chars: {text}", text.len());
}

// ---------------------------------------------------------------- uploads

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
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();

    let sent = upload_file(
        &reqwest::Client::new(),
        &file,
        &server.url("a.txt"),
        "text/plain",
        &fast_retries(3),
    )
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
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();

    let err = upload_file(
        &reqwest::Client::new(),
        &file,
        &server.url("a.txt"),
        "text/plain",
        &fast_retries(3),
    )
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
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();

    let err = upload_file(
        &reqwest::Client::new(),
        &file,
        &server.url("a.txt"),
        "text/plain",
        &fast_retries(4),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, UploadError::Status(403)), "{err}");
    assert_eq!(server.put_attempts("a.txt"), 1);
}

#[tokio::test]
async fn upload_connection_refused_fails_after_all_attempts() {
    let port = refused_port();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();
    let started = Instant::now();

    let err = upload_file(
        &reqwest::Client::new(),
        &file,
        &format!("http://127.0.0.1:{port}/a.txt?X-Amz-Signature=topsecret"),
        "text/plain",
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
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, b"payload").unwrap();
    let started = Instant::now();

    let err = upload_file(
        &reqwest::Client::new(),
        &file,
        "not a url",
        "text/plain",
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

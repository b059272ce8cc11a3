//! Artifacts end to end: real files in temporary directories, the real outbox, uploads
//! to the real loopback blob server.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtimeuse_protocol::{
    ArtifactUploadRequest, ArtifactUploadResponse, Incoming, ServerMessage, parse_server_frame,
};
use runtimeuse_server::artifacts::{ArtifactOptions, Artifacts};
use runtimeuse_server::outbox::{Outbox, OutboxReceiver};
use runtimeuse_server::upload::RetryPolicy;
use runtimeuse_testkit::BlobServer;
use runtimeuse_testkit::blob_server::{FNV_OFFSET, checksum_update};
use tempfile::TempDir;

use support::MIB;

/// How long a request may take to show up.
const ANNOUNCE: Duration = Duration::from_secs(3);
/// How long we listen to be sure nothing (more) is announced.
const QUIET: Duration = Duration::from_millis(700);

fn fast_options() -> ArtifactOptions {
    ArtifactOptions {
        late_event_grace: Duration::from_millis(300),
        handshake_timeout: Duration::from_secs(10),
        upload_timeout: Duration::from_secs(60),
        stability_window: Duration::from_millis(300),
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..ArtifactOptions::default()
    }
}

/// Waits far longer than the bounds the tests put on what must not wait (30 s grace,
/// 60 s handshake timeout), so that those bounds hold on a busy machine too.
fn long_waits() -> ArtifactOptions {
    ArtifactOptions {
        late_event_grace: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(60),
        ..ArtifactOptions::default()
    }
}

struct Harness {
    artifacts: Artifacts,
    frames: OutboxReceiver,
    blobs: BlobServer,
}

impl Harness {
    async fn new(options: ArtifactOptions) -> Self {
        let (outbox, frames) = Outbox::channel(64);
        Self {
            artifacts: Artifacts::new(outbox, reqwest::Client::new(), options),
            frames,
            blobs: BlobServer::start().await,
        }
    }

    /// A fresh temporary directory, watched with `rules`.
    fn watched(&self, rules: Option<&str>) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.artifacts
            .watch(&[path_string(dir.path())], rules)
            .unwrap();
        dir
    }

    /// The next upload request within `wait`.
    async fn request_within(&mut self, wait: Duration) -> Option<ArtifactUploadRequest> {
        let frame = tokio::time::timeout(wait, self.frames.recv())
            .await
            .ok()??;
        match parse_server_frame(&frame) {
            Ok(Incoming::Message(ServerMessage::ArtifactUploadRequestMessage(request))) => {
                Some(request)
            }
            other => panic!("unexpected frame {frame}: {other:?}"),
        }
    }

    async fn request(&mut self) -> ArtifactUploadRequest {
        self.request_within(ANNOUNCE)
            .await
            .expect("an artifact upload request")
    }

    async fn assert_quiet(&mut self) {
        if let Some(request) = self.request_within(QUIET).await {
            panic!("unexpected upload request for {}", request.filepath);
        }
    }

    /// Answers `request` with an upload to `/<key>` of the blob server.
    fn answer(&self, request: &ArtifactUploadRequest, key: &str, content_type: &str) {
        self.artifacts.on_upload_response(ArtifactUploadResponse {
            filename: request.filename.clone(),
            filepath: request.filepath.clone(),
            presigned_url: format!("{}?X-Amz-Signature=secret", self.blobs.url(key)),
            content_type: content_type.to_owned(),
        });
    }

    async fn uploaded(&self, key: &str, count: usize) -> runtimeuse_testkit::Upload {
        let uploads = self
            .blobs
            .wait_for_uploads(key, count, Duration::from_secs(60))
            .await;
        uploads[count - 1].clone()
    }
}

fn path_string(path: &Path) -> String {
    path.display().to_string()
}

/// The absolute path the runtime reports for `path`.
fn reported(path: &Path) -> String {
    path_string(&std::fs::canonicalize(path).unwrap())
}

fn write(path: &Path, content: &str) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
    path.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_file_is_announced_quickly_then_uploaded_with_its_content_type() {
    // A closed file is announced at once, not after the stability window (made long here
    // so that the bound below tells the two apart on a busy machine too).
    let options = ArtifactOptions {
        stability_window: Duration::from_secs(30),
        ..fast_options()
    };
    let mut h = Harness::new(options).await;
    let dir = h.watched(None);
    let file = write(&dir.path().join("report.txt"), "hello artifacts");
    let closed = Instant::now();
    let request = h.request().await;
    let latency = closed.elapsed();
    eprintln!("announce latency after close: {latency:?}");
    assert!(latency < Duration::from_secs(10), "{latency:?}");
    assert_eq!(request.filename, "report.txt");
    assert_eq!(request.filepath, reported(&file));

    h.answer(&request, "bucket/report.txt", "text/plain");
    let upload = h.uploaded("bucket/report.txt", 1).await;
    assert_eq!(upload.body.as_deref(), Some(&b"hello artifacts"[..]));
    assert_eq!(upload.content_type.as_deref(), Some("text/plain"));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_in_a_just_created_nested_directory_is_announced() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let file = write(&dir.path().join("a/b/c/deep.txt"), "deep");
    let request = h.request().await;
    assert_eq!(request.filepath, reported(&file));
    assert_eq!(request.filename, "deep.txt");
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_writing_into_fresh_subdirectories_is_fully_announced() {
    const COUNT: usize = 40;
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let script =
        format!("for i in $(seq 1 {COUNT}); do mkdir -p d/$i/a/b && echo $i > d/$i/a/b/f; done");
    let status = tokio::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..COUNT {
        seen.insert(h.request().await.filepath);
    }
    let expected: std::collections::BTreeSet<String> = (1..=COUNT)
        .map(|i| reported(&dir.path().join(format!("d/{i}/a/b/f"))))
        .collect();
    assert_eq!(seen, expected);
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_moved_into_the_directory_is_announced() {
    let mut h = Harness::new(fast_options()).await;
    let outside = tempfile::tempdir().unwrap();
    let dir = h.watched(None);
    let staged = write(&outside.path().join("staged.bin"), "payload");
    let target = dir.path().join("moved.bin");
    std::fs::rename(&staged, &target).unwrap();
    assert_eq!(h.request().await.filepath, reported(&target));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_file_renamed_at_once_announces_only_the_final_name() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    write(&dir.path().join("out.json.tmp"), "{}");
    let target = dir.path().join("out.json");
    std::fs::rename(dir.path().join("out.json.tmp"), &target).unwrap();
    assert_eq!(h.request().await.filepath, reported(&target));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_content_rules_skip_matching_files() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(Some("*.log\nscratch/\n"));
    write(&dir.path().join("debug.log"), "noise");
    write(&dir.path().join("scratch/notes.txt"), "noise");
    let kept = write(&dir.path().join("result.txt"), "signal");
    assert_eq!(h.request().await.filepath, reported(&kept));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifactignore_is_respected_and_reread_after_it_changes() {
    let mut h = Harness::new(fast_options()).await;
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join(".artifactignore"), "*.tmp\n");
    h.artifacts.watch(&[path_string(dir.path())], None).unwrap();
    write(&dir.path().join("a.tmp"), "ignored");
    let kept = write(&dir.path().join("b.txt"), "kept");
    assert_eq!(h.request().await.filepath, reported(&kept));
    h.assert_quiet().await;

    write(&dir.path().join(".artifactignore"), "*.txt\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    write(&dir.path().join("c.txt"), "now ignored");
    let now_kept = write(&dir.path().join("d.tmp"), "now kept");
    assert_eq!(h.request().await.filepath, reported(&now_kept));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rules_ignore_node_modules_and_friends() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    write(&dir.path().join("node_modules/pkg/x.js"), "module");
    write(&dir.path().join("app/__pycache__/m.pyc"), "bytecode");
    write(&dir.path().join(".venv/bin/python"), "venv");
    let kept = write(&dir.path().join("app/main.py"), "print()");
    assert_eq!(h.request().await.filepath, reported(&kept));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_files_and_symlinks_are_skipped() {
    let mut h = Harness::new(fast_options()).await;
    let outside = tempfile::tempdir().unwrap();
    let dir = h.watched(None);
    write(&dir.path().join("empty.txt"), "");
    let real = write(&outside.path().join("real.txt"), "outside");
    std::os::unix::fs::symlink(&real, dir.path().join("link.txt")).unwrap();
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_present_before_watching_are_not_announced() {
    let mut h = Harness::new(fast_options()).await;
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("old.txt"), "old");
    h.artifacts.watch(&[path_string(dir.path())], None).unwrap();
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_file_triggers_a_second_round() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let file = write(&dir.path().join("data.csv"), "v1");
    let first = h.request().await;
    h.answer(&first, "data/1", "text/csv");
    assert_eq!(
        h.uploaded("data/1", 1).await.body.as_deref(),
        Some(&b"v1"[..])
    );

    write(&file, "version two");
    let second = h.request().await;
    assert_eq!(second.filepath, reported(&file));
    h.answer(&second, "data/2", "text/csv");
    let upload = h.uploaded("data/2", 1).await;
    assert_eq!(upload.body.as_deref(), Some(&b"version two"[..]));
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_during_a_pending_handshake_coalesce_into_one_follow_up() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let file = write(&dir.path().join("log.txt"), "one");
    let first = h.request().await;
    for content in ["two", "three", "four"] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(&file, content);
    }
    h.assert_quiet().await;

    h.answer(&first, "log/1", "text/plain");
    let follow_up = h.request().await;
    assert_eq!(follow_up.filepath, reported(&file));
    h.answer(&follow_up, "log/2", "text/plain");
    assert_eq!(
        h.uploaded("log/2", 1).await.body.as_deref(),
        Some(&b"four"[..])
    );
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_directories_are_watched_and_accumulate() {
    let mut h = Harness::new(fast_options()).await;
    let (one, two, three) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    h.artifacts
        .watch(&[path_string(one.path()), path_string(two.path())], None)
        .unwrap();
    h.artifacts
        .watch(&[path_string(three.path()), path_string(one.path())], None)
        .unwrap();
    assert_eq!(h.artifacts.watched_dirs().len(), 3);

    let mut expected = Vec::new();
    for (i, dir) in [&one, &two, &three].into_iter().enumerate() {
        expected.push(reported(&write(&dir.path().join(format!("f{i}.txt")), "x")));
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(h.request().await.filepath);
    }
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_relative_directories_are_created_and_made_absolute() {
    let mut h = Harness::new(fast_options()).await;
    let base = tempfile::tempdir().unwrap();
    let nested = base.path().join("not/yet/there");
    h.artifacts.watch(&[path_string(&nested)], None).unwrap();
    assert!(nested.is_dir());
    let file = write(&nested.join("made.txt"), "made");
    assert_eq!(h.request().await.filepath, reported(&file));

    // Integration tests run in the crate's directory; stay inside the workspace target.
    let relative = format!("../../target/artifacts-relative-{}", std::process::id());
    let _cleanup = RemoveOnDrop(PathBuf::from(&relative));
    h.artifacts
        .watch(std::slice::from_ref(&relative), None)
        .unwrap();
    let absolute = std::fs::canonicalize(&relative).unwrap();
    assert!(absolute.is_absolute());
    assert!(h.artifacts.watched_dirs().contains(&absolute));
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_a_late_handshake_and_its_upload() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    write(&dir.path().join("late.txt"), "answered during drain");
    let request = h.request().await;

    let artifacts = h.artifacts.clone();
    let started = Instant::now();
    let drain = tokio::spawn(async move { artifacts.drain().await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!drain.is_finished(), "drain must wait for the handshake");
    h.answer(&request, "late", "text/plain");
    drain.await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    let uploads = h.blobs.uploads("late");
    assert_eq!(
        uploads.len(),
        1,
        "the upload finished before drain returned"
    );
    assert_eq!(
        uploads[0].body.as_deref(),
        Some(&b"answered during drain"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_announces_a_file_written_during_the_grace_period() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let artifacts = h.artifacts.clone();
    let drain = tokio::spawn(async move { artifacts.drain().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let file = write(&dir.path().join("last.txt"), "last words");
    let request = h.request().await;
    assert_eq!(request.filepath, reported(&file));
    h.answer(&request, "last", "text/plain");
    drain.await.unwrap();
    assert_eq!(h.blobs.uploads("last").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_returns_promptly_when_the_client_is_gone() {
    let mut h = Harness::new(long_waits()).await;
    let dir = h.watched(None);
    write(&dir.path().join("unanswered.txt"), "nobody will answer");
    h.request().await;
    h.frames.close();
    let started = Instant::now();
    h.artifacts.drain().await;
    h.artifacts.drain().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_without_watched_directories_is_immediate_and_repeatable() {
    let h = Harness::new(long_waits()).await;
    let started = Instant::now();
    h.artifacts.drain().await;
    h.artifacts.drain().await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_picked_up_reports_whether_the_request_was_sent() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(Some("*.log"));
    let file = write(&dir.path().join("picked.txt"), "pick me");
    assert!(
        h.artifacts
            .wait_picked_up(&file, Duration::from_secs(3))
            .await
    );
    // The request really is on its way to the client.
    assert_eq!(h.request().await.filepath, reported(&file));
    // Already announced in this version: true at once.
    assert!(
        h.artifacts
            .wait_picked_up(&file, Duration::from_millis(1))
            .await
    );

    let outside = tempfile::tempdir().unwrap();
    let stray = write(&outside.path().join("stray.txt"), "not watched");
    let ignored = write(&dir.path().join("skip.log"), "ignored");
    let started = Instant::now();
    assert!(
        !h.artifacts
            .wait_picked_up(&stray, Duration::from_secs(30))
            .await
    );
    assert!(
        !h.artifacts
            .wait_picked_up(&ignored, Duration::from_secs(30))
            .await
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_picked_up_times_out_while_a_rewrite_awaits_its_round() {
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let file = write(&dir.path().join("twice.txt"), "first");
    h.request().await;
    write(&file, "second version");
    // The first round is unanswered, so the rewrite is not announced yet.
    let started = Instant::now();
    assert!(
        !h.artifacts
            .wait_picked_up(&file, Duration::from_millis(400))
            .await
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_for_an_unknown_file_is_ignored() {
    let mut h = Harness::new(fast_options()).await;
    let _dir = h.watched(None);
    h.answer(
        &ArtifactUploadRequest {
            filename: "passwd".into(),
            filepath: "/etc/passwd".into(),
        },
        "stolen",
        "text/plain",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.blobs.put_attempts("stolen"), 0);
    h.assert_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sparse_file_is_uploaded_in_full() {
    const SIZE: u64 = 200 * MIB;
    let mut h = Harness::new(fast_options()).await;
    let dir = h.watched(None);
    let path = dir.path().join("big.bin");
    std::fs::File::create(&path).unwrap().set_len(SIZE).unwrap();
    let request = h.request().await;
    assert_eq!(request.filepath, reported(&path));
    h.answer(&request, "big", "application/octet-stream");
    let upload = h.uploaded("big", 1).await;
    assert_eq!(upload.len, SIZE);
    let zeros = vec![0u8; MIB as usize];
    let expected = (0..SIZE / MIB).fold(FNV_OFFSET, |sum, _| checksum_update(sum, &zeros));
    assert_eq!(upload.checksum, expected);
    assert_eq!(
        upload.content_type.as_deref(),
        Some("application/octet-stream")
    );
}

/// A loopback HTTP server that holds every PUT for `hold` after reading its body, then
/// answers 200; records the most requests it held at once and how many it answered.
struct HoldingServer {
    base: String,
    peak: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

impl HoldingServer {
    async fn start(hold: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (peak, answered) = (Arc::default(), Arc::default());
        let held = Arc::new(AtomicUsize::new(0));
        tokio::spawn({
            let (peak, answered): (Arc<AtomicUsize>, Arc<AtomicUsize>) =
                (Arc::clone(&peak), Arc::clone(&answered));
            async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let (peak, answered, held) = (peak.clone(), answered.clone(), held.clone());
                    tokio::spawn(async move {
                        let mut data = Vec::new();
                        let mut buf = [0u8; 4096];
                        loop {
                            // One request: head, then `Content-Length` bytes of body.
                            let (len, start) = loop {
                                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                                    let head =
                                        String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                                    let len: usize = head
                                        .lines()
                                        .find_map(|l| l.strip_prefix("content-length:"))
                                        .map_or(0, |v| v.trim().parse().unwrap());
                                    break (len, end + 4);
                                }
                                match stream.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => data.extend_from_slice(&buf[..n]),
                                }
                            };
                            while data.len() < start + len {
                                match stream.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => data.extend_from_slice(&buf[..n]),
                                }
                            }
                            data.drain(..start + len);
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(hold).await;
                            held.fetch_sub(1, Ordering::SeqCst);
                            answered.fetch_add(1, Ordering::SeqCst);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if stream.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self {
            base,
            peak,
            answered,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_one_session_run_at_most_eight_at_once() {
    const FILES: usize = 12;
    let mut h = Harness::new(fast_options()).await;
    assert_eq!(ArtifactOptions::default().max_concurrent_uploads, 8);
    let server = HoldingServer::start(Duration::from_millis(800)).await;
    let dir = h.watched(None);
    for i in 0..FILES {
        write(&dir.path().join(format!("f{i}.txt")), "payload");
    }
    for _ in 0..FILES {
        let request = h.request().await;
        h.artifacts.on_upload_response(ArtifactUploadResponse {
            presigned_url: format!("{}/{}", server.base, request.filename),
            content_type: "text/plain".to_owned(),
            filename: request.filename,
            filepath: request.filepath,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.answered.load(Ordering::SeqCst) < FILES {
        assert!(Instant::now() < deadline, "uploads did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let peak = server.peak.load(Ordering::SeqCst);
    eprintln!("at most {peak} uploads at once");
    assert!(peak <= 8, "{peak} uploads ran at once");
    assert!(peak >= 2, "uploads did not overlap at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_has_its_own_upload_slots() {
    let options = ArtifactOptions {
        max_concurrent_uploads: 1,
        ..fast_options()
    };
    let server = HoldingServer::start(Duration::from_millis(800)).await;
    // Two sessions from clones of one set of options: one slot each, so both run.
    let mut sessions = [
        Harness::new(options.clone()).await,
        Harness::new(options.clone()).await,
    ];
    let mut dirs = Vec::new();
    for (i, h) in sessions.iter_mut().enumerate() {
        let dir = h.watched(None);
        write(&dir.path().join(format!("s{i}.txt")), "payload");
        let request = h.request().await;
        h.artifacts.on_upload_response(ArtifactUploadResponse {
            presigned_url: format!("{}/{}", server.base, request.filename),
            content_type: "text/plain".to_owned(),
            filename: request.filename,
            filepath: request.filepath,
        });
        dirs.push(dir);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.answered.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "uploads did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.peak.load(Ordering::SeqCst), 2);
}

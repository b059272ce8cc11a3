//! Artifacts under load: storms of new files, large trees, event overflow. Real files,
//! the real watcher and the real outbox; every upload request is answered the way a
//! client does, so a second round for the same file would show up as a second request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use runtimeuse_protocol::{ArtifactUploadResponse, Incoming, ServerMessage, parse_server_frame};
use runtimeuse_server::artifacts::{ArtifactOptions, Artifacts};
use runtimeuse_server::outbox::{Outbox, OutboxReceiver};
use runtimeuse_server::upload::RetryPolicy;

/// Hang guard for a whole storm.
const STORM_GUARD: Duration = Duration::from_secs(240);
/// Silence after which no more requests are expected.
const QUIET: Duration = Duration::from_secs(3);

fn options() -> ArtifactOptions {
    ArtifactOptions {
        late_event_grace: Duration::from_millis(300),
        stability_window: Duration::from_millis(300),
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..ArtifactOptions::default()
    }
}

fn canonical(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap().display().to_string()
}

/// Answers every upload request (with a URL nobody listens on, so uploads fail fast and
/// cost nothing) and counts the requests per file, until `QUIET` passes without one
/// after `done` was set.
async fn answer_all(
    artifacts: &Artifacts,
    frames: &mut OutboxReceiver,
    done: &AtomicBool,
) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    loop {
        let frame = match tokio::time::timeout(QUIET, frames.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) if done.load(Ordering::Acquire) => break,
            Err(_) => continue,
        };
        let Ok(Incoming::Message(ServerMessage::ArtifactUploadRequestMessage(request))) =
            parse_server_frame(&frame)
        else {
            panic!("unexpected frame {frame}");
        };
        *seen.entry(request.filepath.clone()).or_default() += 1;
        artifacts.on_upload_response(ArtifactUploadResponse {
            filename: request.filename,
            filepath: request.filepath,
            presigned_url: "http://127.0.0.1:9/unreachable".into(),
            content_type: "text/plain".into(),
        });
    }
    seen
}

/// Writes `count` small files spread over `dirs` new subdirectories of `root`, from a
/// plain thread (as a command would), and returns their paths.
fn storm(root: &Path, dirs: usize, count: usize) -> Vec<PathBuf> {
    let mut written = Vec::with_capacity(count);
    for d in 0..dirs {
        std::fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
    }
    for i in 0..count {
        let path = root
            .join(format!("d{}", i % dirs))
            .join(format!("f{i}.txt"));
        std::fs::write(&path, format!("file {i}\n")).unwrap();
        written.push(path);
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_new_files_announces_each_file_exactly_once() {
    let (outbox, mut frames) = Outbox::channel(64);
    let artifacts = Artifacts::new(outbox, reqwest::Client::new(), options());
    let dir = tempfile::tempdir().unwrap();
    artifacts
        .watch(&[dir.path().display().to_string()], None)
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let root = dir.path().to_path_buf();
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            let written = storm(&root, 40, 20_000);
            done.store(true, Ordering::Release);
            written
        })
    };
    let seen = tokio::time::timeout(STORM_GUARD, answer_all(&artifacts, &mut frames, &done))
        .await
        .expect("the storm settles");
    let written = writer.join().unwrap();

    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} of {} files announced more than once, e.g. {:?}",
        twice.len(),
        written.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
    let missing: Vec<_> = written
        .iter()
        .map(|p| canonical(p))
        .filter(|p| !seen.contains_key(p))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} files never announced, e.g. {:?}",
        missing.len(),
        written.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), written.len());
}

/// Counts how often a task on the runtime gets to run while `work` is in progress.
struct Ticker {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start() -> Self {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (ticks.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Acquire) {
                t.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        Self { ticks, stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// A tree of `dirs` directories holding one file each.
fn large_tree(root: &Path, dirs: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("a{}", d % 50)).join(format!("b{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x.txt"), "x").unwrap();
    }
}

// One worker, and the watch runs in a task on it: if watching a large tree blocked that
// worker, the ticker (another task) could not run until the watch returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn watching_a_large_tree_leaves_the_async_workers_free() {
    let dir = tempfile::tempdir().unwrap();
    large_tree(dir.path(), 20_000);
    let (outbox, _frames) = Outbox::channel(64);
    let artifacts = Artifacts::new(outbox, reqwest::Client::new(), options());

    let ticker = Ticker::start();
    let path = dir.path().display().to_string();
    let watcher = artifacts.clone();
    let ticks = ticker.ticks.clone();
    let during = tokio::spawn(async move {
        let before = ticks.load(Ordering::Relaxed);
        watcher.watch(&[path], None).unwrap();
        ticks.load(Ordering::Relaxed) - before
    })
    .await
    .unwrap();
    assert!(
        during > 0,
        "other tasks never ran while a 20000-directory tree was being watched"
    );
    drop(ticker);
    artifacts.drain().await;
}

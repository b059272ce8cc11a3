//! The recursive file-system watcher: notify events become a bounded stream of
//! [`FsEvent`]s.
//!
//! notify calls us on its own thread. We never block it: events go through `try_send`,
//! and when the channel is full we raise [`Overflow`] instead, which makes the consumer
//! rescan every directory (the same answer as a kernel queue overflow).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher};
use tokio::sync::{Notify, mpsc};
use tracing::warn;

/// Events queued between notify's thread and the consumer before we fall back to a rescan.
const EVENT_CAPACITY: usize = 1024;

/// What happened to a path, reduced to what readiness needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FsEvent {
    /// A writer closed the file: it is complete (Linux close-write).
    Closed(PathBuf),
    /// The file was created or written to and may still be in progress.
    Written(PathBuf),
    /// A path appeared at once (renamed or moved in, or an unknown kind of creation).
    Arrived(PathBuf),
    /// A directory was created; files may already be inside.
    DirCreated(PathBuf),
    /// The path is gone (deleted or moved away).
    Removed(PathBuf),
    /// Events were lost: look at everything again.
    Rescan,
}

/// Raised when events were dropped; the consumer then rescans.
#[derive(Debug, Default)]
pub(super) struct Overflow {
    raised: AtomicBool,
    wake: Notify,
}

impl Overflow {
    fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Clears the flag, saying whether it was raised.
    pub(super) fn take(&self) -> bool {
        self.raised.swap(false, Ordering::AcqRel)
    }

    /// Resolves after the flag was raised (a raise before the call counts).
    pub(super) async fn raised(&self) {
        self.wake.notified().await;
    }
}

/// A running watcher (add directories with `notify::Watcher::watch`) and its events.
pub(super) struct FsWatcher {
    /// The notify watcher; dropping it stops all watches.
    pub(super) watcher: RecommendedWatcher,
    /// Its events.
    pub(super) events: mpsc::Receiver<FsEvent>,
    /// Raised when events were dropped.
    pub(super) overflow: Arc<Overflow>,
}

/// Starts a watcher that does not follow symlinks.
pub(super) fn start() -> notify::Result<FsWatcher> {
    let (tx, events) = mpsc::channel(EVENT_CAPACITY);
    let overflow = Arc::new(Overflow::default());
    let sink = Sink {
        tx,
        overflow: overflow.clone(),
        last: None,
    };
    let config = notify::Config::default().with_follow_symlinks(false);
    let watcher = <RecommendedWatcher as notify::Watcher>::new(sink, config)?;
    Ok(FsWatcher {
        watcher,
        events,
        overflow,
    })
}

struct Sink {
    tx: mpsc::Sender<FsEvent>,
    overflow: Arc<Overflow>,
    /// The last event queued, to drop runs of identical `Written` events (one per
    /// `write(2)` of a large file).
    last: Option<FsEvent>,
}

impl notify::EventHandler for Sink {
    fn handle_event(&mut self, event: notify::Result<Event>) {
        match event {
            Ok(event) => {
                for fs_event in translate(event) {
                    self.push(fs_event);
                }
            }
            Err(e) => {
                warn!(error = %e, "artifact watcher error; rescanning");
                self.push(FsEvent::Rescan);
            }
        }
    }
}

impl Sink {
    fn push(&mut self, event: FsEvent) {
        if matches!(event, FsEvent::Written(_)) && self.last.as_ref() == Some(&event) {
            return;
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => self.last = Some(event),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.last = None;
                self.overflow.raise();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

fn translate(event: Event) -> Vec<FsEvent> {
    if event.need_rescan() {
        return vec![FsEvent::Rescan];
    }
    let per_path: fn(PathBuf) -> FsEvent = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => FsEvent::Closed,
        // Opens and reads (our own uploads among them) change nothing.
        EventKind::Access(_) => return Vec::new(),
        EventKind::Create(CreateKind::Folder) => FsEvent::DirCreated,
        EventKind::Create(CreateKind::File) => FsEvent::Written,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => FsEvent::Removed,
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            // [from, to]: the source went away, the target arrived.
            let mut paths = event.paths.into_iter();
            return paths
                .next()
                .map(FsEvent::Removed)
                .into_iter()
                .chain(paths.next().map(FsEvent::Arrived))
                .collect();
        }
        EventKind::Modify(ModifyKind::Name(_)) => FsEvent::Arrived,
        EventKind::Modify(_) => FsEvent::Written,
        EventKind::Remove(_) => FsEvent::Removed,
        EventKind::Create(_) | EventKind::Any | EventKind::Other => FsEvent::Arrived,
    };
    event.paths.into_iter().map(per_path).collect()
}

//! The recursive file-system watcher: notify events become a bounded stream of
//! [`FsEvent`]s.
//!
//! notify calls us on its own thread. We never block it: events go through `try_send`,
//! and when the channel is full we raise [`Overflow`] instead, which makes the consumer
//! rescan every directory (the same answer as a kernel queue overflow).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{ErrorKind, Event, EventKind, RecommendedWatcher, RecursiveMode};
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

/// Directories left out when a tree including them is watched: virtual file systems,
/// whose files are not artifacts (and parts of which refuse to be watched).
const VIRTUAL_DIRS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Watches `root` and everything below it with `watch`. A directory inside that cannot be
/// watched (unreadable, say `/proc/1/fdinfo` of another user) is left out, with a warning,
/// instead of failing the whole tree: its parent is watched on its own and each sibling
/// subtree separately. Only `root` itself failing, or the OS's watch limit, is an error.
/// New directories later created directly in such a split parent are not watched.
pub(super) fn watch_tree(
    root: &Path,
    watch: &mut dyn FnMut(&Path, RecursiveMode) -> notify::Result<()>,
) -> notify::Result<()> {
    watch_subtree(root, watch)
}

fn watch_subtree(
    dir: &Path,
    watch: &mut dyn FnMut(&Path, RecursiveMode) -> notify::Result<()>,
) -> notify::Result<()> {
    let whole = if contains_virtual(dir) {
        None
    } else {
        Some(watch(dir, RecursiveMode::Recursive))
    };
    match whole {
        Some(Ok(())) => return Ok(()),
        Some(Err(e)) if matches!(e.kind, ErrorKind::MaxFilesWatch) => return Err(e),
        Some(Err(e)) => {
            tracing::debug!(dir = %dir.display(), error = %e, "watching the tree failed; splitting it")
        }
        None => {}
    }
    watch(dir, RecursiveMode::NonRecursive)?;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let path = entry.path();
        if !is_dir || VIRTUAL_DIRS.iter().any(|v| path == Path::new(v)) {
            continue;
        }
        match watch_subtree(&path, watch) {
            Ok(()) => {}
            Err(e) if matches!(e.kind, ErrorKind::MaxFilesWatch) => return Err(e),
            Err(e) => {
                warn!(dir = %path.display(), error = %e, "artifact directory cannot be watched; left out")
            }
        }
    }
    Ok(())
}

/// Whether a virtual file system lies at or below `dir`'s top (only `/` holds them).
fn contains_virtual(dir: &Path) -> bool {
    dir == Path::new("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwatchable_directory_is_left_out_and_the_rest_is_watched() {
        let root = tempfile::tempdir().unwrap();
        for dir in ["a/deep/locked/inner", "a/deep/fine", "b/c"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        let locked = root.path().join("a/deep/locked");
        let mut calls: Vec<(PathBuf, bool)> = Vec::new();
        let mut watch = |path: &Path, mode: RecursiveMode| {
            calls.push((path.to_owned(), mode == RecursiveMode::Recursive));
            let blocked = path.starts_with(&locked);
            let covers_locked = mode == RecursiveMode::Recursive && locked.starts_with(path);
            if blocked || covers_locked {
                Err(notify::Error::io(std::io::Error::from(
                    std::io::ErrorKind::PermissionDenied,
                )))
            } else {
                Ok(())
            }
        };
        watch_tree(root.path(), &mut watch).unwrap();
        let recursive: Vec<PathBuf> = calls
            .iter()
            .filter(|(_, rec)| *rec)
            .map(|(p, _)| p.strip_prefix(root.path()).unwrap().to_owned())
            .collect();
        assert!(recursive.contains(&PathBuf::from("b")), "{calls:?}");
        assert!(
            recursive.contains(&PathBuf::from("a/deep/fine")),
            "{calls:?}"
        );
        assert!(
            !calls
                .iter()
                .any(|(p, _)| p.starts_with(locked.join("inner"))),
            "nothing below the unwatchable directory is tried: {calls:?}"
        );
    }

    #[test]
    fn the_watch_limit_and_an_unwatchable_root_are_errors() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("x")).unwrap();
        let mut limit =
            |_: &Path, _: RecursiveMode| Err(notify::Error::new(ErrorKind::MaxFilesWatch));
        assert!(watch_tree(root.path(), &mut limit).is_err());
        let mut denied = |_: &Path, _: RecursiveMode| {
            Err(notify::Error::io(std::io::Error::from(
                std::io::ErrorKind::PermissionDenied,
            )))
        };
        assert!(watch_tree(root.path(), &mut denied).is_err());
    }

    #[test]
    fn virtual_file_systems_under_the_root_are_never_watched() {
        let mut calls: Vec<PathBuf> = Vec::new();
        let mut watch = |path: &Path, mode: RecursiveMode| {
            if mode == RecursiveMode::Recursive {
                calls.push(path.to_owned());
            }
            Ok(())
        };
        watch_tree(Path::new("/"), &mut watch).unwrap();
        for virtual_dir in VIRTUAL_DIRS {
            assert!(!calls.contains(&PathBuf::from(virtual_dir)), "{calls:?}");
        }
        assert!(calls.iter().all(|p| p != Path::new("/")), "{calls:?}");
    }
}

//! Deciding when a changed file is complete ("ready") and should be announced.
//!
//! On Linux a close-after-write makes a file ready after a few milliseconds of quiet
//! (enough for `write tmp; mv tmp out` to move the temporary away, and to fold a burst of
//! rewrites into one announcement). Files that appear complete (renamed or moved in, or
//! found by a scan) are ready once they hold still for a short settle time. Everything
//! else — other platforms, writers we never saw close — falls back to a stability check:
//! size, mtime and inode unchanged for the stability window.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use super::scan::{Signature, file_signature, is_real_dir, walk_files};
use super::shared::Shared;
use super::watch::FsEvent;

/// Quiet time after a close-write before the file counts as ready.
const CLOSE_SETTLE: Duration = Duration::from_millis(20);

/// Settle time of files that appear complete, where close-write events exist (elsewhere
/// such files get the full stability window).
const LINUX_SETTLE: Duration = Duration::from_millis(50);

/// A new directory is scanned again after this long, for files written into it before
/// the watcher had added a watch for it.
const NEW_DIR_RESCAN: Duration = Duration::from_millis(100);

struct Candidate {
    sig: Signature,
    due: Instant,
    window: Duration,
    /// A close-write proved a change: announce even if it looks like the known version.
    closed: bool,
}

/// Files that changed but are not known to be complete yet, and delayed scans.
pub(super) struct Readiness {
    candidates: HashMap<PathBuf, Candidate>,
    /// Due times of candidates (stale entries are skipped) and of delayed scans.
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Files last taken as ready without a close-write (found by a scan, or arrived):
    /// the close-write of the very write that was seen may still be on its way.
    unclosed: HashSet<PathBuf>,
    stability: Duration,
    settle: Duration,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Check(PathBuf),
    Scan(PathBuf),
}

impl Readiness {
    /// Readiness with the stability window of the options.
    pub(super) fn new(stability: Duration) -> Self {
        Self {
            candidates: HashMap::new(),
            timers: BinaryHeap::new(),
            unclosed: HashSet::new(),
            stability,
            settle: if cfg!(target_os = "linux") {
                LINUX_SETTLE.min(stability)
            } else {
                stability
            },
        }
    }

    /// Candidates whose writer already closed them: they become ready within the settle
    /// delay, so a request's result should wait for their announcement.
    pub(super) fn closed_pending(&self) -> usize {
        self.candidates.values().filter(|c| c.closed).count()
    }

    /// When [`Readiness::poll`] has work next.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((due, _))| *due)
    }

    /// Takes in one event (files become ready later, in [`Readiness::poll`]).
    pub(super) fn handle(&mut self, shared: &Shared, event: FsEvent) {
        match event {
            FsEvent::Closed(path) => {
                if rules_or_ignored(shared, &path) {
                    return;
                }
                let Some(sig) = file_signature(&path) else {
                    return;
                };
                if self.unclosed.remove(&path) && shared.lock().known.get(&path) == Some(&sig) {
                    // A scan took this version as ready before its writer's close-write
                    // was handled (events queue up behind a rescan in a storm of new
                    // files): the close proves nothing new.
                    return;
                }
                self.watch_file(path, sig, CLOSE_SETTLE.min(self.settle), true);
            }
            FsEvent::Written(path) => {
                if rules_or_ignored(shared, &path) {
                    return;
                }
                if let Some(candidate) = self.candidates.get_mut(&path) {
                    // A writer is at work again: wait for its close, not a short quiet.
                    candidate.window = self.stability;
                    return;
                }
                if let Some(sig) = file_signature(&path) {
                    self.watch_file(path, sig, self.stability, false);
                }
            }
            FsEvent::Arrived(path) => {
                if shared.lock().roots.reload_if_rules_file(&path) {
                    return;
                }
                if is_real_dir(&path) {
                    self.scan(shared, &path);
                } else if let Some(sig) = file_signature(&path) {
                    if !shared.lock().roots.is_ignored(&path, false) {
                        self.watch_file(path, sig, self.settle, false);
                    }
                } else {
                    self.forget(shared, &path);
                }
            }
            FsEvent::DirCreated(path) => {
                self.scan(shared, &path);
                let due = Instant::now() + NEW_DIR_RESCAN;
                self.timers.push(Reverse((due, Timer::Scan(path))));
            }
            FsEvent::Removed(path) => {
                shared.lock().roots.reload_if_rules_file(&path);
                self.forget(shared, &path);
            }
            FsEvent::Rescan => self.rescan_all(shared),
        }
    }

    /// Runs what is due by `now`; files that became ready are pushed to `ready`.
    pub(super) fn poll(&mut self, shared: &Shared, now: Instant, ready: &mut Vec<PathBuf>) {
        while let Some(Reverse((due, _))) = self.timers.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Scan(dir) => self.scan(shared, &dir),
                Timer::Check(path) => self.check(shared, path, due, now, ready),
            }
        }
    }

    /// Watching stops: runs the delayed scans and takes every candidate that is a
    /// non-empty file now as ready, since no later event will come for it.
    pub(super) fn flush(&mut self, shared: &Shared, ready: &mut Vec<PathBuf>) {
        for Reverse((_, timer)) in std::mem::take(&mut self.timers).into_sorted_vec() {
            if let Timer::Scan(dir) = timer {
                self.scan(shared, &dir);
            }
        }
        for (path, candidate) in std::mem::take(&mut self.candidates) {
            if let Some(sig) = file_signature(&path) {
                self.accept(shared, path, sig, candidate.closed, ready);
            }
        }
    }

    /// Looks at every watched directory again after events were lost.
    pub(super) fn rescan_all(&mut self, shared: &Shared) {
        let dirs = shared.lock().roots.paths();
        tracing::debug!(dirs = dirs.len(), "rescanning artifact directories");
        for dir in dirs {
            self.scan(shared, &dir);
        }
    }

    fn check(
        &mut self,
        shared: &Shared,
        path: PathBuf,
        due: Instant,
        now: Instant,
        ready: &mut Vec<PathBuf>,
    ) {
        let Some(candidate) = self.candidates.get_mut(&path) else {
            return;
        };
        if candidate.due != due {
            return; // superseded by a later timer
        }
        let Some(sig) = file_signature(&path) else {
            self.candidates.remove(&path);
            return;
        };
        if sig != candidate.sig {
            candidate.sig = sig;
            candidate.due = now + candidate.window;
            self.timers
                .push(Reverse((candidate.due, Timer::Check(path))));
            return;
        }
        let closed = candidate.closed;
        self.candidates.remove(&path);
        self.accept(shared, path, sig, closed, ready);
    }

    /// Tracks `path` as a candidate checked again after `window`; a candidate proven
    /// changed by a close-write stays proven.
    fn watch_file(&mut self, path: PathBuf, sig: Signature, window: Duration, closed: bool) {
        let due = Instant::now() + window;
        let closed = closed || self.candidates.get(&path).is_some_and(|c| c.closed);
        let candidate = Candidate {
            sig,
            due,
            window,
            closed,
        };
        self.candidates.insert(path.clone(), candidate);
        self.timers.push(Reverse((due, Timer::Check(path))));
    }

    /// Files under `dir` that changed since last seen become candidates.
    fn scan(&mut self, shared: &Shared, dir: &Path) {
        let Some(root) = shared.lock().roots.owner(dir).cloned() else {
            return;
        };
        let found = walk_files(&root, dir);
        let fresh: Vec<_> = {
            let state = shared.lock();
            found
                .into_iter()
                .filter(|(path, sig)| state.known.get(path) != Some(sig))
                .collect()
        };
        for (path, sig) in fresh {
            if !self.candidates.contains_key(&path) {
                self.watch_file(path, sig, self.settle, false);
            }
        }
    }

    /// `path` is gone: drop it and everything under it.
    fn forget(&mut self, shared: &Shared, path: &Path) {
        self.candidates.retain(|p, _| !p.starts_with(path));
        self.unclosed.retain(|p| !p.starts_with(path));
        shared.lock().forget_known(path);
    }

    /// Pushes `path` to `ready` when it is a non-empty, non-ignored file that differs
    /// from the version last seen complete (or that a close-write proved changed).
    fn accept(
        &mut self,
        shared: &Shared,
        path: PathBuf,
        sig: Signature,
        closed: bool,
        ready: &mut Vec<PathBuf>,
    ) {
        if sig.len == 0 {
            return;
        }
        let mut state = shared.lock();
        if state.roots.is_ignored(&path, false) || (!closed && state.known.get(&path) == Some(&sig))
        {
            return;
        }
        state.known.insert(path.clone(), sig);
        if closed {
            self.unclosed.remove(&path);
        } else {
            self.unclosed.insert(path.clone());
        }
        ready.push(path);
    }
}

/// Reloads the rules when `path` is a rules file; true for rules files and ignored paths.
fn rules_or_ignored(shared: &Shared, path: &Path) -> bool {
    let mut state = shared.lock();
    state.roots.reload_if_rules_file(path) || state.roots.is_ignored(path, false)
}

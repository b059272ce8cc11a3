//! Gives the memory that ended sessions freed back to the OS.
//!
//! glibc's malloc keeps what a thread freed in that thread's arena for reuse: after a burst
//! of sessions (big frames, megabytes of command output) a runtime that served them kept
//! over 100 MiB resident for as long as it ran, though nothing used it. `malloc_trim(0)`
//! hands every free page of every arena back. It runs on a thread of its own, never on an
//! async worker: once no session has ended for [`QUIET`], or at the latest [`LONGEST_WAIT`]
//! after the first session that ended since the last release, so a runtime whose sessions
//! never stop ending still releases. The thread starts with the first session that ends;
//! a runtime that never served a session has none.
//!
//! Other C libraries (musl) and other systems return freed memory themselves; there this
//! does nothing.

use std::time::Duration;

/// No session ended for this long: release now.
const QUIET: Duration = Duration::from_secs(1);

/// Longest a release waits after the first session that ended since the last one.
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// Tells the releaser that a session ended; a release follows (see the module doc).
pub(crate) fn session_ended() {
    releaser::notify();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod releaser {
    use std::sync::OnceLock;
    use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
    use std::time::Instant;

    use tracing::{debug, warn};

    use super::{LONGEST_WAIT, QUIET};

    /// Stack of the releaser thread: `malloc_trim` and one log line need little.
    const STACK_BYTES: usize = 256 * 1024;

    pub(super) fn notify() {
        static RELEASER: OnceLock<Option<SyncSender<()>>> = OnceLock::new();
        let Some(wake) = RELEASER.get_or_init(start) else {
            return;
        };
        // A full channel already holds a wake-up: the release it brings covers this end.
        match wake.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => warn!("the memory releaser thread is gone"),
        }
    }

    fn start() -> Option<SyncSender<()>> {
        let (wake, woken) = sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("runtimeuse-memory".into())
            .stack_size(STACK_BYTES)
            .spawn(move || run(&woken));
        match spawned {
            Ok(_) => Some(wake),
            Err(e) => {
                warn!(error = %e, "could not start the memory releaser; freed memory stays with the allocator");
                None
            }
        }
    }

    fn run(woken: &Receiver<()>) {
        while woken.recv().is_ok() {
            let latest = Instant::now() + LONGEST_WAIT;
            loop {
                let wait = QUIET.min(latest.saturating_duration_since(Instant::now()));
                match woken.recv_timeout(wait) {
                    Ok(()) if Instant::now() < latest => {}
                    Ok(()) | Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            let started = Instant::now();
            let released = release_free_memory();
            debug!(released, took = ?started.elapsed(), "gave freed memory back to the OS");
        }
    }

    /// `malloc_trim(0)`: every free page of every glibc arena back to the OS. Whether any
    /// memory was released.
    #[expect(
        unsafe_code,
        reason = "glibc's malloc_trim has no Rust binding without FFI"
    )]
    fn release_free_memory() -> bool {
        // SAFETY: `malloc_trim` takes no pointer and reads no caller state; glibc locks each
        // arena while it trims it, so it is safe beside allocations on any thread.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod releaser {
    pub(super) fn notify() {}
}

//! Blocking file-system work (walks, stats, setting up recursive watches) kept off the
//! async workers, so that one session watching a huge tree stalls neither `/health` nor
//! any other session.
//!
//! On a multi-threaded runtime the work runs under [`tokio::task::block_in_place`]: the
//! worker hands its other tasks to a fresh thread first. A current-thread runtime has no
//! other worker to hand them to, so there the work simply runs in place.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, which may block for long, without holding up other tasks.
pub(super) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

//! The event task: file-system events in, upload requests out.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::offload;
use super::readiness::Readiness;
use super::shared::Shared;
use super::watch::{FsEvent, Overflow};

/// Events handled in one go before ready files are announced.
const BATCH: usize = 256;

/// Runs until `stop` fires or the watcher goes away; then settles what is left.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<FsEvent>,
    overflow: Arc<Overflow>,
    stop: CancellationToken,
) {
    let mut readiness = Readiness::new(shared.options.stability_window);
    let mut ready: Vec<PathBuf> = Vec::new();
    loop {
        let due = readiness.next_due();
        let woke = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            event = events.recv() => match event {
                Some(event) => Wake::Event(event),
                None => break,
            },
            () = overflow.raised() => Wake::Overflow,
            () = sleep_until_due(due) => Wake::Due,
        };
        // Stats, walks and rescans of a whole tree: never on an async worker.
        offload::blocking(|| {
            match woke {
                Wake::Event(event) => {
                    readiness.handle(&shared, event);
                    for _ in 1..BATCH {
                        match events.try_recv() {
                            Ok(event) => readiness.handle(&shared, event),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Overflow => {
                    if overflow.take() {
                        readiness.rescan_all(&shared);
                    }
                }
                Wake::Due => {}
            }
            readiness.poll(&shared, Instant::now(), &mut ready);
        });
        for path in ready.drain(..) {
            shared.announce(path).await;
        }
        // Published only after the announcements, so that a waiter never sees a file
        // neither pending as a candidate nor pending as a handshake.
        shared.set_closed_candidates(readiness.closed_pending());
    }
    shared.set_closed_candidates(0);
    // No more events will come: take in what is queued and settle every candidate now.
    offload::blocking(|| {
        while let Ok(event) = events.try_recv() {
            readiness.handle(&shared, event);
        }
        if overflow.take() {
            readiness.rescan_all(&shared);
        }
        readiness.flush(&shared, &mut ready);
    });
    for path in ready {
        shared.announce(path).await;
    }
}

/// What woke the event task.
enum Wake {
    Event(FsEvent),
    Overflow,
    Due,
}

async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

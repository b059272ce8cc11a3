//! The accept loop. Every TCP connection has a deadline for its HTTP phase (`/health`
//! requests, or the one that upgrades to a WebSocket); connections still in
//! that phase are capped, the oldest giving way to a new one, so peers that send half a
//! request (or nothing) can neither hold the runtime's file descriptors nor lock out a
//! client that completes its upgrade at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;
use tracing::{debug, warn};

use crate::traffic::{MeteredIo, Traffic};

/// Pause after a failed `accept` (out of file descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Largest HTTP request head buffered per connection (hyper's minimum is 8 KiB).
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Limits of the HTTP phase of connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// Most connections that have not finished their request at once.
    pub max_pending: usize,
    /// Time from accept to the end of the HTTP phase (the upgrade, or the connection's
    /// close).
    pub deadline: Duration,
}

/// A connection's stream statistics, handed to the handler in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionTraffic(pub Arc<Traffic>);

/// Accepts until `shutdown`, then drops every connection still in its HTTP phase and
/// returns (sessions already upgraded are not waited for here).
pub(crate) async fn accept_until(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let pending = Pending::new(limits.max_pending);
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                warn!(error = %e, "accepting a connection failed; retrying shortly");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        let slot = pending.admit();
        connections.spawn(serve_http(
            stream,
            router.clone(),
            slot,
            limits.deadline,
            shutdown.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_http(
    stream: TcpStream,
    router: Router,
    slot: Slot,
    deadline: Duration,
    shutdown: CancellationToken,
) {
    // Small frames (pings, confirms) should not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let traffic = Arc::new(Traffic::default());
    let io = TokioIo::new(MeteredIo::new(stream, traffic.clone()));
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectionTraffic(traffic.clone()));
        let mut router = router.clone();
        async move { router.call(request).await }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // Keep-alive stays on (turning it off would also mark the 101 `Connection: close`);
    // the deadline below ends a kept-alive connection like any other.
    http.max_buf_size(MAX_REQUEST_HEAD);
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::select! {
        served = connection => {
            if let Err(e) = served {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        () = tokio::time::sleep(deadline) => {
            debug!(?deadline, "closed a connection that did not finish its request in time");
        }
        () = slot.evicted.cancelled() => {
            debug!("closed the oldest unfinished connection to make room for a new one");
        }
        () = shutdown.cancelled() => {}
    }
    drop(slot);
}

/// The connections in their HTTP phase, oldest first.
struct Pending {
    cap: usize,
    state: Arc<Mutex<PendingState>>,
}

#[derive(Default)]
struct PendingState {
    next: u64,
    open: BTreeMap<u64, CancellationToken>,
}

/// One connection's place among the pending ones; leaves when dropped.
struct Slot {
    id: u64,
    evicted: CancellationToken,
    state: Arc<Mutex<PendingState>>,
}

impl Pending {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            state: Arc::default(),
        }
    }

    /// A slot for a new connection, evicting the oldest when all are taken.
    fn admit(&self) -> Slot {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.open.len() >= self.cap {
            if let Some((_, oldest)) = state.open.pop_first() {
                oldest.cancel();
            }
        }
        let id = state.next;
        state.next += 1;
        let evicted = CancellationToken::new();
        state.open.insert(id, evicted.clone());
        Slot {
            id,
            evicted,
            state: self.state.clone(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_evicts_its_oldest_connection() {
        let pending = Pending::new(2);
        let first = pending.admit();
        let second = pending.admit();
        let third = pending.admit();
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled());
        assert!(!third.evicted.is_cancelled());
        assert_eq!(pending.len(), 2);
        drop(second);
        assert_eq!(pending.len(), 1);
        drop(first);
        assert_eq!(pending.len(), 1);
    }
}

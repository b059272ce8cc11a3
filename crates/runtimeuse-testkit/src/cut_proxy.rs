//! A TCP proxy on 127.0.0.1 that forwards every accepted connection to one target and
//! cuts connections on demand: what a flaky network does to a WebSocket, for real.
//!
//! A cut aborts both directions at once: both sockets are closed with `SO_LINGER` 0, so
//! the client and the target each see a TCP reset (or, if they were not reading, an
//! end of stream). Cuts happen when [`CutProxy::cut`] is called, when a connection has
//! carried the byte count of a [`CutPlan`] (fixed or drawn from a seeded generator, so a
//! failing run can be replayed), or when [`CutProxy::cut_live_after`] arms the live
//! connections. New connections can be refused (accepted, then reset at once) or delayed
//! for a while, to exercise a client's backoff.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Bytes read from one side before they are written to the other.
const CHUNK: usize = 64 * 1024;

/// No byte limit on a direction.
const NO_LIMIT: u64 = u64::MAX;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the target (the runtime) to the client.
    ToClient,
    /// From the client to the target.
    ToTarget,
}

/// When a connection is cut automatically: after a number of bytes in one direction,
/// counted from the connection's start. Applies to each connection accepted while it is
/// set (see [`CutProxy::set_plan`]), optionally only to the next `n` of them.
#[derive(Debug, Clone)]
pub struct CutPlan {
    direction: Direction,
    offsets: Offsets,
    remaining: Option<u64>,
}

#[derive(Debug, Clone)]
enum Offsets {
    Fixed(u64),
    Random { state: u64, min: u64, max: u64 },
}

impl CutPlan {
    /// Cuts each connection once it has carried `bytes` bytes from the target to the
    /// client (exactly that many are forwarded).
    pub fn after_bytes(bytes: u64) -> Self {
        Self {
            direction: Direction::ToClient,
            offsets: Offsets::Fixed(bytes),
            remaining: None,
        }
    }

    /// Cuts each connection after a byte count drawn uniformly from `range`, from a
    /// generator seeded with `seed`: connections accepted in the same order get the same
    /// offsets, so a failing run reproduces with its seed.
    pub fn random(seed: u64, range: RangeInclusive<u64>) -> Self {
        let (min, max) = (*range.start(), *range.end());
        assert!(min <= max, "empty cut range {min}..={max}");
        Self {
            direction: Direction::ToClient,
            offsets: Offsets::Random {
                state: seed,
                min,
                max,
            },
            remaining: None,
        }
    }

    /// Counts the bytes of `direction` instead (default [`Direction::ToClient`]).
    #[must_use]
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Applies only to the next `connections` connections; later ones are not cut.
    #[must_use]
    pub fn times(mut self, connections: u64) -> Self {
        self.remaining = Some(connections);
        self
    }

    /// The cut point of the next connection, if the plan still applies.
    fn next_cut(&mut self) -> Option<(Direction, u64)> {
        if let Some(remaining) = self.remaining.as_mut() {
            if *remaining == 0 {
                return None;
            }
            *remaining -= 1;
        }
        let bytes = match &mut self.offsets {
            Offsets::Fixed(bytes) => *bytes,
            Offsets::Random { state, min, max } => {
                let span = *max - *min;
                let draw = splitmix64(state);
                if span == u64::MAX {
                    draw
                } else {
                    *min + draw % (span + 1)
                }
            }
        };
        Some((self.direction, bytes))
    }
}

/// SplitMix64: a small, well-distributed generator; enough for reproducible offsets.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections carried: accepted and connected to the target.
    pub connections: u64,
    /// Connections refused (accepted and reset at once, or whose target was unreachable).
    pub refused: u64,
    /// Connections the proxy cut ([`CutProxy::cut`], a plan, an armed limit).
    pub cuts: u64,
    /// Connections open right now.
    pub live: u64,
    /// Bytes forwarded from the target to clients, all connections together.
    pub bytes_to_client: u64,
    /// Bytes forwarded from clients to the target, all connections together.
    pub bytes_to_target: u64,
}

/// One live connection, as the controls see it.
struct Live {
    cut: CancellationToken,
    carried_to_client: AtomicU64,
    carried_to_target: AtomicU64,
    limit_to_client: AtomicU64,
    limit_to_target: AtomicU64,
}

impl Live {
    fn carried(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToClient => &self.carried_to_client,
            Direction::ToTarget => &self.carried_to_target,
        }
    }

    fn limit(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToClient => &self.limit_to_client,
            Direction::ToTarget => &self.limit_to_target,
        }
    }

    /// Lowers the limit of `direction` to `bytes` (never raises it).
    fn arm(&self, direction: Direction, bytes: u64) {
        self.limit(direction).fetch_min(bytes, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Controls {
    plan: Option<CutPlan>,
    refusing: bool,
    refuse_until: Option<Instant>,
    connect_delay: Duration,
    live: HashMap<u64, Arc<Live>>,
    next_id: u64,
}

impl Controls {
    fn refuses_now(&mut self) -> bool {
        if let Some(until) = self.refuse_until {
            if Instant::now() < until {
                return true;
            }
            self.refuse_until = None;
        }
        self.refusing
    }
}

struct Inner {
    target: SocketAddr,
    controls: Mutex<Controls>,
    connections: AtomicU64,
    refused: AtomicU64,
    cuts: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_to_target: AtomicU64,
    changed: Notify,
}

impl Inner {
    fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn total(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToClient => &self.bytes_to_client,
            Direction::ToTarget => &self.bytes_to_target,
        }
    }
}

/// The proxy. Clones share it; when the last clone is dropped it stops accepting and
/// cuts every live connection.
#[derive(Clone)]
pub struct CutProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

impl std::fmt::Debug for CutProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutProxy")
            .field("addr", &self.addr)
            .field("target", &self.inner.target)
            .field("stats", &self.stats())
            .finish()
    }
}

impl CutProxy {
    /// Starts a proxy on 127.0.0.1 with a free port, forwarding to `target`.
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            target,
            controls: Mutex::default(),
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            bytes_to_target: AtomicU64::new(0),
            changed: Notify::new(),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, Arc::clone(&inner), stop.clone()));
        Ok(Self {
            addr,
            inner,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// Starts a proxy to the target named by a `ws://HOST:PORT…` or `http://…` URL (or a
    /// bare `HOST:PORT`); the host must be an IP address.
    ///
    /// # Errors
    /// When the URL names no `IP:PORT` or the socket cannot be bound.
    pub async fn to_url(url: &str) -> io::Result<Self> {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let target: SocketAddr = authority.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no IP:PORT in {url:?}: {e}"),
            )
        })?;
        Self::start(target).await
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.inner.target
    }

    /// `ws://127.0.0.1:PORT` of the proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Cuts every live connection now; returns how many were cut. Connections accepted
    /// later are not affected.
    pub fn cut(&self) -> usize {
        let live: Vec<Arc<Live>> = self.inner.controls().live.values().cloned().collect();
        for connection in &live {
            connection.cut.cancel();
        }
        live.len()
    }

    /// Arms every live connection to be cut once it has carried `bytes` more bytes in
    /// `direction` (0: at its next byte). Returns how many were armed.
    pub fn cut_live_after(&self, direction: Direction, bytes: u64) -> usize {
        let live: Vec<Arc<Live>> = self.inner.controls().live.values().cloned().collect();
        for connection in &live {
            let carried = connection.carried(direction).load(Ordering::SeqCst);
            connection.arm(direction, carried.saturating_add(bytes));
        }
        live.len()
    }

    /// Sets (or, with `None`, clears) the plan for connections accepted from now on.
    pub fn set_plan(&self, plan: Option<CutPlan>) {
        self.inner.controls().plan = plan;
    }

    /// While `refusing`, new connections are accepted and reset at once.
    pub fn set_refusing(&self, refusing: bool) {
        self.inner.controls().refusing = refusing;
    }

    /// Refuses new connections for `duration` from now (on top of
    /// [`set_refusing`](Self::set_refusing)).
    pub fn refuse_for(&self, duration: Duration) {
        self.inner.controls().refuse_until = Some(Instant::now() + duration);
    }

    /// New connections wait `delay` before the proxy connects them to the target (and
    /// before the client's first byte is forwarded).
    pub fn set_connect_delay(&self, delay: Duration) {
        self.inner.controls().connect_delay = delay;
    }

    /// The counters now.
    pub fn stats(&self) -> ProxyStats {
        let inner = &self.inner;
        let live = inner.controls().live.len() as u64;
        ProxyStats {
            connections: inner.connections.load(Ordering::SeqCst),
            refused: inner.refused.load(Ordering::SeqCst),
            cuts: inner.cuts.load(Ordering::SeqCst),
            live,
            bytes_to_client: inner.bytes_to_client.load(Ordering::SeqCst),
            bytes_to_target: inner.bytes_to_target.load(Ordering::SeqCst),
        }
    }

    /// Connections carried so far (accepted and connected to the target).
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Connections the proxy has cut so far.
    pub fn cuts(&self) -> u64 {
        self.inner.cuts.load(Ordering::SeqCst)
    }

    /// Waits until `condition` holds for the counters; returns them. `None` after
    /// `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&ProxyStats) -> bool,
    ) -> Option<ProxyStats> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            let stats = self.stats();
            if condition(&stats) {
                return Some(stats);
            }
            // Byte counters change without a notification: poll them too.
            let tick = deadline.min(Instant::now() + Duration::from_millis(20));
            let _ = tokio::time::timeout_at(tick, notified).await;
            if Instant::now() >= deadline {
                let stats = self.stats();
                return condition(&stats).then_some(stats);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((socket, _)) = accepted else {
            // EMFILE and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if inner.controls().refuses_now() {
            reset(&socket);
            drop(socket);
            inner.refused.fetch_add(1, Ordering::SeqCst);
            inner.changed.notify_waiters();
            continue;
        }
        tokio::spawn(carry(socket, Arc::clone(&inner), stop.clone()));
    }
    // The proxy is gone: so are its connections.
    let live: Vec<Arc<Live>> = inner.controls().live.values().cloned().collect();
    for connection in live {
        connection.cut.cancel();
    }
}

/// Makes the coming close of `socket` a reset.
fn reset(socket: &TcpStream) {
    let _ = socket.set_zero_linger();
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both sides finished (EOF each way).
    Closed,
    /// The proxy cut it.
    Cut,
    /// One side failed (a reset from a peer): the other side is reset too.
    Aborted,
}

/// How one direction ended.
enum PumpEnd {
    Eof,
    LimitReached,
    Failed,
}

async fn carry(mut client: TcpStream, inner: Arc<Inner>, stop: CancellationToken) {
    let delay = inner.controls().connect_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Ok(mut target) = TcpStream::connect(inner.target).await else {
        reset(&client);
        inner.refused.fetch_add(1, Ordering::SeqCst);
        inner.changed.notify_waiters();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);

    let live = Arc::new(Live {
        cut: stop.child_token(),
        carried_to_client: AtomicU64::new(0),
        carried_to_target: AtomicU64::new(0),
        limit_to_client: AtomicU64::new(NO_LIMIT),
        limit_to_target: AtomicU64::new(NO_LIMIT),
    });
    let id = {
        let mut controls = inner.controls();
        if let Some((direction, bytes)) = controls.plan.as_mut().and_then(CutPlan::next_cut) {
            live.arm(direction, bytes);
        }
        let id = controls.next_id;
        controls.next_id += 1;
        controls.live.insert(id, Arc::clone(&live));
        id
    };
    inner.connections.fetch_add(1, Ordering::SeqCst);
    inner.changed.notify_waiters();

    let end = {
        let (client_read, client_write) = client.split();
        let (target_read, target_write) = target.split();
        let down = pump(
            target_read,
            client_write,
            &live,
            &inner,
            Direction::ToClient,
        );
        let up = pump(
            client_read,
            target_write,
            &live,
            &inner,
            Direction::ToTarget,
        );
        tokio::pin!(down, up);
        let (mut down_done, mut up_done) = (false, false);
        loop {
            let ended = tokio::select! {
                () = live.cut.cancelled() => break End::Cut,
                ended = &mut down, if !down_done => { down_done = true; ended }
                ended = &mut up, if !up_done => { up_done = true; ended }
            };
            match ended {
                PumpEnd::Eof if down_done && up_done => break End::Closed,
                PumpEnd::Eof => {}
                PumpEnd::LimitReached => break End::Cut,
                PumpEnd::Failed => break End::Aborted,
            }
        }
    };
    if end != End::Closed {
        reset(&client);
        reset(&target);
    }
    drop(client);
    drop(target);
    inner.controls().live.remove(&id);
    if end == End::Cut {
        inner.cuts.fetch_add(1, Ordering::SeqCst);
    }
    inner.changed.notify_waiters();
}

/// Copies one direction until end of stream, a failure, or its byte limit.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    live: &Live,
    inner: &Inner,
    direction: Direction,
) -> PumpEnd {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let limit = live.limit(direction).load(Ordering::SeqCst);
        let carried = live.carried(direction).load(Ordering::SeqCst);
        if limit != NO_LIMIT && carried >= limit {
            return PumpEnd::LimitReached;
        }
        let read = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return PumpEnd::Eof;
            }
            Ok(read) => read,
            Err(_) => return PumpEnd::Failed,
        };
        // The limit may have been armed while reading.
        let limit = live.limit(direction).load(Ordering::SeqCst);
        let allowed = if limit == NO_LIMIT {
            read
        } else {
            let left = limit.saturating_sub(carried);
            read.min(usize::try_from(left).unwrap_or(usize::MAX))
        };
        if allowed > 0 {
            if to.write_all(&buf[..allowed]).await.is_err() {
                return PumpEnd::Failed;
            }
            live.carried(direction)
                .fetch_add(allowed as u64, Ordering::SeqCst);
            inner
                .total(direction)
                .fetch_add(allowed as u64, Ordering::SeqCst);
        }
        if allowed < read {
            return PumpEnd::LimitReached;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A target that answers each connection by sending `greeting` bytes of a counting
    /// pattern, then echoes what it reads; it reports how each connection ended.
    struct Target {
        addr: SocketAddr,
        ends: tokio::sync::mpsc::UnboundedReceiver<(u64, io::Result<()>)>,
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn target(greeting: usize) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, ends) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut echoed = 0u64;
                    let outcome = async {
                        socket.write_all(&pattern(greeting)).await?;
                        let mut buf = vec![0u8; 4096];
                        loop {
                            let n = socket.read(&mut buf).await?;
                            if n == 0 {
                                socket.shutdown().await?;
                                return Ok(());
                            }
                            socket.write_all(&buf[..n]).await?;
                            echoed += n as u64;
                        }
                    }
                    .await;
                    let _ = tx.send((echoed, outcome));
                });
            }
        });
        Target { addr, ends }
    }

    /// Reads until end of stream or an error; returns the bytes and whether it ended in
    /// an error (a reset).
    async fn read_all(socket: &mut TcpStream) -> (Vec<u8>, bool) {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match tokio::time::timeout(WAIT, socket.read(&mut buf)).await {
                Err(_) => panic!("read timed out after {} bytes", all.len()),
                Ok(Ok(0)) => return (all, false),
                Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
                Ok(Err(_)) => return (all, true),
            }
        }
    }

    async fn read_exact(socket: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        tokio::time::timeout(WAIT, socket.read_exact(&mut buf))
            .await
            .expect("read timed out")
            .expect("read");
        buf
    }

    async fn next_end(target: &mut Target) -> (u64, io::Result<()>) {
        tokio::time::timeout(WAIT, target.ends.recv())
            .await
            .expect("target connection never ended")
            .expect("target gone")
    }

    #[tokio::test]
    async fn forwards_both_ways_counts_and_closes_gracefully() {
        let mut target = target(1000).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_exact(&mut client, 1000).await, pattern(1000));
        client.write_all(b"hello proxy").await.unwrap();
        assert_eq!(read_exact(&mut client, 11).await, b"hello proxy");
        client.shutdown().await.unwrap();
        let (rest, reset) = read_all(&mut client).await;
        assert!(rest.is_empty() && !reset, "{rest:?} {reset}");
        let (echoed, outcome) = next_end(&mut target).await;
        assert_eq!(echoed, 11);
        outcome.expect("the target saw a clean end");
        let stats = proxy
            .wait_for(WAIT, |s| s.live == 0)
            .await
            .expect("connection closed");
        assert_eq!(
            stats,
            ProxyStats {
                connections: 1,
                refused: 0,
                cuts: 0,
                live: 0,
                bytes_to_client: 1011,
                bytes_to_target: 11,
            }
        );
    }

    #[tokio::test]
    async fn cut_resets_both_ends_of_every_live_connection() {
        let mut target = target(10).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
        read_exact(&mut first, 10).await;
        read_exact(&mut second, 10).await;
        proxy.wait_for(WAIT, |s| s.live == 2).await.unwrap();
        assert_eq!(proxy.cut(), 2);
        for socket in [&mut first, &mut second] {
            let (rest, reset) = read_all(socket).await;
            assert!(rest.is_empty());
            assert!(reset, "the client saw a reset");
        }
        for _ in 0..2 {
            let (_, outcome) = next_end(&mut target).await;
            assert!(outcome.is_err(), "the target saw a reset");
        }
        let stats = proxy.wait_for(WAIT, |s| s.live == 0).await.unwrap();
        assert_eq!((stats.connections, stats.cuts), (2, 2));
        // The proxy still works afterwards.
        let mut third = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_exact(&mut third, 10).await, pattern(10));
        assert_eq!(proxy.connections(), 3);
    }

    #[tokio::test]
    async fn a_plan_cuts_after_exactly_n_bytes_to_the_client() {
        let target = target(100_000).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        proxy.set_plan(Some(CutPlan::after_bytes(12_345)));
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, reset) = read_all(&mut client).await;
        assert_eq!(got, pattern(12_345));
        assert!(reset);
        let stats = proxy.wait_for(WAIT, |s| s.live == 0).await.unwrap();
        assert_eq!((stats.cuts, stats.bytes_to_client), (1, 12_345));
    }

    #[tokio::test]
    async fn a_plan_limited_to_some_connections_leaves_later_ones_alone() {
        let target = target(5000).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        proxy.set_plan(Some(CutPlan::after_bytes(100).times(2)));
        for expected in [100, 100] {
            let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
            let (got, reset) = read_all(&mut client).await;
            assert_eq!((got.len(), reset), (expected, true));
        }
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_exact(&mut client, 5000).await, pattern(5000));
        assert_eq!(proxy.cuts(), 2);
    }

    #[tokio::test]
    async fn a_plan_can_count_bytes_to_the_target() {
        let mut target = target(0).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        proxy.set_plan(Some(CutPlan::after_bytes(7).direction(Direction::ToTarget)));
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"0123456789").await.unwrap();
        let (got, reset) = read_all(&mut client).await;
        assert!(reset);
        assert!(got.len() <= 7, "{got:?}");
        let (echoed, outcome) = next_end(&mut target).await;
        assert!(echoed <= 7);
        assert!(outcome.is_err());
        let stats = proxy.wait_for(WAIT, |s| s.live == 0).await.unwrap();
        assert_eq!(stats.bytes_to_target, 7);
    }

    /// The offsets each connection was cut at, for `connections` connections.
    async fn random_offsets(seed: u64, connections: usize) -> Vec<usize> {
        let target = target(50_000).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        proxy.set_plan(Some(CutPlan::random(seed, 1000..=40_000)));
        let mut offsets = Vec::new();
        for _ in 0..connections {
            let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
            let (got, reset) = read_all(&mut client).await;
            assert!(reset);
            assert_eq!(got, pattern(got.len()));
            offsets.push(got.len());
        }
        offsets
    }

    #[tokio::test]
    async fn random_offsets_are_in_range_and_reproduce_with_their_seed() {
        let first = random_offsets(42, 8).await;
        assert!(
            first.iter().all(|o| (1000..=40_000).contains(o)),
            "{first:?}"
        );
        let mut distinct = first.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 1, "{first:?}");
        assert_eq!(random_offsets(42, 8).await, first);
        assert_ne!(random_offsets(43, 8).await, first);
    }

    #[test]
    fn full_range_and_single_value_ranges_draw_correctly() {
        let mut plan = CutPlan::random(1, 0..=u64::MAX);
        assert!(plan.next_cut().is_some());
        let mut plan = CutPlan::random(1, 5..=5).times(1);
        assert_eq!(plan.next_cut(), Some((Direction::ToClient, 5)));
        assert_eq!(plan.next_cut(), None);
    }

    #[tokio::test]
    async fn cut_live_after_arms_only_connections_open_now() {
        let target = target(0).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"abc").await.unwrap();
        assert_eq!(read_exact(&mut client, 3).await, b"abc");
        assert_eq!(proxy.cut_live_after(Direction::ToClient, 4), 1);
        client.write_all(b"defghij").await.unwrap();
        let (got, reset) = read_all(&mut client).await;
        assert!(reset);
        assert!(got.len() <= 4 && b"defg".starts_with(&got), "{got:?}");
        proxy.wait_for(WAIT, |s| s.live == 0).await.unwrap();
        let stats = proxy.stats();
        assert_eq!((stats.cuts, stats.bytes_to_client), (1, 7));
        let mut later = TcpStream::connect(proxy.addr()).await.unwrap();
        later.write_all(b"0123456789").await.unwrap();
        assert_eq!(read_exact(&mut later, 10).await, b"0123456789");
    }

    #[tokio::test]
    async fn refused_connections_are_reset_and_counted_until_the_window_ends() {
        let target = target(3).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        proxy.set_refusing(true);
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, _) = read_all(&mut client).await;
        assert!(got.is_empty());
        proxy.set_refusing(false);
        proxy.refuse_for(Duration::from_millis(300));
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, _) = read_all(&mut client).await;
        assert!(got.is_empty());
        assert_eq!(proxy.stats().refused, 2);
        assert_eq!(proxy.connections(), 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_exact(&mut client, 3).await, pattern(3));
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test]
    async fn a_connect_delay_holds_new_connections_back() {
        let target = target(3).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        proxy.set_connect_delay(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(read_exact(&mut client, 3).await, pattern(3));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn an_unreachable_target_counts_as_refused() {
        // A port that was free a moment ago: nothing listens there now.
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let proxy = CutProxy::start(addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, _) = read_all(&mut client).await;
        assert!(got.is_empty());
        let stats = proxy.wait_for(WAIT, |s| s.refused == 1).await.unwrap();
        assert_eq!(stats.connections, 0);
    }

    #[tokio::test]
    async fn dropping_the_proxy_cuts_its_connections() {
        let target = target(3).await;
        let proxy = CutProxy::start(target.addr).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        read_exact(&mut client, 3).await;
        drop(proxy);
        let (_, reset) = read_all(&mut client).await;
        assert!(reset);
    }

    #[tokio::test]
    async fn to_url_parses_ws_and_http_urls() {
        let target = target(0).await;
        for url in [
            format!("ws://{}", target.addr),
            format!("http://{}/path?x=1", target.addr),
            target.addr.to_string(),
        ] {
            let proxy = CutProxy::to_url(&url).await.unwrap();
            assert_eq!(proxy.target(), target.addr);
            assert!(proxy.ws_url().starts_with("ws://127.0.0.1:"));
        }
        assert!(CutProxy::to_url("ws://localhost:1").await.is_err());
    }
}

//! The server's durable sessions, by id: each lives in tasks of its own, apart from any
//! socket; connections attach to one and detach from it.
//!
//! A durable session is three tasks: the [`Session`] itself, a pump moving its outbox's
//! frames into the [`Replay`] buffer (where they wait for room, so producers are
//! back-pressured), and a keeper that retires it: when the session finished and the client
//! acknowledged everything, or when it stayed detached past the grace period (which ends it
//! as if its client had left: the request is cancelled, its process tree killed).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use runtimeuse_protocol::resume::{ResumeMessage, SessionResumable};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::ResumeOptions;
use super::params::ResumeRequest;
use super::replay::{Cursor, Replay, ReplayUnavailable};
use crate::logging::add_span_secrets;
use crate::metrics::{self, DurableEvent};
use crate::outbox::{Outbox, Presence};
use crate::redact::Redactor;
use crate::services::SessionServices;
use crate::session::Session;

/// Ids of retired sessions remembered (to tell `expired` and `ended` from `unknown`).
const TOMBSTONES: usize = 4096;

/// Frames queued between a durable session and its replay buffer.
const INBOUND_CAPACITY: usize = 16;

/// Why a resume is refused; [`reason`](Self::reason) is the wire's `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// No session has that id.
    #[error("no session with this id")]
    UnknownSession,
    /// The key does not match.
    #[error("wrong resume key for this session")]
    InvalidKey,
    /// The session stayed detached past its grace period and was ended.
    #[error("the session expired: it stayed detached past its grace period")]
    Expired,
    /// The session finished and its client acknowledged everything.
    #[error("the session has ended")]
    Ended,
    /// The client's last seq cannot be replayed from.
    #[error("{0}")]
    ReplayUnavailable(ReplayUnavailable),
}

impl Refusal {
    /// The `reason` of the refusal's error frame.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::UnknownSession => "unknown_session",
            Refusal::InvalidKey => "invalid_key",
            Refusal::Expired => "expired",
            Refusal::Ended => "ended",
            Refusal::ReplayUnavailable(_) => "replay_unavailable",
        }
    }
}

/// How a session left the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retired {
    Expired,
    Ended,
}

/// See the [module documentation](self).
pub(crate) struct Registry {
    options: ResumeOptions,
    sessions: Mutex<HashMap<String, Arc<Durable>>>,
    retired: Mutex<VecDeque<(String, Retired)>>,
}

impl Registry {
    /// An empty registry.
    pub fn new(options: ResumeOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            sessions: Mutex::new(HashMap::new()),
            retired: Mutex::new(VecDeque::new()),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Durable>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new durable session holding `permit` (a session slot) until it ends.
    /// Fails only without a source of randomness for its id and key.
    pub fn open(
        self: &Arc<Self>,
        cx: &SessionServices,
        permit: OwnedSemaphorePermit,
    ) -> Result<Arc<Durable>, getrandom::Error> {
        let (id, key) = (random_hex(16)?, random_hex(32)?);
        let (outbox, mut frames) = Outbox::channel(cx.session.outbox_capacity);
        let (inbound_tx, inbound_rx) = mpsc::channel::<String>(INBOUND_CAPACITY);
        let durable = Arc::new(Durable {
            id,
            key,
            replay: Arc::new(Replay::new(self.options.buffer_bytes)),
            inbound: Mutex::new(Some(inbound_tx)),
            last_received: watch::Sender::new(0),
            presence: outbox.presence().clone(),
            attach_lock: tokio::sync::Mutex::new(()),
            current: Mutex::new(None),
            attached: watch::Sender::new(false),
            generations: AtomicU64::new(0),
            counted_detached: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        });
        self.sessions().insert(durable.id.clone(), durable.clone());

        let session = Session::new(cx.session.clone(), outbox);
        add_span_secrets(session.span(), &Redactor::new([durable.key.clone()]));
        let span = session.span().clone();
        span.in_scope(|| info!(session_id = %durable.id, "durable session opened"));
        metrics::durable_event(DurableEvent::Opened);
        let (shutdown, open) = (cx.shutdown.clone(), cx.open_sessions.clone());
        open.fetch_add(1, Ordering::Relaxed);
        cx.tracker.spawn(async move {
            session.run(inbound_rx, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });

        let replay = durable.replay.clone();
        cx.tracker.spawn(async move {
            while let Some(frame) = frames.recv().await {
                if replay.push(&frame).await.is_err() {
                    break;
                }
            }
            // Producers still sending get OutboxClosed instead of waiting for room.
            frames.close();
            replay.finish();
        });

        let keeper = keep(self.clone(), durable.clone(), cx.clone());
        cx.tracker.spawn(keeper.instrument(span));
        Ok(durable)
    }

    /// The session `request` names, if its key matches and it still exists.
    pub fn find(&self, request: &ResumeRequest) -> Result<Arc<Durable>, Refusal> {
        let found = self.sessions().get(&request.session_id).cloned();
        let Some(durable) = found else {
            let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            return Err(
                match retired.iter().find(|(id, _)| *id == request.session_id) {
                    Some((_, Retired::Expired)) => Refusal::Expired,
                    Some((_, Retired::Ended)) => Refusal::Ended,
                    None => Refusal::UnknownSession,
                },
            );
        };
        if !crate::upgrade::same_token(&request.resume_key, &durable.key) {
            return Err(Refusal::InvalidKey);
        }
        Ok(durable)
    }

    /// Removes `durable` and ends what is left of it.
    fn retire(&self, durable: &Durable, how: Retired) {
        if self.sessions().remove(&durable.id).is_none() {
            return;
        }
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        if retired.len() >= TOMBSTONES {
            retired.pop_front();
        }
        retired.push_back((durable.id.clone(), how));
        drop(retired);
        metrics::durable_event(match how {
            Retired::Expired => DurableEvent::Expired,
            Retired::Ended => DurableEvent::Ended,
        });
        durable.depart();
    }

    /// The client closed its connection for good (close code 1000): the session ends.
    pub fn end_by_client(&self, durable: &Durable) {
        info!(session_id = %durable.id, "client closed the durable session");
        self.retire(durable, Retired::Ended);
    }

    /// Retires `durable` if its session has finished and the client acknowledged every
    /// frame (the end_session confirm included); true when it did.
    pub fn end_if_acknowledged(&self, durable: &Durable) -> bool {
        if !durable.replay.fully_acked() {
            return false;
        }
        self.retire(durable, Retired::Ended);
        true
    }

    /// Grace period of detached sessions.
    pub fn options(&self) -> &ResumeOptions {
        &self.options
    }
}

/// Retires `durable` when it is done or expires; winds it down at shutdown.
async fn keep(registry: Arc<Registry>, durable: Arc<Durable>, cx: SessionServices) {
    let grace = registry.options.grace;
    let mut attached = durable.attached.subscribe();
    tokio::select! {
        () = durable.replay.wait_fully_acked() => {
            registry.retire(&durable, Retired::Ended);
            return;
        }
        () = cx.shutdown.cancelled() => {}
        () = detached_for(&mut attached, grace) => {
            warn!(session_id = %durable.id, ?grace, "durable session expired while detached; ending it");
            registry.retire(&durable, Retired::Expired);
            return;
        }
    }
    // Shutdown: an attached client gets what is queued (the connection flushes it); a
    // detached one can't, so nothing may wait for room in the buffer anymore.
    tokio::select! {
        () = durable.replay.wait_fully_acked() => {}
        _ = async { attached.wait_for(|attached| !attached).await.is_ok() } => {}
        () = cx.hard_stop.cancelled() => {}
    }
    durable.replay.close();
    registry.retire(&durable, Retired::Ended);
}

/// Resolves once the session has been detached for `grace` in a row (never when the watch
/// ends).
async fn detached_for(attached: &mut watch::Receiver<bool>, grace: std::time::Duration) {
    loop {
        let detached = attached.wait_for(|attached| !attached).await.is_ok();
        if !detached {
            return std::future::pending().await;
        }
        let back = tokio::time::timeout(grace, attached.wait_for(|attached| *attached))
            .await
            .map(|reattached| reattached.is_ok());
        match back {
            Err(_) => return,
            Ok(false) => return std::future::pending().await,
            Ok(true) => {}
        }
    }
}

/// `bytes` random bytes from the OS, as lowercase hex.
fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// One connection's hold on a durable session; detaches on drop.
pub(crate) struct Attachment {
    durable: Arc<Durable>,
    generation: u64,
    /// Fires when another connection takes the session over.
    pub taken_over: CancellationToken,
    /// The connection's reader has stopped (cancelled here too when the connection ends,
    /// in case its reader never ran).
    reader_done: CancellationToken,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.reader_done.cancel();
        self.durable.detach(self.generation);
    }
}

struct Attached {
    generation: u64,
    taken_over: CancellationToken,
    reader_done: CancellationToken,
}

/// A durable session as the registry and its connections see it.
pub(crate) struct Durable {
    id: String,
    key: String,
    /// What the runtime sent, until acknowledged.
    pub replay: Arc<Replay>,
    /// Frames for the session; `None` once it is retired.
    inbound: Mutex<Option<mpsc::Sender<String>>>,
    /// The `seq` of the last client frame delivered to the session (watched by the
    /// connection's writer, which acknowledges it to the client).
    last_received: watch::Sender<u64>,
    presence: Presence,
    /// Serialises attaching, so that one connection at a time reads for the session.
    attach_lock: tokio::sync::Mutex<()>,
    current: Mutex<Option<Attached>>,
    attached: watch::Sender<bool>,
    generations: AtomicU64,
    /// Counted in the detached-sessions gauge now.
    counted_detached: AtomicBool,
    /// Left the registry.
    retired: AtomicBool,
}

impl Durable {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first frame of a new session's connection.
    pub fn resumable_frame(&self, options: &ResumeOptions) -> String {
        ResumeMessage::SessionResumableMessage(SessionResumable {
            session_id: self.id.clone(),
            resume_key: self.key.clone(),
            grace_ms: u64::try_from(options.grace.as_millis()).unwrap_or(u64::MAX),
            buffer_bytes: options.buffer_bytes as u64,
        })
        .to_frame()
    }

    /// Makes this connection the session's one: a connection attached before is told to
    /// close (`taken_over`), and its reader has stopped when this returns, so that
    /// [`last_received`](Self::last_received) is final for the handshake.
    pub async fn attach(self: &Arc<Self>, reader_done: CancellationToken) -> Attachment {
        let _serial = self.attach_lock.lock().await;
        let previous = self.lock_current().take();
        if let Some(previous) = previous {
            info!(session_id = %self.id, "another connection resumed the session; closing the old one");
            previous.taken_over.cancel();
            previous.reader_done.cancelled().await;
            metrics::durable_event(DurableEvent::TakenOver);
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let taken_over = CancellationToken::new();
        *self.lock_current() = Some(Attached {
            generation,
            taken_over: taken_over.clone(),
            reader_done: reader_done.clone(),
        });
        self.attached.send_replace(true);
        self.count_detached(false);
        Attachment {
            durable: self.clone(),
            generation,
            taken_over,
            reader_done,
        }
    }

    fn lock_current(&self) -> MutexGuard<'_, Option<Attached>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn detach(&self, generation: u64) {
        let mut current = self.lock_current();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            *current = None;
            drop(current);
            self.attached.send_replace(false);
            if !self.retired.load(Ordering::Acquire) {
                self.count_detached(true);
                info!(session_id = %self.id, "connection of the durable session dropped; detached");
            }
        }
    }

    /// Keeps `runtimeuse_durable_sessions_detached` right: this session counts in it while
    /// it is detached and not retired.
    fn count_detached(&self, detached: bool) {
        if self.counted_detached.swap(detached, Ordering::AcqRel) != detached {
            metrics::durable_detached(detached);
        }
    }

    /// The `seq` of the last client frame delivered.
    pub fn last_received(&self) -> u64 {
        *self.last_received.borrow()
    }

    /// Follows [`last_received`](Self::last_received), its current value marked seen.
    pub fn watch_received(&self) -> watch::Receiver<u64> {
        self.last_received.subscribe()
    }

    /// A reader of the replay buffer after what the client holds (`last_seq`), which also
    /// counts as the client's ack.
    pub fn cursor_after(&self, last_seq: u64) -> Result<Cursor, Refusal> {
        let cursor = self
            .replay
            .cursor(last_seq)
            .map_err(Refusal::ReplayUnavailable)?;
        self.replay.ack(last_seq);
        Ok(cursor)
    }

    /// Hands a client frame to the session, once per `seq`: a frame numbered at or below
    /// the last one delivered is a re-sent duplicate and dropped. False when the session
    /// takes no more frames.
    pub async fn deliver(&self, frame: String, seq: Option<u64>) -> bool {
        if let Some(seq) = seq
            && seq <= self.last_received()
        {
            tracing::debug!(seq, "duplicate frame from a resumed client dropped");
            return true;
        }
        let inbound = self
            .inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(inbound) = inbound else {
            return false;
        };
        if inbound.send(frame).await.is_err() {
            return false;
        }
        if let Some(seq) = seq {
            self.last_received.send_replace(seq);
        }
        true
    }

    /// The session takes no more frames, its client is gone for good, and nothing waits
    /// for room in its buffer.
    fn depart(&self) {
        self.retired.store(true, Ordering::Release);
        self.count_detached(false);
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.presence.depart();
        self.replay.close();
    }
}

//! The bridge between one WebSocket and one [`Session`]: a reader feeding the session's
//! inbound channel, a writer draining its outbox, and a watchdog that notices a dead
//! client.
//!
//! - **Durable sessions** (the resume extension): the writer reads the session's replay
//!   buffer from the client's last `seq` on, after a greeting frame
//!   (`session_resumable_message` or `session_resumed_message`); the reader takes acks
//!   and hands each client `seq` to the session once. The connection ending only detaches
//!   the session (see [`crate::resume`]); a takeover closes it with 4001.
//!
//! - **Dead client**: gone when, for [`MISSED_PINGS`] ping intervals in a row, it sent
//!   nothing (no frame, no pong), took no frame of output and none of the bytes waiting
//!   for it in a full socket (see [`Traffic`]). A client reading slowly takes bytes, so it stays; intervals are counted
//!   by ticks, so a runtime that is itself starved of CPU doesn't count time it didn't run.
//! - **Pongs**: the WebSocket layer answers each ping with a pong queued in user space;
//!   after [`MAX_QUEUED_PONGS`] pings with nothing drained the reader stops reading until
//!   the socket takes them, so a ping flood from a client that doesn't read costs at most
//!   that many pongs (and TCP back-pressure does the rest).
//! - **Closing**: when the session ends, the reader keeps reading (and discarding) while
//!   the writer sends everything queued, then a close frame (1000), then waits briefly
//!   for the client's close, so frames arriving late (a cancel after `end_session`, say)
//!   never make the runtime drop the connection with its terminal or confirm unsent.
//! - **Violations**: a message over the size limit closes with 1009, invalid UTF-8 in a
//!   text frame with 1007, other protocol errors with 1002, each with a reason.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use runtimeuse_protocol::resume::{CLOSE_TAKEN_OVER, ResumeAck, ResumeMessage, frame_seq};

use crate::outbox::{Outbox, OutboxReceiver};
use crate::resume::registry::{Attachment, Durable, Refusal, Registry};
use crate::resume::replay::{Cursor, Next, Replay};
use crate::session::{Session, SessionConfig};
use crate::traffic::Traffic;

/// Default interval between WebSocket pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);

/// A client silent and not reading for this many ping intervals in a row is gone.
pub const MISSED_PINGS: u32 = 3;

/// Pings read while nothing could be written, before the reader waits for the socket.
pub const MAX_QUEUED_PONGS: usize = 128;

/// How long, after sending its close frame, the runtime waits for the client's.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Longest close reason the protocol allows (a control frame holds 125 bytes).
const MAX_CLOSE_REASON: usize = 123;

/// Settings of one bridged socket.
pub(crate) struct SocketBridge {
    pub session: Arc<SessionConfig>,
    pub ping_interval: Option<Duration>,
}

/// The server-wide signals a bridge obeys, and its connection's traffic.
pub(crate) struct BridgeSignals {
    /// The runtime is shutting down: the session winds down, the socket closes cleanly.
    pub shutdown: CancellationToken,
    /// The shutdown timeout passed: stop writing, drop the connection.
    pub hard_stop: CancellationToken,
    /// What moves through the connection's stream.
    pub traffic: Arc<Traffic>,
}

/// State shared by the reader, the writer and the watchdog of one socket.
struct Shared {
    /// The session is over: flush what is queued, send Close.
    close: CancellationToken,
    /// The client is gone: nothing more can be written, and producers (artifact
    /// handshakes, output) must stop waiting on the socket.
    client_gone: CancellationToken,
    hard_stop: CancellationToken,
    /// The reader has stopped.
    reader_done: CancellationToken,
    /// The client broke the protocol; the writer closes with `violation`.
    violated: CancellationToken,
    violation: Mutex<Option<CloseFrame>>,
    /// The client sent a close frame with code 1000 (it is done, not cut off).
    closed_normally: std::sync::atomic::AtomicBool,
    traffic: Arc<Traffic>,
}

impl Shared {
    fn new(hard_stop: CancellationToken, traffic: Arc<Traffic>) -> Arc<Self> {
        Arc::new(Self {
            close: CancellationToken::new(),
            client_gone: CancellationToken::new(),
            hard_stop,
            reader_done: CancellationToken::new(),
            violated: CancellationToken::new(),
            violation: Mutex::new(None),
            closed_normally: std::sync::atomic::AtomicBool::new(false),
            traffic,
        })
    }

    fn violate(&self, frame: CloseFrame) {
        *self
            .violation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(frame);
        self.violated.cancel();
    }

    fn take_violation(&self) -> Option<CloseFrame> {
        self.violation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Where a connection's incoming frames go.
enum Intake {
    /// Straight to the session (a plain session).
    Direct(mpsc::Sender<String>),
    /// A durable session: acks are taken here, duplicates dropped by `seq`.
    Durable(Arc<Durable>),
}

/// Where a connection's outgoing frames come from.
enum Feed {
    /// The session's outbox (a plain session); the client leaving when the writer stops.
    Direct(OutboxReceiver),
    /// A durable session's replay buffer, after the extension's first frame (the
    /// [`greeting`](Feed::greeting)).
    Replay {
        replay: Arc<Replay>,
        cursor: Cursor,
        first: Option<String>,
        /// The `seq` of the last client frame the session took, acknowledged to the
        /// client so that it can forget what it keeps for a resume.
        received: watch::Receiver<u64>,
    },
}

impl Feed {
    /// The next frame; `None` once the session sent its last one.
    async fn recv(&mut self) -> Option<Utf8Bytes> {
        match self {
            Feed::Direct(outbox) => outbox.recv().await.map(Utf8Bytes::from),
            Feed::Replay { replay, cursor, .. } => replay.next(cursor).await,
        }
    }

    /// A frame that is there now.
    fn try_recv(&mut self) -> Option<Utf8Bytes> {
        match self {
            Feed::Direct(outbox) => outbox.try_recv().map(Utf8Bytes::from),
            Feed::Replay { replay, cursor, .. } => match replay.try_next(cursor) {
                Next::Frame(frame) => Some(frame),
                Next::End | Next::Wait => None,
            },
        }
    }

    /// What the connection acknowledges to the client (a durable session only).
    fn acks(&self) -> Option<watch::Receiver<u64>> {
        match self {
            Feed::Direct(_) => None,
            Feed::Replay { received, .. } => Some(received.clone()),
        }
    }

    /// The extension's first frame of a durable connection, once.
    fn greeting(&mut self) -> Option<Utf8Bytes> {
        match self {
            Feed::Direct(_) => None,
            Feed::Replay { first, .. } => first.take().map(Utf8Bytes::from),
        }
    }

    /// The writer stopped. A plain session's client is gone with it; a durable session
    /// only loses this connection.
    fn stop(&mut self) {
        if let Feed::Direct(outbox) = self {
            outbox.close();
        }
    }

    /// Before the closing handshake of a finished durable session: give the client a
    /// moment to acknowledge the last frames, so that the session can be retired at once.
    async fn settle(&self, shared: &Shared) {
        if let Feed::Replay { replay, .. } = self {
            tokio::select! {
                () = replay.wait_fully_acked() => {}
                () = tokio::time::sleep(CLOSE_LINGER) => {}
                () = shared.client_gone.cancelled() => {}
                () = shared.hard_stop.cancelled() => {}
            }
        }
    }
}

/// How a durable session's connection begins.
pub(crate) enum DurableStart {
    /// A new session: its first frame says how to resume it.
    New,
    /// A resume by a client holding every frame up to `last_seq`.
    Resume {
        /// The last runtime frame the client has.
        last_seq: u64,
    },
}

/// The three tasks of one connection.
struct Bridge {
    writer: AbortOnDropHandle<()>,
    reader: AbortOnDropHandle<()>,
    watchdog: Option<AbortOnDropHandle<()>>,
}

impl Bridge {
    fn start<S>(
        ws: WebSocketStream<S>,
        feed: Feed,
        intake: Intake,
        shared: &Arc<Shared>,
        ping_interval: Option<Duration>,
    ) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        Self {
            writer: AbortOnDropHandle::new(tokio::spawn(write_frames(
                sink,
                feed,
                shared.clone(),
                ping_interval,
            ))),
            reader: AbortOnDropHandle::new(tokio::spawn(read_frames(
                stream,
                intake,
                shared.clone(),
            ))),
            watchdog: ping_interval.map(|interval| {
                AbortOnDropHandle::new(tokio::spawn(watch_liveness(shared.clone(), interval)))
            }),
        }
    }

    /// Waits for the writer (every wait in it ends when the client is gone, which the
    /// watchdog notices, or at the hard stop), then stops the rest.
    async fn finish(self) {
        if let Err(e) = self.writer.await {
            warn!(error = %e, "socket writer failed");
        }
        drop(self.reader);
        drop(self.watchdog);
    }
}

impl SocketBridge {
    /// Runs a plain session over `ws` until it ends, then closes the socket.
    pub async fn serve<S>(self, ws: WebSocketStream<S>, signals: BridgeSignals)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (outbox, outbox_rx) = Outbox::channel(self.session.outbox_capacity);
        let (inbound_tx, inbound_rx) = mpsc::channel::<String>(16);
        let shared = Shared::new(signals.hard_stop, signals.traffic);
        let feed = Feed::Direct(outbox_rx);
        let bridge = Bridge::start(
            ws,
            feed,
            Intake::Direct(inbound_tx),
            &shared,
            self.ping_interval,
        );
        let session = Session::new(self.session, outbox);
        session.run(inbound_rx, signals.shutdown).await;
        shared.close.cancel();
        bridge.finish().await;
    }

    /// Carries a durable session over `ws` until the session ends, the connection drops
    /// (the session then goes on, detached) or another connection takes it over.
    pub async fn serve_durable<S>(
        self,
        ws: WebSocketStream<S>,
        signals: BridgeSignals,
        registry: Arc<Registry>,
        durable: Arc<Durable>,
        start: DurableStart,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Shared::new(signals.hard_stop, signals.traffic);
        let last_seq = match start {
            DurableStart::New => 0,
            DurableStart::Resume { last_seq } => last_seq,
        };
        let cursor = match durable.cursor_after(last_seq) {
            Ok(cursor) => cursor,
            Err(refusal) => return crate::upgrade::refuse_resume(ws, &refusal).await,
        };
        // A resume past the end_session confirm acknowledges it: the session is over,
        // whether or not the old connection's ack or close has been read yet (across two
        // TCP connections nothing orders them).
        if registry.end_if_acknowledged(&durable) {
            return crate::upgrade::refuse_resume(ws, &Refusal::Ended).await;
        }
        let attachment: Attachment = durable.attach(shared.reader_done.clone()).await;
        let first = match start {
            DurableStart::New => durable.resumable_frame(registry.options()),
            DurableStart::Resume { .. } => {
                info!(session_id = %durable.id(), last_seq, "durable session resumed");
                crate::metrics::durable_event(crate::metrics::DurableEvent::Resumed);
                resumed_frame(&durable)
            }
        };
        let feed = Feed::Replay {
            replay: durable.replay.clone(),
            cursor,
            first: Some(first),
            received: durable.watch_received(),
        };
        let bridge = Bridge::start(
            ws,
            feed,
            Intake::Durable(durable.clone()),
            &shared,
            self.ping_interval,
        );
        let taken_over = attachment.taken_over.clone();
        let watch_takeover = async {
            taken_over.cancelled().await;
            shared.violate(CloseFrame {
                code: CloseCode::from(CLOSE_TAKEN_OVER),
                reason: Utf8Bytes::from_static("session taken over by another connection"),
            });
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = bridge.finish() => {}
            () = watch_takeover => {}
        }
        if shared
            .closed_normally
            .load(std::sync::atomic::Ordering::Acquire)
            && !taken_over.is_cancelled()
        {
            registry.end_by_client(&durable);
        }
        drop(attachment);
    }
}

fn resumed_frame(durable: &Durable) -> String {
    use runtimeuse_protocol::resume::SessionResumed;
    ResumeMessage::SessionResumedMessage(SessionResumed {
        session_id: durable.id().to_owned(),
        last_seq: durable.last_received(),
    })
    .to_frame()
}

async fn read_frames<S>(
    mut stream: SplitStream<WebSocketStream<S>>,
    intake: Intake,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _done = shared.reader_done.clone().drop_guard();
    let gone = &shared.client_gone;
    // `None` once the session stopped listening: frames are then read and dropped, so
    // that the closing handshake still completes.
    let mut inbound = Some(intake);
    let mut pings = 0usize;
    let mut drained = shared.traffic.drained();
    loop {
        if pings >= MAX_QUEUED_PONGS {
            shared.traffic.want_flush();
            tokio::select! {
                () = shared.traffic.drained_since(drained) => {}
                () = gone.cancelled() => return,
            }
        }
        let next = tokio::select! {
            next = stream.next() => next,
            () = gone.cancelled() => return,
            // A takeover (or a violation): another connection reads for the session now.
            () = shared.violated.cancelled() => return,
        };
        let now = shared.traffic.drained();
        if now != drained {
            drained = now;
            pings = 0;
        }
        match next {
            Some(Ok(Message::Close(frame))) => {
                if frame.is_some_and(|f| f.code == CloseCode::Normal) {
                    shared
                        .closed_normally
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                break;
            }
            None => break,
            Some(Err(e)) => {
                match close_for(&e) {
                    Some(frame) => {
                        warn!(code = %frame.code, reason = %frame.reason, "closing a connection that broke the protocol");
                        shared.violate(frame);
                    }
                    None => debug!(error = %e, "connection failed"),
                }
                break;
            }
            Some(Ok(Message::Text(text))) => {
                if let Some(intake) = &inbound {
                    let delivered = tokio::select! {
                        delivered = take_frame(intake, text.as_str()) => delivered,
                        () = gone.cancelled() => return,
                        () = shared.violated.cancelled() => return,
                    };
                    if !delivered {
                        inbound = None;
                    }
                }
            }
            Some(Ok(Message::Binary(_))) => debug!("binary frame ignored"),
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(_)) => {}
        }
    }
    if !shared.violated.is_cancelled() {
        gone.cancel();
    }
}

/// Hands one text frame to the session; false once it takes no more. On a durable
/// session, `resume_ack_message`s free replayed frames and are not passed on.
async fn take_frame(intake: &Intake, text: &str) -> bool {
    match intake {
        Intake::Direct(tx) => tx.send(text.to_owned()).await.is_ok(),
        Intake::Durable(durable) => {
            let head = frame_seq(text).unwrap_or_default();
            if head.message_type.as_deref() == Some("resume_ack_message") {
                if let Some(seq) = head.seq {
                    durable.replay.ack(seq);
                }
                return true;
            }
            durable.deliver(text.to_owned(), head.seq).await
        }
    }
}

/// The close frame answering a read error, for errors that are the client's fault.
fn close_for(error: &WsError) -> Option<CloseFrame> {
    let (code, reason) = match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
            CloseCode::Size,
            format!("message of {size} bytes exceeds the limit of {max_size} bytes"),
        ),
        WsError::Capacity(other) => (CloseCode::Size, other.to_string()),
        WsError::Utf8(_) => (
            CloseCode::Invalid,
            "text frame is not valid UTF-8".to_owned(),
        ),
        WsError::Protocol(problem) => (CloseCode::Protocol, problem.to_string()),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate(reason, MAX_CLOSE_REASON)),
    })
}

/// `reason` cut to what a close frame holds.
pub(crate) fn close_reason(reason: String) -> String {
    truncate(reason, MAX_CLOSE_REASON)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// How the writer's main loop ended.
enum WriterEnd {
    /// The session is over: flush and close cleanly.
    Close,
    /// The client broke the protocol.
    Violation,
    /// Nothing more can be written.
    Gone,
}

async fn write_frames<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut outbox: Feed,
    shared: Arc<Shared>,
    ping_interval: Option<Duration>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let interval = ping_interval.unwrap_or(Duration::from_secs(3600));
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A durable connection's handshake frame goes out first, whatever happens next (a
    // takeover included), so that every client learns where it stands.
    let greeting = outbox.greeting();
    let mut acks = outbox.acks();
    let greeted = match greeting {
        Some(frame) => send(&mut sink, &shared, Message::Text(frame)).await,
        None => true,
    };
    let end = loop {
        if !greeted {
            break WriterEnd::Gone;
        }
        tokio::select! {
            biased;
            () = shared.client_gone.cancelled() => break WriterEnd::Gone,
            () = shared.hard_stop.cancelled() => break WriterEnd::Gone,
            () = shared.violated.cancelled() => break WriterEnd::Violation,
            // Pings come before frames: a long stream of output must not starve them.
            _ = pings.tick(), if ping_interval.is_some() => {
                if !send(&mut sink, &shared, Message::Ping(Vec::new().into())).await {
                    break WriterEnd::Gone;
                }
            }
            ack = ack_due(&mut acks) => {
                if !send(&mut sink, &shared, Message::Text(ack)).await {
                    break WriterEnd::Gone;
                }
            }
            () = shared.traffic.flush_wanted() => {
                if !bounded(&shared, sink.flush()).await {
                    break WriterEnd::Gone;
                }
            }
            frame = outbox.recv() => match frame {
                Some(frame) => {
                    if !send(&mut sink, &shared, Message::Text(frame)).await {
                        break WriterEnd::Gone;
                    }
                    // A client taking output is alive, even while its pongs wait behind
                    // the output it still has to read.
                    shared.traffic.touch();
                }
                None => break WriterEnd::Close,
            },
            () = shared.close.cancelled() => break WriterEnd::Close,
        }
    };
    // From here on producers get OutboxClosed instead of waiting on the socket.
    match end {
        WriterEnd::Close => {
            let mut flushed = true;
            while let Some(frame) = outbox.try_recv() {
                if !send(&mut sink, &shared, Message::Text(frame)).await {
                    flushed = false;
                    break;
                }
            }
            outbox.stop();
            if flushed {
                outbox.settle(&shared).await;
            }
            if flushed && send(&mut sink, &shared, Message::Close(Some(normal_close()))).await {
                linger(&shared).await;
            }
        }
        WriterEnd::Violation => {
            outbox.stop();
            if let Some(frame) = shared.take_violation() {
                let _ = tokio::time::timeout(
                    CLOSE_LINGER,
                    send(&mut sink, &shared, Message::Close(Some(frame))),
                )
                .await;
            }
        }
        WriterEnd::Gone => outbox.stop(),
    }
}

/// The next `resume_ack_message` due: once the session took client frames not yet
/// acknowledged (never without `acks`). Cancel-safe.
async fn ack_due(acks: &mut Option<watch::Receiver<u64>>) -> Utf8Bytes {
    if let Some(received) = acks
        && received.changed().await.is_ok()
    {
        let seq = *received.borrow_and_update();
        return Utf8Bytes::from(ResumeMessage::ResumeAckMessage(ResumeAck { seq }).to_frame());
    }
    std::future::pending().await
}

/// The close frame of a session that ended as it should (1000).
fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    }
}

/// Waits for the client's close frame (the reader stops on it), briefly.
async fn linger(shared: &Shared) {
    tokio::select! {
        () = shared.reader_done.cancelled() => {}
        () = tokio::time::sleep(CLOSE_LINGER) => debug!("client did not answer the close frame"),
        () = shared.hard_stop.cancelled() => {}
    }
}

/// Sends one message; false when the client is gone or the runtime stops.
async fn send<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    shared: &Shared,
    message: Message,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    bounded(shared, sink.send(message)).await
}

/// Runs a sink operation until it ends, the client is gone, or the hard stop.
async fn bounded(shared: &Shared, operation: impl Future<Output = Result<(), WsError>>) -> bool {
    tokio::select! {
        done = operation => match done {
            Ok(()) => true,
            Err(e) => {
                debug!(error = %e, "writing to the client failed");
                shared.client_gone.cancel();
                false
            }
        },
        () = shared.client_gone.cancelled() => false,
        () = shared.hard_stop.cancelled() => false,
    }
}

/// Declares the client gone after [`MISSED_PINGS`] intervals in a row without progress.
async fn watch_liveness(shared: Arc<Shared>, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = shared.traffic.progress();
    let mut missed = 0u32;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shared.client_gone.cancelled() => return,
        }
        let now = shared.traffic.progress();
        if now != seen {
            seen = now;
            missed = 0;
            continue;
        }
        missed += 1;
        if missed >= MISSED_PINGS {
            info!(
                missed,
                "client neither answered nor read for {missed} ping intervals; treating it as gone"
            );
            shared.client_gone.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = "é".repeat(200);
        let cut = truncate(long, MAX_CLOSE_REASON);
        assert!(cut.len() <= MAX_CLOSE_REASON);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn oversized_messages_and_bad_utf8_get_their_codes() {
        let too_long = WsError::Capacity(CapacityError::MessageTooLong {
            size: 10,
            max_size: 5,
        });
        let frame = close_for(&too_long).unwrap();
        assert_eq!(frame.code, CloseCode::Size);
        assert!(
            frame.reason.contains("limit of 5 bytes"),
            "{}",
            frame.reason
        );
        let utf8 = WsError::Utf8("bad".into());
        assert_eq!(close_for(&utf8).unwrap().code, CloseCode::Invalid);
        assert!(close_for(&WsError::ConnectionClosed).is_none());
    }
}

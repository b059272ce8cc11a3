//! The bridge between one WebSocket and one [`Session`]: a reader feeding the session's
//! inbound channel, a writer draining its outbox, and pings that notice a dead client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::outbox::{Outbox, OutboxReceiver};
use crate::session::{Session, SessionConfig};

/// Default interval between WebSocket pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);

/// A client that sent nothing (not even a pong) for this many ping intervals is gone.
const MISSED_PINGS: u32 = 3;

/// Settings of one bridged socket.
pub(crate) struct SocketBridge {
    pub session: Arc<SessionConfig>,
    pub ping_interval: Option<Duration>,
}

/// Milliseconds since `origin` when the client was last heard from.
struct LastHeard {
    origin: Instant,
    millis: AtomicU64,
}

impl LastHeard {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.millis.store(now, Ordering::Relaxed);
    }

    fn silence(&self) -> Duration {
        let heard = Duration::from_millis(self.millis.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(heard)
    }
}

impl SocketBridge {
    /// Runs the session over `socket` until it ends, then closes the socket.
    pub async fn serve(self, socket: WebSocket, shutdown: CancellationToken) {
        let (outbox, outbox_rx) = Outbox::channel(self.session.outbox_capacity);
        let (inbound_tx, inbound_rx) = mpsc::channel::<String>(16);
        let (sink, stream) = socket.split();
        let last_heard = Arc::new(LastHeard::new());
        // Set when the session is over: flush what is queued, send Close.
        let close = CancellationToken::new();
        // Set when the client is gone: nothing more can be written, and producers
        // (artifact handshakes, output) must stop waiting on the socket.
        let client_gone = CancellationToken::new();

        let writer = tokio::spawn(write_frames(
            sink,
            outbox_rx,
            close.clone(),
            client_gone.clone(),
            self.ping_interval,
            last_heard.clone(),
        ));
        let reader = tokio::spawn(read_frames(
            stream,
            inbound_tx,
            client_gone.clone(),
            last_heard,
        ));

        let session = Session::new(self.session, outbox);
        session.run(inbound_rx, shutdown).await;
        close.cancel();
        if tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .is_err()
        {
            warn!("socket writer did not finish in time");
        }
        reader.abort();
    }
}

async fn read_frames(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    inbound: mpsc::Sender<String>,
    client_gone: CancellationToken,
    last_heard: Arc<LastHeard>,
) {
    let gone = client_gone.clone();
    let _gone = client_gone.drop_guard();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            // The writer decided the client is dead: end the session's inbound side.
            () = gone.cancelled() => break,
        };
        let Some(message) = message else { break };
        last_heard.touch();
        let text = match message {
            Ok(Message::Text(text)) => text.to_string(),
            Ok(Message::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        if inbound.send(text).await.is_err() {
            break;
        }
    }
}

async fn write_frames(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut outbox: OutboxReceiver,
    close: CancellationToken,
    client_gone: CancellationToken,
    ping_interval: Option<Duration>,
    last_heard: Arc<LastHeard>,
) {
    let interval = ping_interval.unwrap_or(Duration::from_secs(3600));
    // A client that takes longer than this to accept one frame is not reading at all.
    let send_limit = ping_interval.map(|i| i * MISSED_PINGS);
    let send = async |sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
                      message: Message|
           -> bool {
        match send_limit {
            Some(limit) => matches!(
                tokio::time::timeout(limit, sink.send(message)).await,
                Ok(Ok(()))
            ),
            None => sink.send(message).await.is_ok(),
        }
    };
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = client_gone.cancelled() => break,
            // Pings come before frames: a long stream of output must not starve them.
            _ = pings.tick(), if ping_interval.is_some() => {
                if last_heard.silence() > interval * MISSED_PINGS {
                    info!(silence = ?last_heard.silence(), "client stopped answering pings; treating it as gone");
                    client_gone.cancel();
                    break;
                }
                if !send(&mut sink, Message::Ping(Vec::new().into())).await {
                    client_gone.cancel();
                    break;
                }
            }
            frame = outbox.recv() => match frame {
                Some(frame) => {
                    if !send(&mut sink, Message::Text(frame.into())).await {
                        client_gone.cancel();
                        break;
                    }
                    // A client taking frames off the socket is alive, even if its pongs
                    // queue behind the output it is still reading.
                    last_heard.touch();
                }
                None => break,
            },
            () = close.cancelled() => {
                while let Some(frame) = outbox.try_recv() {
                    if !send(&mut sink, Message::Text(frame.into())).await {
                        break;
                    }
                }
                let _ = send(&mut sink, Message::Close(None)).await;
                break;
            }
        }
    }
    // From here on producers get OutboxClosed instead of waiting on a dead socket.
    outbox.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

//! Resumable sessions (the protocol's "resumable sessions" extension, opted into with
//! [`ClientBuilder::resume`](crate::ClientBuilder::resume)).
//!
//! A durable session lives in the runtime apart from its WebSocket. Here a driver task
//! ([`driver`]) owns the real WebSocket, and the request loop above reads and writes a
//! [`ResumableLink`] that never sees a drop: the driver numbers outgoing frames and keeps
//! them, drops replayed duplicates, acknowledges what arrived, and after a drop dials again
//! with the session's id and key (jittered exponential backoff, within the runtime's grace
//! period), re-sending what the runtime did not get. Only the end of the session, a refusal
//! to resume, a takeover by another connection or the grace running out end the link.

mod ack;
mod backoff;
mod driver;
mod liveness;
mod seq;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use runtimeuse_protocol::resume::{HEADER_RESUMABLE, ResumeMessage, SessionResumable};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::Error;
use crate::connection::{ConnectConfig, WsStream, dial};
use crate::url_mask::mask_url;

/// Frames buffered between the driver and a slow reader above it; past that the driver
/// stops reading the socket, so that a slow consumer back-pressures the runtime.
const INBOUND_BUFFER: usize = 64;

/// What the driver hands up: a frame, or why the link ended (`Err`).
type Item = Result<Message, tungstenite::Error>;

/// The link of a durable session, as the request loop sees it: frames in and out, across
/// reconnections. It ends only when the session does (or cannot be resumed).
#[derive(Debug)]
pub(crate) struct ResumableLink {
    inbound: mpsc::Receiver<Item>,
    outbound: Option<mpsc::UnboundedSender<String>>,
    driver: Option<JoinHandle<()>>,
    reconnects: Arc<AtomicU64>,
    /// Whether a connection is up (false while the driver reconnects).
    attached: watch::Receiver<bool>,
    /// Why the driver ended the link, once it did.
    end: EndReason,
}

/// Why a link ended, shared by its driver (which sets it) and the link (which reports it
/// to a sender that comes too late).
#[derive(Debug, Clone, Default)]
pub(crate) struct EndReason(Arc<Mutex<Option<String>>>);

impl EndReason {
    fn set(&self, reason: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResumableLink {
    /// Queues a frame for the runtime (numbered and kept by the driver).
    pub fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        let Message::Text(text) = message else {
            return Ok(()); // control frames are the driver's business
        };
        match &self.outbound {
            Some(outbound) if outbound.send(text.as_str().to_owned()).is_ok() => Ok(()),
            _ => Err(match self.end.get() {
                Some(reason) => ended(reason),
                None => tungstenite::Error::ConnectionClosed,
            }),
        }
    }

    /// Ends the session: the driver acknowledges what it received and closes with 1000
    /// (the caller bounds the wait).
    pub async fn close(&mut self) {
        self.outbound = None;
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
        self.inbound.close();
    }

    /// How many times the link reconnected so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Follows whether a connection is up: false while the driver reconnects.
    pub fn attached(&self) -> watch::Receiver<bool> {
        self.attached.clone()
    }
}

impl Stream for ResumableLink {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        self.inbound.poll_recv(cx)
    }
}

/// What resuming a session takes, from its `session_resumable_message`.
#[derive(Clone)]
pub(crate) struct Ticket {
    pub session_id: String,
    /// A credential: never logged, sent as a sensitive header.
    pub resume_key: String,
    pub grace: Duration,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("session_id", &self.session_id)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How long the runtime has to answer our close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// How long a runtime whose `101` does not advertise the extension still gets to send its
/// `session_resumable_message` (a proxy may have dropped the header) before the open fails.
/// The runtime sends that frame right after the upgrade, so this is generous.
const UNADVERTISED_WAIT: Duration = Duration::from_secs(5);

/// Opens a new durable session: dials with `X-RuntimeUse-Resumable: 1`, reads the
/// runtime's `session_resumable_message` (within the connect timeout) and starts the
/// driver.
///
/// # Errors
/// [`Error::Connect`] when the runtime cannot be reached or offers no durable session: a
/// runtime without the extension (no `X-RuntimeUse-Resumable` on its `101`) fails the open
/// after [`UNADVERTISED_WAIT`] at most, one that advertises it but sends nothing after the
/// connect timeout (an `io::Error` of kind `TimedOut`); [`Error::Runtime`] when it
/// answers with an `error_message`.
pub(crate) async fn open(config: &ConnectConfig) -> Result<ResumableLink, Error> {
    let deadline = Instant::now() + config.connect_timeout;
    tracing::debug!(url = %mask_url(&config.url), "opening a resumable session");
    let opt_in = vec![(
        HeaderName::from_static(HEADER_RESUMABLE),
        HeaderValue::from_static("1"),
    )];
    let (mut ws, response) = dial(config, opt_in, config.connect_timeout)
        .await
        .map_err(|e| config.connect_error(e))?;
    let not_offered = |why: String| Error::Connect {
        url: mask_url(&config.url),
        source: format!("the runtime did not open a resumable session: {why}").into(),
    };
    let advertised = response
        .headers()
        .get(HEADER_RESUMABLE)
        .is_some_and(|value| value.as_bytes().trim_ascii() == b"1");
    let first = if advertised {
        tokio::time::timeout_at(deadline, first_text(&mut ws))
            .await
            .map_err(|_| Error::Connect {
                url: mask_url(&config.url),
                // An io::Error of kind TimedOut, like any connect timeout.
                source: Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the runtime did not open a resumable session: no session_resumable_message within {:?}",
                        config.connect_timeout
                    ),
                )),
            })?
    } else {
        let wait = UNADVERTISED_WAIT.min(config.connect_timeout);
        match tokio::time::timeout(wait, first_text(&mut ws)).await {
            Ok(first) => first,
            Err(_) => {
                let _ = tokio::time::timeout(CLOSE_LINGER, ws.close(None)).await;
                return Err(not_offered(format!(
                    "it does not support the resumable-sessions extension (its 101 response has no {HEADER_RESUMABLE} header and no session_resumable_message came within {wait:?}); build the client without resume"
                )));
            }
        }
    }
    .map_err(not_offered)?;
    let ticket = match serde_json::from_str::<ResumeMessage>(&first) {
        Ok(ResumeMessage::SessionResumableMessage(SessionResumable {
            session_id,
            resume_key,
            grace_ms,
            buffer_bytes,
        })) => {
            tracing::info!(
                url = %mask_url(&config.url),
                %session_id,
                grace_ms,
                buffer_bytes,
                "resumable session opened"
            );
            Ticket {
                session_id,
                resume_key,
                grace: Duration::from_millis(grace_ms),
            }
        }
        _ => {
            let _ = tokio::time::timeout(CLOSE_LINGER, ws.close(None)).await;
            return Err(unexpected_first_frame(&first).unwrap_or_else(|| {
                not_offered(format!("its first frame was {}", describe(&first)))
            }));
        }
    };
    Ok(driver::spawn(config.clone(), ticket, ws))
}

/// Starts the driver over an open socket and returns the link it serves.
fn link_over(spawn: impl FnOnce(DriverEnds) -> JoinHandle<()>) -> ResumableLink {
    let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_BUFFER);
    let reconnects = Arc::new(AtomicU64::new(0));
    let end = EndReason::default();
    let (attached_tx, attached) = watch::channel(true);
    let driver = spawn(DriverEnds {
        outbound: outbound_rx,
        inbound: inbound_tx,
        reconnects: Arc::clone(&reconnects),
        attached: attached_tx,
        end: end.clone(),
    });
    ResumableLink {
        inbound: inbound_rx,
        outbound: Some(outbound_tx),
        driver: Some(driver),
        reconnects,
        attached,
        end,
    }
}

/// The driver's ends of a link.
struct DriverEnds {
    outbound: mpsc::UnboundedReceiver<String>,
    inbound: mpsc::Sender<Item>,
    reconnects: Arc<AtomicU64>,
    attached: watch::Sender<bool>,
    end: EndReason,
}

/// The first text frame on `ws`, or why there is none.
async fn first_text(ws: &mut WsStream) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(frame) if !frame.reason.is_empty() => {
                        format!("closed ({}: {})", frame.code, frame.reason)
                    }
                    Some(frame) => format!("closed ({})", frame.code),
                    None => "closed".into(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the connection ended".into()),
        }
    }
}

/// An `error_message` as the first frame is the runtime's answer: [`Error::Runtime`].
fn unexpected_first_frame(frame: &str) -> Option<Error> {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(frame) else {
        return None;
    };
    if object.get("message_type")?.as_str()? != "error_message" {
        return None;
    }
    let error = match object.remove("error") {
        Some(Value::String(error)) => error,
        _ => String::new(),
    };
    let metadata = match object.remove("metadata") {
        Some(Value::Object(metadata)) => metadata,
        _ => serde_json::Map::new(),
    };
    Some(Error::Runtime { error, metadata })
}

/// A frame named by its type, for errors (its content may hold secrets).
fn describe(frame: &str) -> String {
    match runtimeuse_protocol::resume::frame_seq(frame) {
        Ok(peek) => match peek.message_type {
            Some(message_type) => format!("a {message_type}"),
            None => "an object without message_type".into(),
        },
        Err(_) => "not JSON".into(),
    }
}

/// A reason for the link's end, as the request loop reports it
/// ([`Error::ConnectionClosed`] with this text).
fn ended(reason: impl Into<String>) -> tungstenite::Error {
    tungstenite::Error::Io(std::io::Error::other(reason.into()))
}

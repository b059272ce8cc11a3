//! The task owning a durable session's WebSocket: numbering, acknowledging, dropping
//! duplicates, and resuming after a drop, so that the link above it never sees one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use runtimeuse_protocol::resume::{
    CLOSE_TAKEN_OVER, HEADER_LAST_SEQ, HEADER_RESUME_KEY, HEADER_SESSION_ID, RESUME_REFUSED,
    ResumeAck, ResumeMessage, SessionResumed, frame_seq,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::Instrument;

use super::ack::AckPolicy;
use super::backoff::Backoff;
use super::liveness::{Check, Liveness};
use super::seq::{Received, Sent, Verdict};
use super::{CLOSE_LINGER, EndReason, Item, ResumableLink, Ticket, describe, ended, link_over};
use crate::connection::{ConnectConfig, DialError, WsStream, dial};
use crate::request_loop::sleep_until;
use crate::url_mask::mask_url;

/// How long closing may take when the connection is down: a last resume to deliver the
/// final acknowledgement and the close frame.
const CLOSE_BUDGET: Duration = Duration::from_secs(4);

/// Starts the driver of a new durable session over its first socket.
pub(super) fn spawn(config: ConnectConfig, ticket: Ticket, ws: WsStream) -> ResumableLink {
    link_over(|ends| {
        let driver = Driver {
            config,
            ticket,
            ws: Some(ws),
            outbound: ends.outbound,
            inbound: ends.inbound,
            reconnects: ends.reconnects,
            attached: ends.attached,
            end: ends.end,
            sent: Sent::default(),
            received: Received::default(),
            ack: AckPolicy::default(),
            pending: None,
            end_confirmed: false,
            detached: None,
            backoff: Backoff::default(),
            closing: None,
            liveness: Liveness::new(Instant::now()),
        };
        tokio::spawn(driver.run().in_current_span())
    })
}

/// Whether the driver goes on.
enum Flow {
    Go,
    Stop,
}

/// The connection is down since `since`; the next resume is tried at `next_attempt`.
struct Detached {
    since: Instant,
    next_attempt: Instant,
    attempts: u32,
    last_error: String,
}

/// How one resume attempt failed.
enum Failed {
    /// Worth trying again (refused connection, reset, timeout, busy runtime).
    Retry(String),
    /// The runtime refused the resume: its `error_message` frame and the reason.
    Refused { frame: String, reason: String },
    /// No point in trying again.
    Fatal(String),
}

struct Driver {
    config: ConnectConfig,
    ticket: Ticket,
    /// The live socket; `None` while detached.
    ws: Option<WsStream>,
    /// Frames from the request loop.
    outbound: mpsc::UnboundedReceiver<String>,
    /// Frames for the request loop.
    inbound: mpsc::Sender<Item>,
    reconnects: Arc<AtomicU64>,
    /// Whether a connection is up, for the request loop's idle limit.
    attached: watch::Sender<bool>,
    end: EndReason,
    sent: Sent,
    received: Received,
    ack: AckPolicy,
    /// A frame received and waiting for room in `inbound`; the socket is not read meanwhile.
    pending: Option<Message>,
    /// `end_session_confirm_message` arrived.
    end_confirmed: bool,
    detached: Option<Detached>,
    backoff: Backoff,
    /// The request loop closed the link: finish by then.
    closing: Option<Instant>,
    /// Pings a silent runtime, and notices a connection that died without a word.
    liveness: Liveness,
}

impl Driver {
    async fn run(mut self) {
        loop {
            if let Some(by) = self.closing {
                if self.ws.is_some() {
                    self.finish().await;
                    return;
                }
                if Instant::now() >= by {
                    tracing::debug!("closing without a connection to the runtime");
                    return;
                }
            }
            let connected = self.ws.is_some();
            let reading = connected && self.pending.is_none();
            let next_attempt = self.detached.as_ref().map(|d| d.next_attempt);
            let delivering = self.pending.is_some();
            // Owned, so that the permit does not borrow `self` in the branch below.
            let inbound = self.inbound.clone();
            let flow = tokio::select! {
                biased;
                frame = self.outbound.recv(), if self.closing.is_none() => match frame {
                    Some(frame) => self.send_frame(frame).await,
                    None => self.begin_close(),
                },
                () = sleep_until(self.ack.due()), if connected => self.send_ack().await,
                permit = inbound.reserve_owned(), if delivering => match permit {
                    Ok(permit) => {
                        if let Some(message) = self.pending.take() {
                            permit.send(Ok(message));
                        }
                        // Reading starts again: the silence so far was ours.
                        self.liveness.heard(Instant::now());
                        Flow::Go
                    }
                    Err(_) => self.begin_close(),
                },
                item = next_item(self.ws.as_mut()), if reading => self.on_item(item).await,
                () = tokio::time::sleep_until(self.liveness.due()), if reading => {
                    self.check_liveness().await
                }
                () = sleep_until(next_attempt), if !connected => self.attempt().await,
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    /// The request loop is done with the link (closed or dropped it).
    fn begin_close(&mut self) -> Flow {
        self.pending = None;
        self.closing = Some(Instant::now() + CLOSE_BUDGET);
        Flow::Go
    }

    /// Numbers and keeps a frame of the request loop, and writes it if connected.
    async fn send_frame(&mut self, frame: String) -> Flow {
        let wire = self.sent.push(frame);
        if let Some(ws) = self.ws.as_mut()
            && let Err(e) = ws.send(Message::Text(wire)).await
        {
            self.detach(format!("sending failed: {e}"));
        }
        Flow::Go
    }

    async fn send_ack(&mut self) -> Flow {
        let Some(seq) = self.ack.take() else {
            return Flow::Go;
        };
        let frame = ResumeMessage::ResumeAckMessage(ResumeAck { seq }).to_frame();
        if let Some(ws) = self.ws.as_mut()
            && let Err(e) = ws.send(Message::text(frame)).await
        {
            // The resume's last seq acknowledges it instead.
            self.detach(format!("sending an acknowledgement failed: {e}"));
        }
        Flow::Go
    }

    /// Pings a silent runtime; takes a connection silent for too long for dropped.
    async fn check_liveness(&mut self) -> Flow {
        match self.liveness.check(Instant::now()) {
            Check::Ping => {
                if let Some(ws) = self.ws.as_mut()
                    && let Err(e) = ws.send(Message::Ping(Default::default())).await
                {
                    self.detach(format!("sending a ping failed: {e}"));
                }
            }
            Check::Dead => self.detach(format!(
                "nothing heard from the runtime for {:?}",
                super::liveness::DEAD_AFTER
            )),
        }
        Flow::Go
    }

    async fn on_item(&mut self, item: Option<Result<Message, tungstenite::Error>>) -> Flow {
        if let Some(Ok(_)) = &item {
            self.liveness.heard(Instant::now());
        }
        match item {
            Some(Ok(Message::Text(text))) => self.on_text(text).await,
            Some(Ok(message @ Message::Binary(_))) => {
                self.pending = Some(message); // the request loop reports it
                Flow::Go
            }
            Some(Ok(Message::Close(frame))) => self.on_close(frame).await,
            Some(Ok(_)) => Flow::Go,
            Some(Err(e)) => {
                self.detach(e.to_string());
                Flow::Go
            }
            None => {
                self.detach("the connection ended".into());
                Flow::Go
            }
        }
    }

    async fn on_text(&mut self, text: tungstenite::Utf8Bytes) -> Flow {
        let peek = frame_seq(text.as_str()).unwrap_or_default();
        match peek.message_type.as_deref() {
            Some("resume_ack_message") => return self.on_runtime_ack(peek.seq).await,
            Some("session_resumable_message" | "session_resumed_message") => {
                tracing::debug!(
                    message_type = peek.message_type.as_deref().unwrap_or_default(),
                    "ignoring an extension message in mid-connection"
                );
                return Flow::Go;
            }
            Some("end_session_confirm_message") => self.end_confirmed = true,
            _ => {}
        }
        match self.received.admit(peek.seq) {
            Verdict::Duplicate => {
                tracing::trace!(seq = peek.seq, "dropping a replayed frame already received");
                return Flow::Go;
            }
            Verdict::Gap { expected } => {
                let reason = format!(
                    "the runtime skipped frames of the resumable session (expected seq {expected}, got {})",
                    peek.seq.unwrap_or_default()
                );
                tracing::warn!("{reason}");
                self.end_link(Err(ended(reason))).await;
                return Flow::Stop;
            }
            Verdict::New => {
                let seq = self.received.last();
                if self.ack.on_frame(seq, text.len(), Instant::now()) {
                    self.send_ack().await;
                }
            }
            Verdict::Unnumbered => {}
        }
        self.pending = Some(Message::Text(text));
        Flow::Go
    }

    /// The runtime holds our frames up to `seq`: they need no re-sending after a resume.
    async fn on_runtime_ack(&mut self, seq: Option<u64>) -> Flow {
        let Some(seq) = seq else {
            tracing::debug!("ignoring a resume_ack_message without seq");
            return Flow::Go;
        };
        if self.sent.confirm(seq) {
            tracing::trace!(
                seq,
                kept = self.sent.kept(),
                "the runtime acknowledged our frames"
            );
            return Flow::Go;
        }
        let reason = format!(
            "the runtime acknowledged our frame {seq} but only {} were sent",
            self.sent.last()
        );
        self.end_link(Err(ended(reason))).await;
        Flow::Stop
    }

    async fn on_close(&mut self, frame: Option<CloseFrame>) -> Flow {
        let code = frame.as_ref().map(|frame| u16::from(frame.code));
        match code {
            Some(CLOSE_TAKEN_OVER) => {
                tracing::warn!(
                    session_id = %self.ticket.session_id,
                    "the session was taken over by another connection; not reconnecting"
                );
                let reason = "the session was taken over by another connection (close 4001)";
                self.end_link(Err(ended(reason))).await;
                Flow::Stop
            }
            // The end of the session, or the runtime's verdict on what we sent: a resume
            // would not change it.
            Some(1000 | 1002 | 1003 | 1007 | 1008 | 1009 | 1010) => {
                self.end_link(Ok(Message::Close(frame))).await;
                Flow::Stop
            }
            _ => {
                let reason = match &frame {
                    Some(frame) if !frame.reason.is_empty() => {
                        format!(
                            "the runtime closed the connection ({}: {})",
                            frame.code, frame.reason
                        )
                    }
                    Some(frame) => format!("the runtime closed the connection ({})", frame.code),
                    None => "the runtime closed the connection".into(),
                };
                self.detach(reason);
                Flow::Go
            }
        }
    }

    /// The connection dropped: resume after a backoff delay.
    fn detach(&mut self, reason: String) {
        self.ws = None;
        if self.detached.is_some() {
            return;
        }
        self.attached.send_replace(false);
        let now = Instant::now();
        tracing::warn!(
            url = %mask_url(&self.config.url),
            session_id = %self.ticket.session_id,
            %reason,
            grace_ms = u64::try_from(self.ticket.grace.as_millis()).unwrap_or(u64::MAX),
            "connection to the runtime lost; resuming the session"
        );
        self.detached = Some(Detached {
            since: now,
            next_attempt: now + self.backoff.next_delay(),
            attempts: 0,
            last_error: reason,
        });
    }

    /// One resume attempt, or the end when the grace period is over.
    async fn attempt(&mut self) -> Flow {
        let Some(detached) = self.detached.as_mut() else {
            return Flow::Go;
        };
        let now = Instant::now();
        let elapsed = now - detached.since;
        if elapsed >= self.ticket.grace {
            let reason = format!(
                "could not resume the session within its grace period of {:?} ({} attempts; last error: {})",
                self.ticket.grace, detached.attempts, detached.last_error
            );
            tracing::warn!(url = %mask_url(&self.config.url), "{reason}");
            self.end_link(Err(ended(reason))).await;
            return Flow::Stop;
        }
        detached.attempts += 1;
        let attempts = detached.attempts;
        let mut budget = (self.ticket.grace - elapsed).min(self.config.connect_timeout);
        if let Some(by) = self.closing {
            budget = budget.min(by.saturating_duration_since(now));
        }
        tracing::debug!(
            url = %mask_url(&self.config.url),
            attempt = attempts,
            last_seq = self.received.last(),
            "resuming the session"
        );
        match self.resume_once(budget).await {
            Ok((ws, resumed)) => self.resumed(ws, resumed).await,
            Err(Failed::Retry(reason)) => {
                tracing::debug!(attempt = attempts, %reason, "resume attempt failed");
                let delay = self.backoff.next_delay();
                if let Some(detached) = self.detached.as_mut() {
                    detached.last_error = reason;
                    detached.next_attempt = Instant::now() + delay;
                }
                Flow::Go
            }
            Err(Failed::Refused { frame, reason }) => {
                tracing::warn!(
                    session_id = %self.ticket.session_id,
                    %reason,
                    "the runtime refused to resume the session"
                );
                // A request in flight ends with the runtime's refusal as its error.
                if self.closing.is_none() {
                    self.deliver(Ok(Message::text(frame))).await;
                }
                let reason = format!("the runtime refused to resume the session ({reason})");
                self.end_link(Err(ended(reason))).await;
                Flow::Stop
            }
            Err(Failed::Fatal(reason)) => {
                tracing::warn!(url = %mask_url(&self.config.url), %reason, "cannot resume the session");
                self.end_link(Err(ended(reason))).await;
                Flow::Stop
            }
        }
    }

    /// Dials with the session's id, key and last seq, and reads the runtime's answer.
    async fn resume_once(&self, budget: Duration) -> Result<(WsStream, SessionResumed), Failed> {
        let deadline = Instant::now() + budget;
        let mut key = HeaderValue::try_from(self.ticket.resume_key.as_str())
            .map_err(|e| Failed::Fatal(format!("unusable resume key: {e}")))?;
        key.set_sensitive(true);
        let headers = vec![
            (
                HeaderName::from_static(HEADER_SESSION_ID),
                HeaderValue::try_from(self.ticket.session_id.as_str())
                    .map_err(|e| Failed::Fatal(format!("unusable session id: {e}")))?,
            ),
            (HeaderName::from_static(HEADER_RESUME_KEY), key),
            (
                HeaderName::from_static(HEADER_LAST_SEQ),
                HeaderValue::from(self.received.last()),
            ),
        ];
        let (mut ws, _response) = dial(&self.config, headers, budget)
            .await
            .map_err(|e| self.dial_failure(e))?;
        let first = match tokio::time::timeout_at(deadline, super::first_text(&mut ws)).await {
            Err(_) => return Err(Failed::Retry("no answer to the resume in time".into())),
            Ok(Err(reason)) if reason.starts_with("closed (1008") => {
                return Err(Failed::Refused {
                    frame: refusal_frame(&reason),
                    reason,
                });
            }
            Ok(Err(reason)) => return Err(Failed::Retry(reason)),
            Ok(Ok(first)) => first,
        };
        if let Ok(ResumeMessage::SessionResumedMessage(resumed)) =
            serde_json::from_str::<ResumeMessage>(&first)
        {
            if resumed.session_id != self.ticket.session_id {
                return Err(Failed::Fatal(format!(
                    "the runtime resumed session {} instead of {}",
                    resumed.session_id, self.ticket.session_id
                )));
            }
            return Ok((ws, resumed));
        }
        let _ = tokio::time::timeout(CLOSE_LINGER, ws.close(None)).await;
        match refusal_reason(&first) {
            Some(reason) => Err(Failed::Refused {
                frame: first,
                reason,
            }),
            None => Err(Failed::Fatal(format!(
                "the runtime answered a resume with {} instead of session_resumed_message",
                describe(&first)
            ))),
        }
    }

    /// What a failed dial of a resume means: a refused token (401/403) is final, anything
    /// else is retried.
    fn dial_failure(&self, error: DialError) -> Failed {
        let fatal = matches!(
            &error,
            DialError::Handshake(tungstenite::Error::Http(response))
                if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
        );
        let text = self.config.connect_error(error).to_string();
        if fatal {
            Failed::Fatal(text)
        } else {
            Failed::Retry(text)
        }
    }

    /// Goes on over `ws`: re-sends what the runtime did not get.
    async fn resumed(&mut self, mut ws: WsStream, resumed: SessionResumed) -> Flow {
        if resumed.last_seq < self.sent.confirmed() {
            // What it acknowledged is forgotten here: it cannot be sent again.
            let reason = format!(
                "the runtime resumed at our frame {} after acknowledging frame {}",
                resumed.last_seq,
                self.sent.confirmed()
            );
            self.end_link(Err(ended(reason))).await;
            return Flow::Stop;
        }
        if !self.sent.confirm(resumed.last_seq) {
            let reason = format!(
                "the runtime claims our frame {} but only {} were sent",
                resumed.last_seq,
                self.sent.last()
            );
            self.end_link(Err(ended(reason))).await;
            return Flow::Stop;
        }
        self.ack.acked_by_resume(self.received.last());
        self.backoff.reset();
        let reconnects = self.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
        self.attached.send_replace(true);
        let (attempts, detached_ms) = self.detached.take().map_or((0, 0), |d| {
            let ms = u64::try_from(d.since.elapsed().as_millis()).unwrap_or(u64::MAX);
            (d.attempts, ms)
        });
        let resend = self.sent.kept();
        tracing::info!(
            url = %mask_url(&self.config.url),
            session_id = %self.ticket.session_id,
            reconnects,
            attempts,
            detached_ms,
            runtime_had = resumed.last_seq,
            resend,
            "session resumed"
        );
        let mut written = Ok(());
        for frame in self.sent.unconfirmed() {
            written = ws.feed(Message::Text(frame.clone())).await;
            if written.is_err() {
                break;
            }
        }
        if written.is_ok() {
            written = ws.flush().await;
        }
        self.ws = Some(ws);
        self.liveness.heard(Instant::now());
        if let Err(e) = written {
            self.detach(format!("re-sending after the resume failed: {e}"));
        }
        Flow::Go
    }

    /// Hands `item` to the request loop, unless it is gone or closing meanwhile.
    async fn deliver(&mut self, item: Item) {
        let inbound = self.inbound.clone();
        let send = inbound.send(item);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => {
                    let _ = sent;
                    return;
                }
                frame = self.outbound.recv(), if self.closing.is_none() => match frame {
                    // Too late to go out; the link is ending.
                    Some(_) => {}
                    None => {
                        self.closing = Some(Instant::now());
                        return;
                    }
                },
            }
        }
    }

    /// Ends the link: what is pending, then `last` (a close frame or the reason).
    async fn end_link(&mut self, last: Item) {
        self.end.set(match &last {
            Ok(Message::Close(Some(frame))) => {
                format!("the runtime closed the connection ({})", frame.code)
            }
            Ok(_) => "the runtime closed the connection".into(),
            Err(e) => e.to_string(),
        });
        if self.closing.is_none()
            && let Some(message) = self.pending.take()
        {
            self.deliver(Ok(message)).await;
        }
        if self.closing.is_none() {
            self.deliver(last).await;
        }
        if let Some(mut ws) = self.ws.take() {
            // Drives the close handshake (the answer to the runtime's close frame).
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
    }

    /// The request loop closed: acknowledge everything and close with 1000, which ends
    /// the durable session in the runtime.
    async fn finish(&mut self) {
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        if let Some(seq) = self.ack.take() {
            let frame = ResumeMessage::ResumeAckMessage(ResumeAck { seq }).to_frame();
            let _ = ws.send(Message::text(frame)).await;
        }
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: tungstenite::Utf8Bytes::from_static(""),
        };
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            let _ = ws.close(Some(normal)).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        tracing::debug!(
            session_id = %self.ticket.session_id,
            end_confirmed = self.end_confirmed,
            "resumable session closed"
        );
    }
}

/// The next item of the socket (never resolves without one).
async fn next_item(ws: Option<&mut WsStream>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// The `reason` of an `error_message` refusing a resume, if `frame` is one.
fn refusal_reason(frame: &str) -> Option<String> {
    let value: Value = serde_json::from_str(frame).ok()?;
    if value.get("message_type")?.as_str()? != "error_message" {
        return None;
    }
    let metadata = value.get("metadata")?;
    if metadata.get("error_name")?.as_str()? != RESUME_REFUSED {
        return None;
    }
    Some(
        metadata
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
    )
}

/// The `error_message` standing for a refusal that came as a bare 1008 close.
fn refusal_frame(reason: &str) -> String {
    serde_json::json!({
        "message_type": "error_message",
        "error": format!("the runtime refused to resume the session: {reason}"),
        "metadata": {"error_name": RESUME_REFUSED, "reason": reason},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_recognised_by_their_error_name() {
        let frame = r#"{"message_type":"error_message","error":"no","metadata":{"error_name":"ResumeRefused","reason":"invalid_key"}}"#;
        assert_eq!(refusal_reason(frame).as_deref(), Some("invalid_key"));
        let other =
            r#"{"message_type":"error_message","error":"no","metadata":{"error_name":"Other"}}"#;
        assert_eq!(refusal_reason(other), None);
        assert_eq!(refusal_reason(r#"{"message_type":"result_message"}"#), None);
        assert_eq!(refusal_reason("nope"), None);
        let synthetic = refusal_frame("closed (1008)");
        assert_eq!(refusal_reason(&synthetic).as_deref(), Some("closed (1008)"));
    }
}

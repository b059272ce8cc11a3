//! The session's outbox: the one path every outgoing message takes.
//!
//! Messages are redacted with every secret the session has seen, serialised, and queued on
//! a bounded channel that the socket writer drains. The bound gives back-pressure: a
//! command that prints faster than the client reads is slowed down (its pipe fills up)
//! instead of growing memory.

use std::sync::{Arc, RwLock};

use runtimeuse_protocol::ServerMessage;
use tokio::sync::mpsc;

use crate::redact::Redactor;

/// Default number of queued frames before senders wait.
pub const DEFAULT_OUTBOX_CAPACITY: usize = 64;

/// The socket is gone; the message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client connection is closed")]
pub struct OutboxClosed;

/// Cloneable sending half of a session's outbox.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<String>,
    redactor: Arc<RwLock<Redactor>>,
}

/// Receiving half: serialised, redacted JSON frames in send order.
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::Receiver<String>,
}

impl OutboxReceiver {
    /// The next frame, or `None` once every [`Outbox`] clone is dropped.
    pub async fn recv(&mut self) -> Option<String> {
        self.rx.recv().await
    }

    /// A frame that is already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<String> {
        self.rx.try_recv().ok()
    }

    /// Stops accepting frames; pending senders see [`OutboxClosed`].
    pub fn close(&mut self) {
        self.rx.close();
    }
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames.
    pub fn channel(capacity: usize) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Outbox {
                tx,
                redactor: Arc::new(RwLock::new(Redactor::default())),
            },
            OutboxReceiver { rx },
        )
    }

    /// Adds secrets to redact from now on (they accumulate over the session).
    pub fn add_secrets(&self, secrets: &Redactor) {
        if secrets.is_empty() {
            return;
        }
        let mut guard = self
            .redactor
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = guard.union(secrets);
    }

    /// The redactor holding every secret seen so far.
    pub fn redactor(&self) -> Redactor {
        self.redactor
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Redacts, serialises and queues `message`, waiting while the queue is full.
    pub async fn send(&self, message: ServerMessage) -> Result<(), OutboxClosed> {
        let frame = self.encode(&message);
        self.tx.send(frame).await.map_err(|_| OutboxClosed)
    }

    /// Whether the receiving side is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once the receiving side is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// The frame `message` becomes: redacted JSON text.
    pub fn encode(&self, message: &ServerMessage) -> String {
        let redactor = self.redactor();
        if redactor.is_empty() {
            return serde_json::to_string(message).unwrap_or_else(|e| encode_failure(&e));
        }
        match serde_json::to_value(message) {
            Ok(mut value) => {
                redactor.redact_json(&mut value);
                value.to_string()
            }
            Err(e) => encode_failure(&e),
        }
    }
}

/// Our message types always serialise; should that ever break, say so on the wire.
fn encode_failure(error: &serde_json::Error) -> String {
    serde_json::json!({
        "message_type": "error_message",
        "error": format!("internal error: could not encode message: {error}"),
        "metadata": {},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtimeuse_protocol::{AssistantMessage, ServerMessage};

    #[tokio::test]
    async fn messages_are_redacted_with_accumulated_secrets() {
        let (outbox, mut rx) = Outbox::channel(4);
        outbox.add_secrets(&Redactor::new(["alpha"]));
        outbox.add_secrets(&Redactor::new(["beta"]));
        outbox
            .send(ServerMessage::AssistantMessage(AssistantMessage {
                text_blocks: vec!["alpha and beta".into()],
            }))
            .await
            .unwrap();
        let frame = rx.recv().await.unwrap();
        assert!(frame.contains("[REDACTED] and [REDACTED]"), "{frame}");
        assert!(!frame.contains("alpha"));
    }

    #[tokio::test]
    async fn send_fails_once_receiver_is_closed() {
        let (outbox, mut rx) = Outbox::channel(1);
        rx.close();
        assert_eq!(
            outbox.send(ServerMessage::EndSessionConfirmMessage).await,
            Err(OutboxClosed)
        );
        assert!(outbox.is_closed());
    }
}

//! The session's outbox: the one path every outgoing message takes.
//!
//! Messages are redacted with every secret the session has seen (their values only, never
//! the protocol's keys and tags), serialised, and queued on
//! a bounded channel that the socket writer drains. The bound gives back-pressure: a
//! command that prints faster than the client reads is slowed down (its pipe fills up)
//! instead of growing memory.

use std::sync::{Arc, RwLock};

use runtimeuse_protocol::{ResultData, ServerMessage};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    presence: Presence,
}

/// Whether a session's client is still there: connected, or (on a durable session)
/// detached but within its grace period. It is its own signal, apart from the outbox: a
/// durable session's outbox stays open while no connection drains it.
#[derive(Clone, Debug, Default)]
pub struct Presence(CancellationToken);

impl Presence {
    /// The client is gone for good: nothing it would answer is worth waiting for.
    pub fn depart(&self) {
        self.0.cancel();
    }

    /// Whether the client is gone for good.
    pub fn is_gone(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once the client is gone for good.
    pub async fn gone(&self) {
        self.0.cancelled().await;
    }
}

/// Receiving half: serialised, redacted JSON frames in send order.
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::Receiver<String>,
    presence: Presence,
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

    /// Stops accepting frames; pending senders see [`OutboxClosed`]. Nobody will read
    /// for the client anymore, so its [`Presence`] departs too (a durable session's
    /// detached client keeps its receiver open: it is not gone).
    pub fn close(&mut self) {
        self.rx.close();
        self.presence.depart();
    }
}

impl Outbox {
    /// A new outbox holding at most `capacity` frames.
    pub fn channel(capacity: usize) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let presence = Presence::default();
        (
            Outbox {
                tx,
                redactor: Arc::new(RwLock::new(Redactor::default())),
                presence: presence.clone(),
            },
            OutboxReceiver { rx, presence },
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
        let frame = encode_with(&self.redactor(), message);
        self.queue(frame).await
    }

    /// Like [`send`](Self::send), also redacting `extra` secrets from this one message
    /// without adding them to the session: for the answer to a frame that was rejected,
    /// whose secrets must not outlive it.
    pub async fn send_redacting(
        &self,
        message: ServerMessage,
        extra: &Redactor,
    ) -> Result<(), OutboxClosed> {
        let frame = encode_with(&self.redactor().union(extra), message);
        self.queue(frame).await
    }

    async fn queue(&self, frame: String) -> Result<(), OutboxClosed> {
        let len = frame.len();
        self.tx.send(frame).await.map_err(|_| OutboxClosed)?;
        crate::metrics::bytes_streamed(len);
        Ok(())
    }

    /// The presence of the session's client (see [`Presence`]).
    pub fn presence(&self) -> &Presence {
        &self.presence
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
        encode_with(&self.redactor(), message.clone())
    }
}

/// Redacts the values of `message` (never its keys or `message_type` tag: a secret named
/// like a protocol key must not break the protocol), then serialises it.
fn encode_with(redactor: &Redactor, mut message: ServerMessage) -> String {
    if !redactor.is_empty() {
        redact_message(redactor, &mut message);
    }
    serde_json::to_string(&message).unwrap_or_else(|e| encode_failure(&e))
}

/// Redacts every text a message carries. The match is exhaustive so that a new message
/// kind cannot be added without deciding what of it is redacted.
fn redact_message(r: &Redactor, message: &mut ServerMessage) {
    match message {
        ServerMessage::ResultMessage(m) => {
            match &mut m.data {
                ResultData::Text { text } => r.redact_in_place(text),
                ResultData::StructuredOutput { structured_output } => {
                    r.redact_json(structured_output);
                }
            }
            redact_metadata(r, &mut m.metadata);
        }
        ServerMessage::CommandExecutionResultMessage(m) => {
            for item in &mut m.results {
                r.redact_in_place(&mut item.command);
                if let Some(stdout) = item.stdout.as_mut() {
                    r.redact_in_place(stdout);
                }
            }
        }
        ServerMessage::ErrorMessage(m) => {
            r.redact_in_place(&mut m.error);
            redact_metadata(r, &mut m.metadata);
        }
        ServerMessage::AssistantMessage(m) => {
            m.text_blocks.iter_mut().for_each(|t| r.redact_in_place(t));
        }
        ServerMessage::CommandOutputMessage(m) => {
            r.redact_in_place(&mut m.text);
            r.redact_in_place(&mut m.command);
        }
        ServerMessage::ArtifactUploadRequestMessage(m) => {
            r.redact_in_place(&mut m.filename);
            r.redact_in_place(&mut m.filepath);
        }
        // `phase` is the runtime's own tag, never user text.
        ServerMessage::HeartbeatMessage(_) | ServerMessage::EndSessionConfirmMessage => {}
    }
}

/// Metadata is free-form (usage, causes, what the agent reports), except `error_name`,
/// the runtime's tag that clients dispatch on.
fn redact_metadata(r: &Redactor, metadata: &mut Map<String, Value>) {
    let error_name = metadata.remove("error_name");
    let mut value = Value::Object(std::mem::take(metadata));
    r.redact_json(&mut value);
    if let Value::Object(map) = value {
        *metadata = map;
    }
    if let Some(name) = error_name {
        metadata.insert("error_name".into(), name);
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
    async fn secrets_named_like_protocol_keys_and_tags_leave_the_protocol_intact() {
        let (outbox, mut rx) = Outbox::channel(8);
        let secrets = [
            "message",
            "end_session_confirm",
            "message_type",
            "text",
            "results",
            "error_name",
            "InvalidMessage",
            "request_in_flight",
            "stdout",
        ];
        outbox.add_secrets(&Redactor::new(secrets));
        let mut metadata = Map::new();
        metadata.insert("error_name".into(), Value::String("InvalidMessage".into()));
        metadata.insert("detail".into(), Value::String("bad message".into()));
        let messages = [
            ServerMessage::EndSessionConfirmMessage,
            ServerMessage::ErrorMessage(runtimeuse_protocol::ErrorMessage {
                error: "Invalid message: text".into(),
                metadata,
            }),
            ServerMessage::HeartbeatMessage(runtimeuse_protocol::Heartbeat {
                phase: "request_in_flight".into(),
                elapsed_ms: 1,
            }),
            ServerMessage::ResultMessage(runtimeuse_protocol::ResultMessage {
                data: ResultData::Text {
                    text: "a message".into(),
                },
                metadata: Map::new(),
            }),
        ];
        for message in messages.iter().cloned() {
            outbox.send(message).await.unwrap();
        }
        let frames: Vec<Value> = (0..messages.len())
            .map(|_| serde_json::from_str(&rx.try_recv().unwrap()).unwrap())
            .collect();
        assert_eq!(
            frames[0],
            serde_json::json!({"message_type": "end_session_confirm_message"})
        );
        assert_eq!(
            frames[1],
            serde_json::json!({"message_type": "error_message",
                "error": "Invalid [REDACTED]: [REDACTED]",
                "metadata": {"error_name": "InvalidMessage", "detail": "bad [REDACTED]"}})
        );
        assert_eq!(frames[2]["phase"], "request_in_flight");
        assert_eq!(
            frames[3],
            serde_json::json!({"message_type": "result_message",
                "data": {"type": "text", "text": "a [REDACTED]"}, "metadata": {}})
        );
        for frame in &frames {
            let parsed: ServerMessage = serde_json::from_value(frame.clone()).unwrap();
            assert!(
                messages
                    .iter()
                    .any(|m| m.message_type() == parsed.message_type())
            );
        }
    }

    #[tokio::test]
    async fn extra_secrets_redact_one_message_and_are_not_kept() {
        let (outbox, mut rx) = Outbox::channel(4);
        let extra = Redactor::new(["frame-secret"]);
        let say = |t: &str| {
            ServerMessage::AssistantMessage(AssistantMessage {
                text_blocks: vec![t.into()],
            })
        };
        outbox
            .send_redacting(say("got frame-secret"), &extra)
            .await
            .unwrap();
        outbox.send(say("frame-secret again")).await.unwrap();
        assert!(rx.recv().await.unwrap().contains("got [REDACTED]"));
        assert!(rx.recv().await.unwrap().contains("frame-secret again"));
        assert!(outbox.redactor().is_empty());
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

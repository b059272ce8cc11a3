//! The resumable-sessions extension (see `docs/protocol.md`, "Extension: resumable
//! sessions"): its own messages, and the `seq` field every other frame of a durable session
//! carries.
//!
//! ```
//! use runtimeuse_protocol::resume::{frame_seq, with_seq};
//!
//! let frame = with_seq(r#"{"message_type":"cancel_message"}"#, 7);
//! assert_eq!(frame, r#"{"seq":7,"message_type":"cancel_message"}"#);
//! assert_eq!(frame_seq(&frame).unwrap().seq, Some(7));
//! ```

use serde::{Deserialize, Serialize};

/// Request header opening a new durable session (value `1`). The runtime also sets it,
/// to `1`, on every `101` response: it speaks the extension. A client that asked for a
/// durable session and finds no such header is talking to a runtime without it.
pub const HEADER_RESUMABLE: &str = "x-runtimeuse-resumable";
/// Request header naming the session to resume.
pub const HEADER_SESSION_ID: &str = "x-runtimeuse-session-id";
/// Request header carrying the session's resume key.
pub const HEADER_RESUME_KEY: &str = "x-runtimeuse-resume-key";
/// Request header: the `seq` of the last runtime frame the client received (0: none).
pub const HEADER_LAST_SEQ: &str = "x-runtimeuse-last-seq";
/// Query parameter equivalent of [`HEADER_RESUMABLE`].
pub const QUERY_RESUMABLE: &str = "runtimeuse_resumable";
/// Query parameter equivalent of [`HEADER_SESSION_ID`].
pub const QUERY_SESSION_ID: &str = "runtimeuse_session_id";
/// Query parameter equivalent of [`HEADER_RESUME_KEY`].
pub const QUERY_RESUME_KEY: &str = "runtimeuse_resume_key";
/// Query parameter equivalent of [`HEADER_LAST_SEQ`].
pub const QUERY_LAST_SEQ: &str = "runtimeuse_last_seq";

/// Close code of a connection whose session another connection resumed.
pub const CLOSE_TAKEN_OVER: u16 = 4001;
/// `error_name` of the error frame refusing a resume.
pub const RESUME_REFUSED: &str = "ResumeRefused";

/// The extension's messages. They carry no `seq` of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum ResumeMessage {
    /// Runtime → client, first frame of a new durable session.
    SessionResumableMessage(SessionResumable),
    /// Runtime → client, first frame of a resumed connection.
    SessionResumedMessage(SessionResumed),
    /// Either way: every frame of the other side up to `seq` arrived (the runtime's acks
    /// say what the session took, so that the client can forget it).
    ResumeAckMessage(ResumeAck),
}

/// `session_resumable_message`: how to resume this session later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionResumable {
    /// The session's id (32 lowercase hex digits).
    pub session_id: String,
    /// The secret proving ownership on resume (64 lowercase hex digits).
    pub resume_key: String,
    /// How long the session outlives a dropped connection, in milliseconds.
    pub grace_ms: u64,
    /// Bytes of unacknowledged frames the runtime keeps before producers wait.
    pub buffer_bytes: u64,
}

/// `session_resumed_message`: the resume was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionResumed {
    /// The session's id.
    pub session_id: String,
    /// The `seq` of the last client frame the runtime received (0: none); the client
    /// re-sends every frame after it.
    pub last_seq: u64,
}

/// `resume_ack_message`: its sender holds every frame of the other side up to `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResumeAck {
    /// The highest `seq` of the other side received, with every one before it.
    pub seq: u64,
}

impl ResumeMessage {
    /// The JSON frame of this message.
    pub fn to_frame(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The two fields every durable-session frame is looked at for before anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FrameSeq {
    /// The frame's `message_type`, when it is a string.
    #[serde(default)]
    pub message_type: Option<String>,
    /// The frame's `seq`, when it has one.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// Reads `message_type` and `seq` of a frame (the rest is skipped, not kept).
pub fn frame_seq(frame: &str) -> Result<FrameSeq, serde_json::Error> {
    serde_json::from_str(frame)
}

/// `frame` (a serialised JSON object) with `"seq":N` as its first field, without
/// re-serialising the rest. A frame that is not an object is returned unchanged.
pub fn with_seq(frame: &str, seq: u64) -> String {
    let Some(rest) = frame.trim_start().strip_prefix('{') else {
        return frame.to_owned();
    };
    let mut out = String::with_capacity(frame.len() + 24);
    out.push_str("{\"seq\":");
    out.push_str(&seq.to_string());
    if !rest.trim_start().starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_goes_first_and_the_frame_stays_valid_json() {
        let frame = with_seq(r#"{"message_type":"heartbeat_message","elapsed_ms":3}"#, 42);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["seq"], 42);
        assert_eq!(value["elapsed_ms"], 3);
        assert_eq!(with_seq("{}", 1), r#"{"seq":1}"#);
        assert_eq!(with_seq(" { }", 1), r#"{"seq":1 }"#);
        assert_eq!(with_seq("[1]", 1), "[1]");
    }

    #[test]
    fn extension_messages_round_trip_with_their_tags() {
        let ack = ResumeMessage::ResumeAckMessage(ResumeAck { seq: 9 });
        assert_eq!(
            ack.to_frame(),
            r#"{"message_type":"resume_ack_message","seq":9}"#
        );
        let parsed: ResumeMessage = serde_json::from_str(&ack.to_frame()).unwrap();
        assert_eq!(parsed, ack);
        let seq = frame_seq(r#"{"seq":3,"message_type":"x","big":[1,2,3]}"#).unwrap();
        assert_eq!(seq.seq, Some(3));
        assert_eq!(seq.message_type.as_deref(), Some("x"));
        assert!(frame_seq("not json").is_err());
    }
}

//! Shared by the `resume_*` tests: the runtime binary with resumable sessions configured,
//! a raw durable-session peer (seq, acks, resumes, close codes), the Rust client with
//! `resume(true)`, and small probes (RSS, a process's read count, a seed).

#![allow(dead_code)] // each test file uses a different part

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use runtimeuse_client::RuntimeUseClient;
use runtimeuse_protocol::resume::{
    HEADER_LAST_SEQ, HEADER_RESUMABLE, HEADER_RESUME_KEY, HEADER_SESSION_ID, RESUME_REFUSED,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::binary::Runtime;

/// How long a raw peer waits for one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The runtime binary (echo agent) with `--resume-grace` seconds and `--resume-buffer`
/// bytes, plus `extra` arguments.
pub fn durable_runtime(grace_secs: f64, buffer_bytes: u64, extra: &[&str]) -> Runtime {
    let grace = grace_secs.to_string();
    let buffer = buffer_bytes.to_string();
    let mut args = vec!["--resume-grace", &grace, "--resume-buffer", &buffer];
    args.extend_from_slice(extra);
    Runtime::start(&args, std::iter::empty::<(&str, &str)>())
}

/// The Rust client with resumable sessions on, for `url` (a proxy's, usually).
pub fn resume_client(url: &str) -> RuntimeUseClient {
    RuntimeUseClient::builder(url)
        .resume(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A seed for random cut points: `RESUME_TEST_SEED` if set (to replay a failure), else
/// from the clock. Printed, so a failing run names it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("RESUME_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: RESUME_TEST_SEED={seed}");
    seed
}

/// Resident set size of `pid` in bytes (`VmRSS`), if readable.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes `pid` has read so far (`rchar` of `/proc/PID/io`), if readable.
pub fn read_chars(pid: i32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// What a raw peer read next.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A text frame, parsed.
    Message(Value),
    /// The connection ended: the close frame's code and reason, if there was one.
    Closed(Option<(u16, String)>),
}

/// What [`DurablePeer::read`] got.
enum Read {
    Frame(Frame),
    /// A `resume_ack_message` of the runtime.
    Ack,
}

/// A raw WebSocket peer of a durable session: sends frames with the `seq` it is given,
/// and reports close codes. The runtime's `resume_ack_message`s are taken aside (see
/// [`runtime_acked`](Self::runtime_acked)), not returned as frames.
pub struct DurablePeer {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The highest `seq` of ours the runtime acknowledged on this connection.
    pub runtime_acked: u64,
    /// The headers of the runtime's `101` response.
    pub upgrade_headers: HeaderMap,
}

/// The opening frame of a durable session.
#[derive(Debug, Clone)]
pub struct Opened {
    /// `session_id`.
    pub id: String,
    /// `resume_key`.
    pub key: String,
    /// The whole `session_resumable_message`.
    pub frame: Value,
}

impl DurablePeer {
    /// Connects to `url` with these upgrade headers.
    ///
    /// # Errors
    /// When the upgrade fails.
    pub async fn connect_with(
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        let (ws, response) =
            tokio::time::timeout(FRAME_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .expect("upgrade timed out")?;
        Ok(Self {
            ws,
            runtime_acked: 0,
            upgrade_headers: response.headers().clone(),
        })
    }

    /// Opens a new durable session (header opt-in) and reads its first frame.
    pub async fn open(url: &str) -> (Self, Opened) {
        let mut peer = Self::connect_with(url, &[(HEADER_RESUMABLE, "1".into())])
            .await
            .expect("connect");
        let frame = peer.recv().await;
        assert_eq!(
            frame["message_type"], "session_resumable_message",
            "first frame of a durable session: {frame}"
        );
        let opened = Opened {
            id: frame["session_id"].as_str().expect("session_id").to_owned(),
            key: frame["resume_key"].as_str().expect("resume_key").to_owned(),
            frame,
        };
        (peer, opened)
    }

    /// Connects resuming session `id` with `key`, having received runtime frames up to
    /// `last_seq` (headers). Returns the peer and its first frame.
    pub async fn resume(url: &str, id: &str, key: &str, last_seq: u64) -> (Self, Frame) {
        let mut peer = Self::connect_with(url, &resume_headers(id, key, last_seq))
            .await
            .expect("connect");
        let first = peer.next().await;
        (peer, first)
    }

    /// Resumes and expects `session_resumed_message`; returns the peer and the runtime's
    /// `last_seq` (the last client frame it holds).
    pub async fn resumed(url: &str, id: &str, key: &str, last_seq: u64) -> (Self, u64) {
        let (peer, first) = Self::resume(url, id, key, last_seq).await;
        let Frame::Message(frame) = first else {
            panic!("resume of {id} at {last_seq} was closed: {first:?}")
        };
        assert_eq!(
            frame["message_type"], "session_resumed_message",
            "resume of {id} at {last_seq}: {frame}"
        );
        assert_eq!(frame["session_id"], id);
        let runtime_last = frame["last_seq"].as_u64().expect("last_seq");
        (peer, runtime_last)
    }

    /// Sends `message` with `"seq": seq`.
    pub async fn send_seq(&mut self, mut message: Value, seq: u64) {
        message["seq"] = json!(seq);
        self.send_raw(&message.to_string()).await;
    }

    /// Sends again what the runtime does not hold, as a client does after a resume: each
    /// of `sent` (seq, frame) numbered past `runtime_last`. A frame still unread in the old
    /// connection's socket when the session moved on is gone with that connection.
    pub async fn resend_after(&mut self, runtime_last: u64, sent: &[(u64, Value)]) {
        for (seq, frame) in sent {
            if *seq > runtime_last {
                self.send_seq(frame.clone(), *seq).await;
            }
        }
    }

    /// Reads until the runtime has acknowledged our frames up to `seq`; panics on any
    /// other frame, the end of the connection or a timeout.
    pub async fn wait_runtime_ack(&mut self, seq: u64) {
        let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
        while self.runtime_acked < seq {
            match self.read(deadline).await {
                Some(Read::Ack) => {}
                Some(Read::Frame(frame)) => panic!("waiting for an ack of {seq}, got {frame:?}"),
                None => panic!("no ack of {seq} within {FRAME_TIMEOUT:?}"),
            }
        }
    }

    /// Sends `resume_ack_message` for `seq`.
    pub async fn ack(&mut self, seq: u64) {
        self.send_raw(&json!({"message_type": "resume_ack_message", "seq": seq}).to_string())
            .await;
    }

    /// Sends a raw text frame (errors ignored: the connection may be cut).
    pub async fn send_raw(&mut self, text: &str) {
        let _ = self.ws.send(Message::Text(text.to_owned().into())).await;
    }

    /// The next text frame or the end of the connection.
    pub async fn next(&mut self) -> Frame {
        self.try_next(FRAME_TIMEOUT)
            .await
            .expect("timed out waiting for a frame")
    }

    /// Like [`next`](Self::next), but `None` when nothing came within `timeout`.
    pub async fn try_next(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.read(deadline).await? {
                Read::Ack => {}
                Read::Frame(frame) => return Some(frame),
            }
        }
    }

    /// The next frame or runtime ack (taken into `runtime_acked`); `None` at `deadline`.
    async fn read(&mut self, deadline: tokio::time::Instant) -> Option<Read> {
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            let frame = match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value =
                        serde_json::from_str(&text).expect("runtime sent invalid JSON");
                    if frame["message_type"] == "resume_ack_message" {
                        let seq = frame["seq"].as_u64().expect("an ack's seq");
                        assert!(seq >= self.runtime_acked, "acks go forward: {frame}");
                        self.runtime_acked = seq;
                        return Some(Read::Ack);
                    }
                    Frame::Message(frame)
                }
                Some(Ok(Message::Close(close))) => {
                    Frame::Closed(close.map(|c| (u16::from(c.code), c.reason.to_string())))
                }
                None | Some(Err(_)) => Frame::Closed(None),
                Some(Ok(_)) => continue,
            };
            return Some(Read::Frame(frame));
        }
    }

    /// The next text frame (panics when the connection ended).
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Frame::Message(message) => message,
            Frame::Closed(close) => panic!("connection closed unexpectedly: {close:?}"),
        }
    }

    /// Sends a close frame with `code` and drops the connection.
    pub async fn close_with(mut self, code: u16) {
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: code.into(),
                reason: "".into(),
            }))
            .await;
    }
}

/// The upgrade headers resuming session `id` with `key` at `last_seq`.
pub fn resume_headers(id: &str, key: &str, last_seq: u64) -> Vec<(&'static str, String)> {
    vec![
        (HEADER_SESSION_ID, id.to_owned()),
        (HEADER_RESUME_KEY, key.to_owned()),
        (HEADER_LAST_SEQ, last_seq.to_string()),
    ]
}

/// Asserts that `first` (a resume's first frame) and what follows on `peer` are a
/// refusal with `reason`: one `error_message` with `ResumeRefused`, then close 1008 with
/// the error's text as its reason.
pub async fn assert_refused(peer: &mut DurablePeer, first: Frame, reason: &str) {
    let Frame::Message(error) = first else {
        panic!("expected a ResumeRefused error frame ({reason}), got {first:?}")
    };
    assert_eq!(error["message_type"], "error_message", "{error}");
    assert_eq!(error["metadata"]["error_name"], RESUME_REFUSED, "{error}");
    assert_eq!(error["metadata"]["reason"], reason, "{error}");
    assert!(
        error.get("seq").is_none(),
        "a refusal carries no seq: {error}"
    );
    let text = error["error"].as_str().expect("error text").to_owned();
    match peer.next().await {
        Frame::Closed(Some((code, close_reason))) => {
            assert_eq!(code, 1008, "close code of a refusal ({reason})");
            assert_eq!(close_reason, text, "close reason = the error's text");
        }
        other => panic!("expected close 1008 after the refusal, got {other:?}"),
    }
}

/// The `seq` of a runtime frame (panics without one).
pub fn seq_of(frame: &Value) -> u64 {
    frame["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("frame without seq on a durable session: {frame}"))
}

/// Whether a frame ends a request.
pub fn is_terminal(frame: &Value) -> bool {
    crate::common::is_terminal(frame)
}

/// The runtime frames of one durable session as a client keeps them: every `seq` once,
/// in order, whatever the connections.
#[derive(Debug, Default)]
pub struct Received {
    /// Frames in `seq` order (extension messages left out).
    pub frames: Vec<Value>,
}

impl Received {
    /// The highest `seq` held (0: none).
    pub fn last_seq(&self) -> u64 {
        self.frames.last().map_or(0, seq_of)
    }

    /// Takes `frame`: it must be the next `seq` (a replayed one already held is a
    /// failure: the runtime replays only after the client's `last_seq`).
    pub fn take(&mut self, frame: Value) {
        let seq = seq_of(&frame);
        assert_eq!(
            seq,
            self.last_seq() + 1,
            "runtime frames must arrive each once and in order; got {frame}"
        );
        self.frames.push(frame);
    }

    /// Frames of one type.
    pub fn of_type(&self, message_type: &str) -> Vec<&Value> {
        self.frames
            .iter()
            .filter(|f| f["message_type"] == message_type)
            .collect()
    }
}

/// A 32-hex-digit id that no runtime handed out.
pub fn bogus_id() -> String {
    "0123456789abcdef0123456789abcdef".to_owned()
}

/// Checks the shape of a `session_resumable_message`.
pub fn assert_resumable_frame(opened: &Opened, grace_ms: u64, buffer_bytes: u64) {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(hex(&opened.id, 32), "session_id {:?}", opened.id);
    assert!(hex(&opened.key, 64), "resume_key has 64 hex digits");
    assert_eq!(opened.frame["grace_ms"], grace_ms, "{}", opened.frame);
    assert_eq!(
        opened.frame["buffer_bytes"], buffer_bytes,
        "{}",
        opened.frame
    );
    assert!(opened.frame.get("seq").is_none(), "{}", opened.frame);
}

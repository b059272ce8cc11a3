//! One WebSocket connection to the runtime: dialling, typed frames in and out.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use runtimeuse_protocol::{ClientMessage, Incoming, ServerMessage, parse_server_frame};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Error;
use crate::resume::ResumableLink;
use crate::transport::{Transport, TransportLink};
use crate::url_mask::{mask_url, scrub};

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What carries the frames: this crate's WebSocket, or a custom transport's link.
pub(crate) enum Link {
    Ws(Box<WsStream>),
    Custom(TransportLink),
    /// A durable session's link, reconnecting under the hood (`ClientBuilder::resume`).
    Resumable(ResumableLink),
}

impl Link {
    async fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        match self {
            Link::Ws(ws) => ws.send(message).await,
            Link::Custom(link) => link.send(message),
            Link::Resumable(link) => link.send(message),
        }
    }

    async fn close(&mut self) {
        match self {
            Link::Ws(ws) => {
                let _ = WebSocketStream::close(&mut **ws, None).await;
            }
            Link::Custom(link) => link.close(),
            Link::Resumable(link) => link.close().await,
        }
    }
}

impl futures_util::Stream for Link {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        match self.get_mut() {
            Link::Ws(ws) => ws.poll_next_unpin(cx),
            Link::Custom(link) => link.poll_next_unpin(cx),
            Link::Resumable(link) => link.poll_next_unpin(cx),
        }
    }
}

/// How long sending the close frame may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach the runtime; shared by one-shot calls and sessions.
#[derive(Clone)]
pub(crate) struct ConnectConfig {
    /// As given, credentials included: show it through [`mask_url`] only.
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub connect_timeout: Duration,
    /// Used instead of the WebSocket when set (`url` then only names the runtime).
    pub transport: Option<Transport>,
    /// Open durable sessions and reconnect them after a drop (`ClientBuilder::resume`).
    pub resume: bool,
}

impl ConnectConfig {
    /// The [`Error::Connect`] of a failed dial, credentials scrubbed.
    pub fn connect_error(&self, error: DialError) -> Error {
        let source: Box<dyn std::error::Error + Send + Sync> = match error {
            // An io::Error of kind TimedOut, so that callers can tell a timeout apart.
            DialError::TimedOut(after) => Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no WebSocket handshake within {after:?}"),
            )),
            DialError::Request(e) => e.into(),
            DialError::Handshake(e) => describe_handshake_error(e),
        };
        Error::Connect {
            url: mask_url(&self.url),
            source: match scrub(&source.to_string(), &self.url) {
                Some(scrubbed) => scrubbed.into(),
                None => source,
            },
        }
    }
}

/// Why dialling the runtime failed.
#[derive(Debug)]
pub(crate) enum DialError {
    /// No handshake within the limit.
    TimedOut(std::time::Duration),
    /// The URL does not make a request.
    Request(tungstenite::Error),
    /// TCP, TLS or the upgrade failed (an HTTP refusal among them).
    Handshake(tungstenite::Error),
}

/// Opens a WebSocket to `config.url` with the configured headers and `extra` ones
/// (replacing configured ones of the same name), within `timeout`; returns it with the
/// runtime's `101` response.
pub(crate) async fn dial(
    config: &ConnectConfig,
    extra: Vec<(HeaderName, HeaderValue)>,
    timeout: std::time::Duration,
) -> Result<crate::tls::Dialled, DialError> {
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(DialError::Request)?;
    let headers = request.headers_mut();
    headers.extend(config.headers.iter().cloned());
    for (name, value) in extra {
        headers.insert(name, value);
    }
    tokio::time::timeout(timeout, crate::tls::dial(request))
        .await
        .map_err(|_| DialError::TimedOut(timeout))?
        .map_err(DialError::Handshake)
}

impl std::fmt::Debug for ConnectConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ConnectConfig")
            .field("url", &mask_url(&self.url))
            .field("headers", &header_names)
            .field("connect_timeout", &self.connect_timeout)
            .field("custom_transport", &self.transport.is_some())
            .field("resume", &self.resume)
            .finish()
    }
}

/// An open connection.
///
/// Besides the socket it owns an outbox: messages queued there (artifact upload answers
/// given from an event stream, possibly from another task) are written by whoever is
/// reading the connection at the time.
pub(crate) struct Connection {
    pub ws: Link,
    pub outbox_tx: mpsc::UnboundedSender<ClientMessage>,
    pub outbox_rx: mpsc::UnboundedReceiver<ClientMessage>,
    closed: bool,
}

impl Connection {
    /// Dials the runtime, bounded by the connect timeout.
    pub async fn open(config: &ConnectConfig) -> Result<Self, Error> {
        let connect_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Connect {
            url: mask_url(&config.url),
            source: match scrub(&source.to_string(), &config.url) {
                Some(scrubbed) => scrubbed.into(),
                None => source,
            },
        };
        if let Some(transport) = &config.transport {
            tracing::debug!(url = %mask_url(&config.url), "opening a custom transport");
            let link = tokio::time::timeout(config.connect_timeout, transport())
                .await
                .map_err(|_| {
                    connect_error(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the transport did not open within {:?}",
                            config.connect_timeout
                        ),
                    )))
                })??;
            return Ok(Self::over(Link::Custom(link)));
        }
        if config.resume {
            let link = crate::resume::open(config).await?;
            return Ok(Self::over(Link::Resumable(link)));
        }
        tracing::debug!(url = %mask_url(&config.url), "connecting to the runtime");
        let (ws, _response) = dial(config, Vec::new(), config.connect_timeout)
            .await
            .map_err(|e| config.connect_error(e))?;
        Ok(Self::over(Link::Ws(Box::new(ws))))
    }

    fn over(ws: Link) -> Self {
        let (outbox_tx, outbox_rx) = mpsc::unbounded_channel();
        Self {
            ws,
            outbox_tx,
            outbox_rx,
            closed: false,
        }
    }

    /// How many times the link reconnected so far; `None` unless it is resumable.
    pub fn reconnects(&self) -> Option<u64> {
        match &self.ws {
            Link::Resumable(link) => Some(link.reconnects()),
            Link::Ws(_) | Link::Custom(_) => None,
        }
    }

    /// Follows whether a resumable link has a connection up; `None` for other links
    /// (always up while they last).
    pub fn attached(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        match &self.ws {
            Link::Resumable(link) => Some(link.attached()),
            Link::Ws(_) | Link::Custom(_) => None,
        }
    }

    /// Whether the socket is known to be unusable.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Writes one message.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), Error> {
        if self.closed {
            return Err(closed("the connection is already closed"));
        }
        let text = serde_json::to_string(message)
            .map_err(|e| Error::Protocol(format!("could not encode a message: {e}")))?;
        if let Err(e) = self.ws.send(Message::text(text)).await {
            self.closed = true;
            return Err(closed(&e.to_string()));
        }
        Ok(())
    }

    /// Writes everything queued in the outbox.
    pub async fn flush_outbox(&mut self) -> Result<(), Error> {
        while let Ok(message) = self.outbox_rx.try_recv() {
            self.send(&message).await?;
        }
        Ok(())
    }

    /// Turns what the socket yielded into a message; `Ok(None)` for control frames.
    ///
    /// Takes the raw item so that callers can `select!` on `self.ws.next()` directly.
    pub fn decode(
        &mut self,
        item: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<Option<Incoming<ServerMessage>>, Error> {
        let message = match item {
            None => {
                self.closed = true;
                return Err(closed("the runtime closed the connection"));
            }
            Some(Err(e)) => {
                self.closed = true;
                return Err(closed(&e.to_string()));
            }
            Some(Ok(message)) => message,
        };
        match message {
            Message::Text(text) => parse_server_frame(text.as_str())
                .map(Some)
                .map_err(|e| Error::Protocol(format!("malformed frame from the runtime: {e}"))),
            Message::Binary(_) => Err(Error::Protocol(
                "unexpected binary frame from the runtime".into(),
            )),
            Message::Close(frame) => {
                self.closed = true;
                let reason = match frame {
                    Some(frame) => format!("the runtime closed the connection ({})", frame.code),
                    None => "the runtime closed the connection".into(),
                };
                Err(closed(&reason))
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(None),
        }
    }

    /// Reads the next message (control frames skipped).
    pub async fn recv(&mut self) -> Result<Incoming<ServerMessage>, Error> {
        loop {
            let item = self.ws.next().await;
            if let Some(incoming) = self.decode(item)? {
                return Ok(incoming);
            }
        }
    }

    /// Closes the socket politely; errors are irrelevant at this point, and a peer that
    /// stopped reading cannot hold the caller for long.
    pub async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close()).await;
        }
    }
}

/// An HTTP refusal (e.g. 401 for a missing token) reads better with its status and body
/// than as tungstenite's response dump.
fn describe_handshake_error(error: tungstenite::Error) -> Box<dyn std::error::Error + Send + Sync> {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|body| {
                    String::from_utf8_lossy(body)
                        .trim()
                        .chars()
                        .take(200)
                        .collect::<String>()
                })
                .filter(|body| !body.is_empty());
            match body {
                Some(body) => format!(
                    "the server refused the upgrade: HTTP {} ({body})",
                    response.status()
                ),
                None => format!("the server refused the upgrade: HTTP {}", response.status()),
            }
            .into()
        }
        other => other.into(),
    }
}

fn closed(reason: &str) -> Error {
    Error::ConnectionClosed {
        reason: reason.to_owned(),
    }
}

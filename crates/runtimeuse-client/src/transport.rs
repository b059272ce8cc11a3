//! Custom transports: the runtime reached through something other than this crate's own
//! WebSocket (a proxy, a sandbox provider's tunnel, an in-process channel).
//!
//! A [`Transport`] opens a [`TransportLink`] per connection: two channels of text frames,
//! each one JSON message of the protocol. The client runs its request state machine over
//! the link exactly as over a WebSocket; the link closes when either side drops its end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::Error;

/// Opens one link to the runtime each time it is called (one per one-shot call or session).
pub type Transport =
    Arc<dyn Fn() -> BoxFuture<'static, Result<TransportLink, Error>> + Send + Sync>;

/// One open connection of a custom [`Transport`]: frames from the runtime come in on
/// `inbound`, frames for it go out on `outbound`. The runtime's side ending `inbound` is a
/// closed connection; the client drops `outbound` when it closes the connection.
#[derive(Debug)]
pub struct TransportLink {
    inbound: mpsc::UnboundedReceiver<String>,
    outbound: Option<mpsc::UnboundedSender<String>>,
}

impl TransportLink {
    /// A link over these channels.
    pub fn new(
        inbound: mpsc::UnboundedReceiver<String>,
        outbound: mpsc::UnboundedSender<String>,
    ) -> Self {
        Self {
            inbound,
            outbound: Some(outbound),
        }
    }

    pub(crate) fn send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        let Message::Text(text) = message else {
            return Ok(()); // control frames mean nothing on a link
        };
        match &self.outbound {
            Some(outbound) if outbound.send(text.as_str().to_owned()).is_ok() => Ok(()),
            _ => Err(tungstenite::Error::ConnectionClosed),
        }
    }

    pub(crate) fn close(&mut self) {
        self.outbound = None;
        self.inbound.close();
    }
}

impl Stream for TransportLink {
    type Item = Result<Message, tungstenite::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inbound
            .poll_recv(cx)
            .map(|frame| frame.map(|text| Ok(Message::text(text))))
    }
}

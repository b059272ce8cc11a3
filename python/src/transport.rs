//! `transport=`: the Rust client's custom transport ([`runtimeuse_client::Transport`])
//! run by a Python transport (the published client's `Transport` protocol: an async
//! generator `transport(send_queue)` yielding the runtime's messages as dicts and sending
//! what is put on `send_queue`).
//!
//! Opening a link queues, on the loop of the call, `runtimeuse_client._transport.start`
//! with a [`TransportEnd`]: the Python side pumps the generator's messages into the link
//! and the link's outgoing frames into `send_queue`. As everywhere in this module, the
//! Tokio side only moves Rust strings; the interpreter is touched on the loop thread.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use pyo3::prelude::*;
use runtimeuse_client::{Error, Transport, TransportLink};
use tokio::sync::mpsc;

use crate::bridge::{BridgeQueue, LoopBridge};

/// The loop that runs the transport: the one of the client's latest call.
pub(crate) type TransportLoop = Arc<Mutex<Option<Arc<BridgeQueue>>>>;

/// A Rust transport running the Python `transport` on the loop in `event_loop`.
pub(crate) fn python_transport(transport: Py<PyAny>, event_loop: TransportLoop) -> Transport {
    let transport = Arc::new(transport);
    Arc::new(move || {
        let queue = event_loop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let transport = Arc::clone(&transport);
        async move {
            let queue = queue.ok_or_else(|| Error::Connect {
                url: "transport".into(),
                source: "no event loop to run the transport on".into(),
            })?;
            let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
            let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
            let end = TransportEnd {
                inbound: Mutex::new(Some(inbound_tx)),
                outbound: Arc::new(tokio::sync::Mutex::new(outbound_rx)),
            };
            queue.run_on_loop(Box::new(move |py| {
                py.import(pyo3::intern!(py, "runtimeuse_client._transport"))?
                    .call_method1(pyo3::intern!(py, "start"), (transport.as_ref(), end))?;
                Ok(())
            }));
            Ok(TransportLink::new(inbound_rx, outbound_tx))
        }
        .boxed()
    })
}

/// The Python side of one link.
#[pyclass(module = "runtimeuse_client._native", name = "TransportEnd", frozen)]
pub(crate) struct TransportEnd {
    inbound: Mutex<Option<mpsc::UnboundedSender<String>>>,
    outbound: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
}

#[pymethods]
impl TransportEnd {
    /// Hands one message from the runtime (JSON text) to the client; `False` once the
    /// client has closed the link.
    fn deliver(&self, frame: String) -> bool {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|inbound| inbound.send(frame).is_ok())
    }

    /// Ends the link from the runtime's side (the transport's generator is done).
    fn close(&self) {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Awaitable (on the loop of `bridge`): the next message for the runtime (JSON text),
    /// or `None` once the client has closed the link.
    fn next_outbound<'py>(
        &self,
        py: Python<'py>,
        bridge: &LoopBridge,
    ) -> PyResult<Bound<'py, PyAny>> {
        let outbound = Arc::clone(&self.outbound);
        bridge.spawn(py, async move { Ok(outbound.lock().await.recv().await) })
    }
}

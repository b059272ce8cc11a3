//! The event stream of one call, as a Python object, and the artifact request responder.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use pyo3::exceptions::{PyConnectionError, PyRuntimeError};
use pyo3::prelude::*;
use runtimeuse_client::{ArtifactUploadRequestEvent, ArtifactUploadResult, EventStream};
use tokio_util::sync::CancellationToken;

use crate::bridge::LoopBridge;
use crate::convert::{Batch, IntoItem, Item};

/// Most items handed over per `next_batch` call: enough to make a crossing into Python
/// cheap per chunk of a chatty command, few enough to keep the Python side responsive.
const MAX_BATCH: usize = 256;

/// The events of one call (`query` or `execute_commands`), consumed from Python with
/// `await stream.next_batch()`. Dropping or closing it ends the call: a one-shot call's
/// connection is closed, a session call is cancelled (`cancel_message`).
#[pyclass(module = "runtimeuse_client._native", name = "EventStream", frozen)]
pub(crate) struct NativeEventStream {
    inner: Arc<StreamInner>,
}

struct StreamInner {
    stream: tokio::sync::Mutex<Option<BoxStream<'static, Item>>>,
    /// Wakes a pending `next_batch` when the stream is closed.
    closed: CancellationToken,
}

impl NativeEventStream {
    pub(crate) fn new<T: IntoItem + Send + 'static>(events: EventStream<T>) -> Self {
        Self {
            inner: Arc::new(StreamInner {
                stream: tokio::sync::Mutex::new(Some(events.map(Item::from).boxed())),
                closed: CancellationToken::new(),
            }),
        }
    }
}

#[pymethods]
impl NativeEventStream {
    /// Awaitable (on the loop of `bridge`): the next events as a list of `(kind, payload)`
    /// tuples; waits for at least one, returns an empty list once the stream has ended or
    /// was closed.
    fn next_batch<'py>(&self, py: Python<'py>, bridge: &LoopBridge) -> PyResult<Bound<'py, PyAny>> {
        let inner = Arc::clone(&self.inner);
        bridge.spawn(py, async move {
            let mut guard = inner.stream.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Ok(Batch::default());
            };
            let first = tokio::select! {
                biased;
                () = inner.closed.cancelled() => None,
                item = stream.next() => item,
            };
            let Some(first) = first else {
                *guard = None;
                return Ok(Batch::default());
            };
            let mut items = vec![first];
            while items.len() < MAX_BATCH {
                match stream.next().now_or_never() {
                    Some(Some(item)) => items.push(item),
                    _ => break,
                }
            }
            Ok(Batch(items))
        })
    }

    /// Awaitable: ends the call now (if it has not ended) and releases the stream.
    fn aclose<'py>(&self, py: Python<'py>, bridge: &LoopBridge) -> PyResult<Bound<'py, PyAny>> {
        self.inner.closed.cancel();
        let inner = Arc::clone(&self.inner);
        bridge.spawn(py, async move {
            inner.stream.lock().await.take();
            Ok(())
        })
    }
}

/// An `artifact_upload_request_message` together with the means to answer it.
#[pyclass(
    module = "runtimeuse_client._native",
    name = "ArtifactUploadRequest",
    frozen
)]
pub(crate) struct ArtifactRequest {
    #[pyo3(get)]
    filename: String,
    #[pyo3(get)]
    filepath: String,
    event: Mutex<Option<ArtifactUploadRequestEvent>>,
}

impl ArtifactRequest {
    pub(crate) fn new(event: ArtifactUploadRequestEvent) -> Self {
        Self {
            filename: event.request().filename.clone(),
            filepath: event.request().filepath.clone(),
            event: Mutex::new(Some(event)),
        }
    }
}

#[pymethods]
impl ArtifactRequest {
    /// Tells the runtime to `PUT` the file to `presigned_url` with `content_type`.
    fn respond(&self, presigned_url: String, content_type: String) -> PyResult<()> {
        let event = self
            .event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this upload request was already answered"))?;
        event
            .respond(ArtifactUploadResult::new(presigned_url, content_type))
            .map_err(|e| PyConnectionError::new_err(e.to_string()))
    }

    /// Leaves the request unanswered (the file is not uploaded). The native call holds its
    /// result back until the requests it handed out are answered or released, so an
    /// unanswered one is released at once rather than when Python collects it.
    fn discard(&self) {
        self.event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

//! The client and session classes of the native module.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use runtimeuse_client::{RuntimeUseClient, Session};

use std::sync::{Arc, PoisonError};

use tracing::Instrument;

use crate::bridge::{LoopBridge, runtime};
use crate::logs::call_span;
use crate::options::{command_options, python_artifact_callback, query_options};
use crate::stream::NativeEventStream;
use crate::transport::{TransportLoop, python_transport};

/// Calls on a runtime; each call opens its own connection.
#[pyclass(module = "runtimeuse_client._native", name = "Client", frozen)]
pub(crate) struct NativeClient {
    client: RuntimeUseClient,
    /// Set with a custom transport: the loop it runs on (that of the latest call).
    transport_loop: Option<TransportLoop>,
}

impl NativeClient {
    /// Notes the loop of a call about to start, for a custom transport to run on.
    fn use_loop(&self, bridge: &LoopBridge) {
        if let Some(event_loop) = &self.transport_loop {
            *event_loop.lock().unwrap_or_else(PoisonError::into_inner) = Some(bridge.queue());
        }
    }
}

#[pymethods]
impl NativeClient {
    /// `headers` go with every WebSocket upgrade; `token` is sent as
    /// `Authorization: Bearer <token>`; `connect_timeout` (seconds) bounds opening a
    /// connection.
    #[new]
    /// With `transport` (a Python transport, see `_transport.py`) no WebSocket is opened
    /// and `ws_url` only names the runtime. `resume` opens durable sessions that
    /// reconnect after a drop (`ClientBuilder::resume`; not with a transport).
    #[pyo3(signature = (ws_url, headers = Vec::new(), token = None, connect_timeout = None, transport = None, resume = false))]
    fn new(
        ws_url: String,
        headers: Vec<(String, String)>,
        token: Option<String>,
        connect_timeout: Option<f64>,
        transport: Option<Py<PyAny>>,
        resume: bool,
    ) -> PyResult<Self> {
        let mut builder = RuntimeUseClient::builder(ws_url).resume(resume);
        let mut transport_loop = None;
        if let Some(transport) = transport {
            let event_loop = TransportLoop::default();
            builder = builder.transport(python_transport(transport, Arc::clone(&event_loop)));
            transport_loop = Some(event_loop);
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(token) = token {
            builder = builder.auth_token(token);
        }
        if let Some(seconds) = connect_timeout {
            let timeout = std::time::Duration::try_from_secs_f64(seconds)
                .map_err(|e| PyValueError::new_err(format!("connect_timeout = {seconds}: {e}")))?;
            builder = builder.connect_timeout(timeout);
        }
        let client = builder
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self {
            client,
            transport_loop,
        })
    }

    /// The events of one agent invocation (`message_json`: an `invocation_message`); the
    /// Rust side's log lines go to `logger` (a `logging.Logger`) on the loop of `bridge`.
    fn query(
        &self,
        py: Python<'_>,
        message_json: &str,
        bridge: &LoopBridge,
        logger: Py<PyAny>,
    ) -> PyResult<NativeEventStream> {
        let (prompt, options) = query_options(message_json, None)?;
        self.use_loop(bridge);
        let span = call_span(py, bridge, logger)?;
        let _span = span.enter();
        let _runtime = runtime()?.enter();
        Ok(NativeEventStream::new(
            self.client.query_stream(prompt, options),
        ))
    }

    /// The events of one command execution (`message_json`: a `command_execution_message`);
    /// see `query` for `bridge` and `logger`.
    fn execute_commands(
        &self,
        py: Python<'_>,
        message_json: &str,
        bridge: &LoopBridge,
        logger: Py<PyAny>,
    ) -> PyResult<NativeEventStream> {
        let (commands, options) = command_options(message_json, None)?;
        self.use_loop(bridge);
        let span = call_span(py, bridge, logger)?;
        let _span = span.enter();
        let _runtime = runtime()?.enter();
        Ok(NativeEventStream::new(
            self.client.execute_commands_stream(commands, options),
        ))
    }

    /// Aborts the calls in flight (`cancel_message`); they end as cancelled.
    fn abort(&self) {
        self.client.abort();
    }

    /// Awaitable (on the loop of `bridge`): a persistent session (one connection for many
    /// calls), or the error dict (as in `EventStream` items) of why there is none.
    fn connect<'py>(
        &self,
        py: Python<'py>,
        bridge: &LoopBridge,
        logger: Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        self.use_loop(bridge);
        let span = call_span(py, bridge, logger)?;
        bridge.spawn(
            py,
            async move {
                Ok(match client.session().await {
                    Ok(session) => Connected::Session(NativeSession { session }),
                    Err(error) => Connected::Failed(error),
                })
            }
            .instrument(span),
        )
    }
}

/// What `Client.connect` resolves to; converted on the loop thread.
enum Connected {
    Session(NativeSession),
    Failed(runtimeuse_client::Error),
}

impl<'py> IntoPyObject<'py> for Connected {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        match self {
            Connected::Session(session) => Ok(Bound::new(py, session)?.into_any()),
            Connected::Failed(error) => Ok(crate::convert::error_to_py(py, &error)?.into_any()),
        }
    }
}

/// One connection serving sequential calls.
#[pyclass(module = "runtimeuse_client._native", name = "Session", frozen)]
pub(crate) struct NativeSession {
    session: Session,
}

#[pymethods]
impl NativeSession {
    /// Like `Client.query`; `on_late_artifact(filename, filepath)` (a coroutine function,
    /// run on the loop of `bridge`) answers the upload requests that arrive while the
    /// session closes.
    #[pyo3(signature = (message_json, bridge, logger, on_late_artifact = None))]
    fn query(
        &self,
        py: Python<'_>,
        message_json: &str,
        bridge: &LoopBridge,
        logger: Py<PyAny>,
        on_late_artifact: Option<Py<PyAny>>,
    ) -> PyResult<NativeEventStream> {
        let late = on_late_artifact.map(|handler| python_artifact_callback(bridge, handler));
        let (prompt, options) = query_options(message_json, late)?;
        let span = call_span(py, bridge, logger)?;
        let _span = span.enter();
        let _runtime = runtime()?.enter();
        Ok(NativeEventStream::new(
            self.session.query_stream(prompt, options),
        ))
    }

    /// Like `Client.execute_commands`; see `query` for `on_late_artifact`.
    #[pyo3(signature = (message_json, bridge, logger, on_late_artifact = None))]
    fn execute_commands(
        &self,
        py: Python<'_>,
        message_json: &str,
        bridge: &LoopBridge,
        logger: Py<PyAny>,
        on_late_artifact: Option<Py<PyAny>>,
    ) -> PyResult<NativeEventStream> {
        let late = on_late_artifact.map(|handler| python_artifact_callback(bridge, handler));
        let (commands, options) = command_options(message_json, late)?;
        let span = call_span(py, bridge, logger)?;
        let _span = span.enter();
        let _runtime = runtime()?.enter();
        Ok(NativeEventStream::new(
            self.session.execute_commands_stream(commands, options),
        ))
    }

    /// Cancels the call in flight, if any.
    fn abort(&self) {
        self.session.abort();
    }

    /// Awaitable: ends the session (`end_session_message`), answering late upload requests
    /// until the runtime confirms or `timeout` seconds pass. Resolves to `None`, or to a
    /// description of what went wrong (the session is closed either way).
    fn close<'py>(
        &self,
        py: Python<'py>,
        bridge: &LoopBridge,
        logger: Py<PyAny>,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = std::time::Duration::try_from_secs_f64(timeout)
            .map_err(|e| PyValueError::new_err(format!("timeout = {timeout}: {e}")))?;
        let session = self.session.clone();
        let span = call_span(py, bridge, logger)?;
        bridge.spawn(
            py,
            async move {
                Ok(session
                    .close_with_timeout(timeout)
                    .await
                    .err()
                    .map(|e| e.to_string()))
            }
            .instrument(span),
        )
    }
}

//! The client and session classes of the native module.

use pyo3::exceptions::{PyConnectionError, PyValueError};
use pyo3::prelude::*;
use runtimeuse_client::{RuntimeUseClient, Session};

use crate::bridge::{LoopBridge, runtime};
use crate::options::{command_options, python_artifact_callback, query_options};
use crate::stream::NativeEventStream;

/// Calls on a runtime; each call opens its own connection.
#[pyclass(module = "runtimeuse_client._native", name = "Client", frozen)]
pub(crate) struct NativeClient {
    client: RuntimeUseClient,
}

#[pymethods]
impl NativeClient {
    #[new]
    fn new(ws_url: String) -> PyResult<Self> {
        let client = RuntimeUseClient::builder(ws_url)
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Self { client })
    }

    /// The events of one agent invocation (`message_json`: an `invocation_message`).
    fn query(&self, message_json: &str) -> PyResult<NativeEventStream> {
        let (prompt, options) = query_options(message_json, None)?;
        let _runtime = runtime()?.enter();
        Ok(NativeEventStream::new(
            self.client.query_stream(prompt, options),
        ))
    }

    /// The events of one command execution (`message_json`: a `command_execution_message`).
    fn execute_commands(&self, message_json: &str) -> PyResult<NativeEventStream> {
        let (commands, options) = command_options(message_json, None)?;
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
    /// calls).
    fn connect<'py>(&self, py: Python<'py>, bridge: &LoopBridge) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        bridge.spawn(py, async move {
            let session = client
                .session()
                .await
                .map_err(|e| PyConnectionError::new_err(e.to_string()))?;
            Ok(NativeSession { session })
        })
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
    #[pyo3(signature = (message_json, bridge, on_late_artifact = None))]
    fn query(
        &self,
        message_json: &str,
        bridge: &LoopBridge,
        on_late_artifact: Option<Py<PyAny>>,
    ) -> PyResult<NativeEventStream> {
        let late = on_late_artifact.map(|handler| python_artifact_callback(bridge, handler));
        let (prompt, options) = query_options(message_json, late)?;
        let _runtime = runtime()?.enter();
        Ok(NativeEventStream::new(
            self.session.query_stream(prompt, options),
        ))
    }

    /// Like `Client.execute_commands`; see `query` for `on_late_artifact`.
    #[pyo3(signature = (message_json, bridge, on_late_artifact = None))]
    fn execute_commands(
        &self,
        message_json: &str,
        bridge: &LoopBridge,
        on_late_artifact: Option<Py<PyAny>>,
    ) -> PyResult<NativeEventStream> {
        let late = on_late_artifact.map(|handler| python_artifact_callback(bridge, handler));
        let (commands, options) = command_options(message_json, late)?;
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
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = std::time::Duration::try_from_secs_f64(timeout)
            .map_err(|e| PyValueError::new_err(format!("timeout = {timeout}: {e}")))?;
        let session = self.session.clone();
        bridge.spawn(py, async move {
            Ok(session
                .close_with_timeout(timeout)
                .await
                .err()
                .map(|e| e.to_string()))
        })
    }
}

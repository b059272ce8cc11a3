//! Rust values to Python objects: JSON, client events and client errors.
//!
//! Events cross into Python as `(kind, payload)` tuples whose payload is the wire form of
//! the message (a `dict` with `message_type`), so the Python layer builds its pydantic
//! models from exactly what the runtime sent. Errors cross as an `("error", {...})` item
//! so that the Python layer alone decides which exception the user sees.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::{IntoPyObjectExt, Py};
use runtimeuse_client::{
    ArtifactUploadRequestEvent, AssistantMessage, CommandExecutionResult, CommandOutput, Error,
    Event, Heartbeat, OutputStream, QueryData, QueryResult, TimeoutKind,
};
use serde_json::{Map, Value};

use crate::stream::ArtifactRequest;

/// One item handed to Python by `EventStream.next_batch`.
pub(crate) enum Item {
    Assistant(AssistantMessage),
    CommandOutput(CommandOutput),
    Heartbeat(Heartbeat),
    ArtifactUploadRequest(ArtifactUploadRequestEvent),
    QueryResult(QueryResult),
    CommandsResult(CommandExecutionResult),
    Error(Error),
    /// An event kind this module does not know (`Event` is non-exhaustive); skipped.
    Unknown,
}

/// A call's result type, as an [`Item`].
pub(crate) trait IntoItem {
    fn into_item(self) -> Item;
}

impl IntoItem for QueryResult {
    fn into_item(self) -> Item {
        Item::QueryResult(self)
    }
}

impl IntoItem for CommandExecutionResult {
    fn into_item(self) -> Item {
        Item::CommandsResult(self)
    }
}

impl<T: IntoItem> From<Result<Event<T>, Error>> for Item {
    fn from(event: Result<Event<T>, Error>) -> Self {
        match event {
            Err(error) => Item::Error(error),
            Ok(Event::AssistantMessage(message)) => Item::Assistant(message),
            Ok(Event::CommandOutput(output)) => Item::CommandOutput(output),
            Ok(Event::Heartbeat(heartbeat)) => Item::Heartbeat(heartbeat),
            Ok(Event::ArtifactUploadRequest(event)) => Item::ArtifactUploadRequest(event),
            Ok(Event::Result(result)) => result.into_item(),
            Ok(_) => Item::Unknown,
        }
    }
}

/// What `EventStream.next_batch` resolves to: a list of `(kind, payload)` tuples, empty
/// once the stream has ended.
///
/// Converted on the thread that completes the Python future (attached to the
/// interpreter), never on a Tokio worker.
#[derive(Default)]
pub(crate) struct Batch(pub Vec<Item>);

impl<'py> IntoPyObject<'py> for Batch {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let list = PyList::empty(py);
        for item in self.0 {
            if let Some(tuple) = item_to_py(py, item)? {
                list.append(tuple)?;
            }
        }
        Ok(list)
    }
}

fn item_to_py(py: Python<'_>, item: Item) -> PyResult<Option<Bound<'_, PyTuple>>> {
    let (kind, payload): (&str, Bound<'_, PyAny>) = match item {
        Item::Error(error) => ("error", error_to_py(py, &error)?.into_any()),
        Item::Assistant(message) => {
            let dict = message_dict(py, "assistant_message")?;
            dict.set_item("text_blocks", PyList::new(py, &message.text_blocks)?)?;
            ("assistant_message", dict.into_any())
        }
        Item::CommandOutput(output) => {
            let dict = message_dict(py, "command_output_message")?;
            let stream = match output.stream {
                OutputStream::Stdout => "stdout",
                OutputStream::Stderr => "stderr",
            };
            dict.set_item("stream", stream)?;
            dict.set_item("text", output.text)?;
            dict.set_item("command", output.command)?;
            ("command_output_message", dict.into_any())
        }
        Item::Heartbeat(heartbeat) => {
            let dict = message_dict(py, "heartbeat_message")?;
            dict.set_item("phase", heartbeat.phase)?;
            dict.set_item("elapsed_ms", heartbeat.elapsed_ms)?;
            ("heartbeat_message", dict.into_any())
        }
        Item::ArtifactUploadRequest(event) => {
            let request = Py::new(py, ArtifactRequest::new(event))?;
            (
                "artifact_upload_request_message",
                request.into_bound(py).into_any(),
            )
        }
        Item::QueryResult(result) => ("result_message", query_result_to_py(py, result)?.into_any()),
        Item::CommandsResult(result) => {
            let dict = message_dict(py, "command_execution_result_message")?;
            let results = PyList::empty(py);
            for item in &result.results {
                let value = serde_json::to_value(item).map_err(|e| {
                    pyo3::exceptions::PyRuntimeError::new_err(format!(
                        "could not convert a command result: {e}"
                    ))
                })?;
                results.append(json_to_py(py, &value)?)?;
            }
            dict.set_item("results", results)?;
            // Only with resume on (`reconnects`): the published shape stays as it was.
            if !result.metadata.is_empty() {
                dict.set_item("metadata", map_to_py(py, &result.metadata)?)?;
            }
            ("command_execution_result_message", dict.into_any())
        }
        Item::Unknown => return Ok(None),
    };
    Ok(Some(PyTuple::new(
        py,
        [PyString::new(py, kind).into_any(), payload],
    )?))
}

fn message_dict<'py>(py: Python<'py>, message_type: &str) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("message_type", message_type)?;
    Ok(dict)
}

fn query_result_to_py(py: Python<'_>, result: QueryResult) -> PyResult<Bound<'_, PyDict>> {
    let data = PyDict::new(py);
    match result.data {
        QueryData::Text(text) => {
            data.set_item("type", "text")?;
            data.set_item("text", text)?;
        }
        QueryData::StructuredOutput(value) => {
            data.set_item("type", "structured_output")?;
            data.set_item("structured_output", json_to_py(py, &value)?)?;
        }
    }
    let dict = message_dict(py, "result_message")?;
    dict.set_item("data", data)?;
    dict.set_item("metadata", map_to_py(py, &result.metadata)?)?;
    Ok(dict)
}

/// The error as a `dict` with a `kind` and the fields the Python layer needs.
pub(crate) fn error_to_py<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("message", error.to_string())?;
    let kind = match error {
        Error::Runtime { error, metadata } => {
            dict.set_item("error", error)?;
            dict.set_item("metadata", map_to_py(py, metadata)?)?;
            "runtime"
        }
        Error::Cancelled => "cancelled",
        Error::Timeout {
            kind,
            after,
            last_message_type,
            message_count,
        } => {
            dict.set_item("timeout_kind", timeout_kind_name(*kind))?;
            dict.set_item("after", after.as_secs_f64())?;
            dict.set_item("last_message_type", last_message_type.as_deref())?;
            dict.set_item("message_count", *message_count)?;
            "timeout"
        }
        Error::Connect { source, .. } => {
            if let Some(io) = io_cause(source.as_ref()) {
                dict.set_item("errno", io.raw_os_error())?;
                dict.set_item("timed_out", io.kind() == std::io::ErrorKind::TimedOut)?;
            }
            "connect"
        }
        Error::ConnectionClosed { reason } => {
            dict.set_item("reason", reason)?;
            "connection_closed"
        }
        Error::Protocol(_) => "protocol",
        Error::InvalidOptions(_) => "invalid_options",
        Error::Callback(_) => "callback",
        _ => "other",
    };
    dict.set_item("kind", kind)?;
    Ok(dict)
}

/// The I/O error behind a connect failure (refused, reset, timed out...), if there is one.
fn io_cause<'e>(
    error: &'e (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'e std::io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = current {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = cause.source();
    }
    None
}

fn timeout_kind_name(kind: TimeoutKind) -> &'static str {
    match kind {
        TimeoutKind::Overall => "overall",
        TimeoutKind::Idle => "idle",
        TimeoutKind::AssistantCallback => "assistant_callback",
        TimeoutKind::ArtifactCallback => "artifact_callback",
        TimeoutKind::EndSession => "end_session",
        _ => "other",
    }
}

fn map_to_py<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in map {
        dict.set_item(key, json_to_py(py, value)?)?;
    }
    Ok(dict)
}

/// A JSON value as the object `json.loads` would give.
pub(crate) fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Null => Ok(py.None().into_bound(py)),
        Value::Bool(b) => b.into_bound_py_any(py),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_bound_py_any(py)
            } else if let Some(u) = n.as_u64() {
                u.into_bound_py_any(py)
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)
            }
        }
        Value::String(s) => s.into_bound_py_any(py),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            Ok(list.into_any())
        }
        Value::Object(map) => Ok(map_to_py(py, map)?.into_any()),
    }
}

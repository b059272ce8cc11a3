//! Call options from the Python layer: the wire message it built (JSON from its pydantic
//! models, so field types were already checked the way the published client checks them).
//!
//! No time limit is handed to Rust: the Python layer enforces them all, `idle_timeout`
//! around waiting for the next events only (time in its callbacks does not count, as in
//! the published client), the overall one around the whole call.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use runtimeuse_client::{
    ArtifactUploadRequest, ArtifactUploadResult, CallbackResult, Command, ExecuteCommandsOptions,
    OnArtifactUploadRequest, QueryOptions,
};
use runtimeuse_protocol::ClientMessage;
use tokio::sync::oneshot;

use crate::bridge::LoopBridge;

/// `prompt` and options of a `query`, from an `invocation_message` in JSON.
pub(crate) fn query_options(
    message_json: &str,
    late_artifacts: Option<OnArtifactUploadRequest>,
) -> PyResult<(String, QueryOptions)> {
    let ClientMessage::InvocationMessage(invocation) = parse(message_json)? else {
        return Err(PyValueError::new_err("expected an invocation_message"));
    };
    let artifacts_dirs = invocation.all_artifacts_dirs();
    let mut options = QueryOptions::new(invocation.system_prompt, invocation.model);
    options.output_format_json_schema_str = invocation.output_format_json_schema_str;
    options.source_id = invocation.source_id;
    options.agent_env = invocation.agent_env.unwrap_or_default();
    options.secrets_to_redact = invocation.secrets_to_redact;
    options.artifacts_dirs = artifacts_dirs;
    options.artifacts_ignore_content = invocation.artifacts_ignore_content;
    options.pre_agent_invocation_commands =
        invocation.pre_agent_invocation_commands.unwrap_or_default();
    options.post_agent_invocation_commands = invocation
        .post_agent_invocation_commands
        .unwrap_or_default();
    options.pre_agent_downloadables = invocation.pre_agent_downloadables.unwrap_or_default();
    // Event streams answer upload requests through events; a session keeps this callback
    // to answer the requests that arrive while it closes.
    options.on_artifact_upload_request = late_artifacts;
    Ok((invocation.user_prompt, options))
}

/// Commands and options of an `execute_commands`, from a `command_execution_message`.
pub(crate) fn command_options(
    message_json: &str,
    late_artifacts: Option<OnArtifactUploadRequest>,
) -> PyResult<(Vec<Command>, ExecuteCommandsOptions)> {
    let ClientMessage::CommandExecutionMessage(execution) = parse(message_json)? else {
        return Err(PyValueError::new_err(
            "expected a command_execution_message",
        ));
    };
    let artifacts_dirs = execution.all_artifacts_dirs();
    let mut options = ExecuteCommandsOptions::new();
    options.source_id = execution.source_id;
    options.secrets_to_redact = execution.secrets_to_redact;
    options.artifacts_dirs = artifacts_dirs;
    options.artifacts_ignore_content = execution.artifacts_ignore_content;
    options.pre_execution_downloadables = execution.pre_execution_downloadables.unwrap_or_default();
    options.on_artifact_upload_request = late_artifacts;
    Ok((execution.commands, options))
}

fn parse(message_json: &str) -> PyResult<ClientMessage> {
    serde_json::from_str(message_json)
        .map_err(|e| PyValueError::new_err(format!("invalid request message: {e}")))
}

/// An upload callback that runs `handler(filename, filepath)` on the loop of `bridge`;
/// the coroutine it returns resolves to `(presigned_url, content_type)`, or `None` to leave
/// the file. The Tokio side only queues the request and awaits the answer: it never
/// touches the interpreter (see [`crate::bridge`]).
pub(crate) fn python_artifact_callback(
    bridge: &LoopBridge,
    handler: Py<PyAny>,
) -> OnArtifactUploadRequest {
    let queue = bridge.queue();
    let handler = Arc::new(handler);
    Arc::new(move |request: ArtifactUploadRequest| {
        let (answer_tx, answer_rx) = oneshot::channel();
        let handler = Arc::clone(&handler);
        queue.run_on_loop(Box::new(move |py| {
            let coroutine = handler
                .bind(py)
                .call1((request.filename, request.filepath))?;
            let task = py
                .import(pyo3::intern!(py, "asyncio"))?
                .call_method1(pyo3::intern!(py, "ensure_future"), (coroutine,))?;
            task.call_method1(
                pyo3::intern!(py, "add_done_callback"),
                (LateAnswer {
                    answer: Mutex::new(Some(answer_tx)),
                },),
            )?;
            Ok(())
        }));
        async move {
            let target = answer_rx
                .await
                .map_err(|_| "the upload callback could not be run")?;
            let (presigned_url, content_type) =
                target.ok_or("the upload callback gave no presigned URL")?;
            let result: CallbackResult<ArtifactUploadResult> =
                Ok(ArtifactUploadResult::new(presigned_url, content_type));
            result
        }
        .boxed()
    })
}

type Answer = Option<(String, String)>;

/// The done-callback of a late upload callback's task: hands its answer to the Rust side.
#[pyclass(module = "runtimeuse_client._native", name = "LateAnswer", frozen)]
pub(crate) struct LateAnswer {
    answer: Mutex<Option<oneshot::Sender<Answer>>>,
}

#[pymethods]
impl LateAnswer {
    fn __call__(&self, task: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(sender) = self
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        // A cancelled or failed callback leaves the file (the Python layer logs failures).
        let answer = if task.call_method0("cancelled")?.is_truthy()?
            || !task.call_method0("exception")?.is_none()
        {
            None
        } else {
            task.call_method0("result")?
                .extract::<Answer>()
                .ok()
                .flatten()
        };
        let _ = sender.send(answer);
        Ok(())
    }
}

//! Call options from the Python layer: the wire message it built (JSON from its pydantic
//! models, so field types were already checked the way the published client checks them).
//!
//! No time limit is handed to Rust: the Python layer enforces them all, `idle_timeout`
//! around waiting for the next events only (time in its callbacks does not count, as in
//! the published client), the overall one around the whole call.

use std::sync::Arc;

use futures_util::FutureExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use runtimeuse_client::{
    ArtifactUploadRequest, ArtifactUploadResult, CallbackResult, Command, ExecuteCommandsOptions,
    OnArtifactUploadRequest, QueryOptions,
};
use runtimeuse_protocol::ClientMessage;

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

/// An upload callback that awaits `handler(filename, filepath)` on the caller's event
/// loop; the coroutine returns `(presigned_url, content_type)`, or `None` to leave the file.
///
/// Must be created while that loop runs (it is captured here).
pub(crate) fn python_artifact_callback(
    py: Python<'_>,
    handler: Py<PyAny>,
) -> PyResult<OnArtifactUploadRequest> {
    let locals = pyo3_async_runtimes::tokio::get_current_locals(py)?;
    let handler = Arc::new(handler);
    Ok(Arc::new(move |request: ArtifactUploadRequest| {
        let handler = Arc::clone(&handler);
        let locals = locals.clone();
        async move {
            let answer = Python::attach(|py| {
                let coroutine = handler
                    .bind(py)
                    .call1((request.filename, request.filepath))?;
                pyo3_async_runtimes::into_future_with_locals(&locals, coroutine)
            })?
            .await?;
            let target: Option<(String, String)> = Python::attach(|py| answer.bind(py).extract())?;
            let (presigned_url, content_type) =
                target.ok_or("the upload callback gave no presigned URL")?;
            let result: CallbackResult<ArtifactUploadResult> =
                Ok(ArtifactUploadResult::new(presigned_url, content_type));
            result
        }
        .boxed()
    }))
}

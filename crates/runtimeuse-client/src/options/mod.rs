//! Per-call options and what the request loop needs from them.

mod commands;
mod query;

use std::time::Duration;

use runtimeuse_protocol::ClientMessage;

pub use commands::ExecuteCommandsOptions;
pub use query::QueryOptions;

use crate::Error;
use crate::callbacks::Callbacks;

/// The time limits of one call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub assistant_callback_timeout: Option<Duration>,
    pub artifact_upload_callback_timeout: Option<Duration>,
}

/// Everything the request loop needs for one call, built from the options.
pub(crate) struct RequestSpec {
    pub message: ClientMessage,
    pub callbacks: Callbacks,
    pub limits: Limits,
    pub source_id: Option<String>,
}

/// Mirrors the Python client's `ValueError`: a watched directory needs someone to answer
/// the upload requests, and an upload callback without directories is a mistake.
fn validate_artifact_pairing(dirs: &[String], has_callback: bool) -> Result<(), Error> {
    if dirs.is_empty() == has_callback {
        return Err(Error::InvalidOptions(
            "artifacts_dirs and on_artifact_upload_request must be specified together".into(),
        ));
    }
    Ok(())
}

/// Empty lists and maps are sent as `null`, like the Python client does.
fn non_empty<C>(collection: &C) -> Option<C>
where
    C: Clone,
    for<'a> &'a C: IntoIterator,
{
    collection
        .into_iter()
        .next()
        .is_some()
        .then(|| collection.clone())
}

/// Setters shared by [`QueryOptions`] and [`ExecuteCommandsOptions`].
macro_rules! common_setters {
    () => {
        /// Sets the caller-defined id used in the runtime's logs.
        #[must_use]
        pub fn source_id(mut self, source_id: impl Into<String>) -> Self {
            self.source_id = Some(source_id.into());
            self
        }

        /// Adds values the runtime replaces by `[REDACTED]` in everything it sends or logs.
        #[must_use]
        pub fn secrets_to_redact<S: Into<String>>(
            mut self,
            secrets: impl IntoIterator<Item = S>,
        ) -> Self {
            self.secrets_to_redact
                .extend(secrets.into_iter().map(Into::into));
            self
        }

        /// Adds directories the runtime watches for artifacts (for the rest of the session).
        /// Requires an upload callback, see [`Self::on_artifact_upload_request`].
        #[must_use]
        pub fn artifacts_dirs<S: Into<String>>(
            mut self,
            dirs: impl IntoIterator<Item = S>,
        ) -> Self {
            self.artifacts_dirs.extend(dirs.into_iter().map(Into::into));
            self
        }

        /// Sets gitignore-syntax rules for every directory of `artifacts_dirs`; they take
        /// precedence over any `.artifactignore` file.
        #[must_use]
        pub fn artifacts_ignore_content(mut self, content: impl Into<String>) -> Self {
            self.artifacts_ignore_content = Some(content.into());
            self
        }

        /// Sets the async closure called for each `assistant_message`.
        /// It may return `()` or a `Result<(), E>`; an error ends the call with
        /// [`Error::Callback`](crate::Error::Callback).
        #[must_use]
        pub fn on_assistant_message<F, Fut, R>(mut self, f: F) -> Self
        where
            F: Fn(runtimeuse_protocol::AssistantMessage) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = R> + Send + 'static,
            R: crate::IntoCallbackResult<()> + 'static,
        {
            self.on_assistant_message = Some(crate::callback(f));
            self
        }

        /// Sets the async closure called for each chunk of command output.
        #[must_use]
        pub fn on_command_output<F, Fut, R>(mut self, f: F) -> Self
        where
            F: Fn(runtimeuse_protocol::CommandOutput) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = R> + Send + 'static,
            R: crate::IntoCallbackResult<()> + 'static,
        {
            self.on_command_output = Some(crate::callback(f));
            self
        }

        /// Sets the async closure answering artifact upload requests with a presigned URL
        /// and a content type. Requires `artifacts_dirs`.
        #[must_use]
        pub fn on_artifact_upload_request<F, Fut, R>(mut self, f: F) -> Self
        where
            F: Fn(runtimeuse_protocol::ArtifactUploadRequest) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = R> + Send + 'static,
            R: crate::IntoCallbackResult<crate::ArtifactUploadResult> + 'static,
        {
            self.on_artifact_upload_request = Some(crate::callback(f));
            self
        }

        /// Sets the overall time limit of the call.
        #[must_use]
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.timeout = Some(timeout);
            self
        }

        /// Sets the longest silence allowed between two runtime messages (heartbeats count).
        /// On a resumable client, time spent reconnecting does not count: the limit starts
        /// again from the resume.
        #[must_use]
        pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.idle_timeout = Some(timeout);
            self
        }

        /// Sets the longest time one assistant message callback may take.
        #[must_use]
        pub fn assistant_callback_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.assistant_callback_timeout = Some(timeout);
            self
        }

        /// Sets the longest time one artifact upload callback may take.
        #[must_use]
        pub fn artifact_upload_callback_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.artifact_upload_callback_timeout = Some(timeout);
            self
        }

        pub(crate) fn callbacks(&self) -> crate::callbacks::Callbacks {
            crate::callbacks::Callbacks {
                assistant: self.on_assistant_message.clone(),
                command_output: self.on_command_output.clone(),
                artifact: self.on_artifact_upload_request.clone(),
            }
        }

        pub(crate) fn limits(&self) -> crate::options::Limits {
            crate::options::Limits {
                timeout: self.timeout,
                idle_timeout: self.idle_timeout,
                assistant_callback_timeout: self.assistant_callback_timeout,
                artifact_upload_callback_timeout: self.artifact_upload_callback_timeout,
            }
        }
    };
}

use common_setters;

/// `Debug` for an optional callback: whether it is set.
fn callback_set<T: ?Sized>(cb: Option<&std::sync::Arc<T>>) -> &'static str {
    if cb.is_some() {
        "Some(<callback>)"
    } else {
        "None"
    }
}

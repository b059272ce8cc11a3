//! Callback types: async closures the request loop awaits for each runtime message.

use std::future::Future;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use runtimeuse_protocol::{ArtifactUploadRequest, AssistantMessage, CommandOutput};

/// The error a callback may return; any `std::error::Error`, `String` or `&str` converts.
pub type CallbackError = Box<dyn std::error::Error + Send + Sync>;

/// What a stored callback resolves to.
pub type CallbackResult<T> = Result<T, CallbackError>;

/// A stored async callback taking `A` and producing `T`.
pub type Callback<A, T> = Arc<dyn Fn(A) -> BoxFuture<'static, CallbackResult<T>> + Send + Sync>;

/// Called for each `assistant_message` (agent text while it works).
pub type OnAssistantMessage = Callback<AssistantMessage, ()>;

/// Called for each chunk of command output (pre/post commands or `execute_commands`).
pub type OnCommandOutput = Callback<CommandOutput, ()>;

/// Called when the runtime asks where to upload an artifact; returns the presigned URL.
pub type OnArtifactUploadRequest = Callback<ArtifactUploadRequest, ArtifactUploadResult>;

/// Where the runtime should upload an artifact (answer to an upload request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactUploadResult {
    /// URL the runtime `PUT`s the file to.
    pub presigned_url: String,
    /// `Content-Type` of the upload.
    pub content_type: String,
}

impl ArtifactUploadResult {
    /// An upload target.
    pub fn new(presigned_url: impl Into<String>, content_type: impl Into<String>) -> Self {
        Self {
            presigned_url: presigned_url.into(),
            content_type: content_type.into(),
        }
    }
}

/// What an async closure may return to be used as a callback: the value itself
/// (`()`, [`ArtifactUploadResult`]) or a `Result` of it with any error convertible to
/// [`CallbackError`].
pub trait IntoCallbackResult<T> {
    /// Normalises the closure's output.
    ///
    /// # Errors
    /// The closure's own error, boxed.
    fn into_callback_result(self) -> CallbackResult<T>;
}

impl IntoCallbackResult<()> for () {
    fn into_callback_result(self) -> CallbackResult<()> {
        Ok(())
    }
}

impl IntoCallbackResult<ArtifactUploadResult> for ArtifactUploadResult {
    fn into_callback_result(self) -> CallbackResult<ArtifactUploadResult> {
        Ok(self)
    }
}

impl<T, E: Into<CallbackError>> IntoCallbackResult<T> for Result<T, E> {
    fn into_callback_result(self) -> CallbackResult<T> {
        self.map_err(Into::into)
    }
}

/// Turns an async closure into a stored [`Callback`].
///
/// ```
/// use runtimeuse_client::{callback, OnAssistantMessage};
///
/// let on_assistant: OnAssistantMessage = callback(|msg: runtimeuse_client::AssistantMessage| async move {
///     println!("{}", msg.text_blocks.join("\n"));
/// });
/// # let _ = on_assistant;
/// ```
pub fn callback<A, T: 'static, F, Fut, R>(f: F) -> Callback<A, T>
where
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoCallbackResult<T> + 'static,
{
    Arc::new(move |arg| f(arg).map(IntoCallbackResult::into_callback_result).boxed())
}

/// The callbacks of one call, as the request loop sees them.
#[derive(Clone, Default)]
pub(crate) struct Callbacks {
    pub assistant: Option<OnAssistantMessage>,
    pub command_output: Option<OnCommandOutput>,
    pub artifact: Option<OnArtifactUploadRequest>,
}

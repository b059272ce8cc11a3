//! The event-stream alternative to callbacks.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use runtimeuse_protocol::{
    ArtifactUploadRequest, ArtifactUploadResponse, AssistantMessage, ClientMessage, CommandOutput,
    Heartbeat,
};
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;
use tokio_util::task::AbortOnDropHandle;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::{ArtifactUploadResult, Error};

/// Events yielded in place of callbacks, in the order the runtime sent them.
///
/// `T` is the call's result type ([`QueryResult`](crate::QueryResult) or
/// [`CommandExecutionResult`](crate::CommandExecutionResult)); [`Event::Result`] is the
/// last item of a successful call.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<T> {
    /// Agent text produced while it works.
    AssistantMessage(AssistantMessage),
    /// A chunk of command output.
    CommandOutput(CommandOutput),
    /// The runtime is alive and still working.
    Heartbeat(Heartbeat),
    /// The runtime asks where to upload an artifact; answer with
    /// [`ArtifactUploadRequestEvent::respond`].
    ArtifactUploadRequest(ArtifactUploadRequestEvent),
    /// The call's result; the stream ends after it.
    Result(T),
}

/// An artifact upload request together with the means to answer it.
///
/// The answer may be given from any task, at any time while the connection is open (the
/// runtime waits for it); dropping the event without answering leaves the file unuploaded.
///
/// The runtime may end the request right after asking: the call then holds back its
/// [`Event::Result`] (and keeps a one-shot connection open) until every upload request it
/// handed out has been answered or dropped, for at most the call's
/// `artifact_upload_callback_timeout` (30 s without one). So answer, or drop, the event
/// before waiting for the result.
#[derive(Debug)]
pub struct ArtifactUploadRequestEvent {
    request: ArtifactUploadRequest,
    outbox: mpsc::UnboundedSender<ClientMessage>,
    /// Released after the answer is queued, or when the event is dropped.
    _unanswered: TaskTrackerToken,
}

impl ArtifactUploadRequestEvent {
    pub(crate) fn new(
        request: ArtifactUploadRequest,
        outbox: mpsc::UnboundedSender<ClientMessage>,
        unanswered: TaskTrackerToken,
    ) -> Self {
        Self {
            request,
            outbox,
            _unanswered: unanswered,
        }
    }

    /// The request (file name and absolute path in the sandbox).
    pub fn request(&self) -> &ArtifactUploadRequest {
        &self.request
    }

    /// Tells the runtime to `PUT` the file to `result.presigned_url`.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] when the connection is gone.
    pub fn respond(self, result: ArtifactUploadResult) -> Result<(), Error> {
        let response = ClientMessage::ArtifactUploadResponseMessage(ArtifactUploadResponse {
            filename: self.request.filename,
            filepath: self.request.filepath,
            presigned_url: result.presigned_url,
            content_type: result.content_type,
        });
        self.outbox
            .send(response)
            .map_err(|_| Error::ConnectionClosed {
                reason: "the connection is gone; the upload answer was not sent".into(),
            })
    }
}

/// Keeps the producing side alive while the stream is, and stops it when the stream is
/// dropped: a one-shot call's task is aborted (closing its connection), a session call is
/// cancelled (so the session stays usable).
pub(crate) struct StreamGuard {
    _task: Option<AbortOnDropHandle<()>>,
    _cancel: Option<DropGuard>,
}

impl StreamGuard {
    pub(crate) fn task(task: tokio::task::JoinHandle<()>) -> Self {
        Self {
            _task: Some(AbortOnDropHandle::new(task)),
            _cancel: None,
        }
    }

    pub(crate) fn cancel(guard: DropGuard) -> Self {
        Self {
            _task: None,
            _cancel: Some(guard),
        }
    }
}

/// A stream of [`Event`]s ending with [`Event::Result`] or one `Err`.
///
/// Dropping it early stops the call.
///
/// ```no_run
/// # async fn demo() -> Result<(), runtimeuse_client::Error> {
/// use futures_util::StreamExt;
/// use runtimeuse_client::{Event, QueryOptions, RuntimeUseClient};
///
/// let client = RuntimeUseClient::new("ws://127.0.0.1:8080");
/// let mut events = client.query_stream("STREAM:3", QueryOptions::new("", "echo"));
/// while let Some(event) = events.next().await {
///     match event? {
///         Event::AssistantMessage(msg) => println!("{}", msg.text_blocks.join("\n")),
///         Event::Result(result) => println!("result: {:?}", result.data),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct EventStream<T> {
    rx: mpsc::Receiver<Result<Event<T>, Error>>,
    _guard: StreamGuard,
}

impl<T> EventStream<T> {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Event<T>, Error>>, guard: StreamGuard) -> Self {
        Self { rx, _guard: guard }
    }
}

impl<T> Stream for EventStream<T> {
    type Item = Result<Event<T>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

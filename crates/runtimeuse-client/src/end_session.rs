//! Ending a session: `end_session_message`, then the late artifact upload requests, until
//! the runtime's confirm.

use std::time::Duration;

use runtimeuse_protocol::{ArtifactUploadResponse, ClientMessage, Incoming, ServerMessage};

use crate::callbacks::OnArtifactUploadRequest;
use crate::connection::Connection;
use crate::{Error, TimeoutKind};

/// The error of a close that did not complete within `timeout`.
pub(crate) fn end_session_timeout(timeout: Duration) -> Error {
    Error::Timeout {
        kind: TimeoutKind::EndSession,
        after: timeout,
        last_message_type: None,
        message_count: 0,
    }
}

/// Sends `end_session_message` and answers late artifact requests until the confirm (the
/// caller bounds it).
pub(crate) async fn end_session(
    conn: &mut Connection,
    callback: Option<OnArtifactUploadRequest>,
) -> Result<(), Error> {
    if conn.is_closed() {
        return Ok(());
    }
    conn.flush_outbox().await?;
    conn.send(&ClientMessage::EndSessionMessage).await?;
    loop {
        conn.flush_outbox().await?;
        let message = match conn.recv().await {
            Ok(Incoming::Message(message)) => message,
            Ok(Incoming::Unknown { message_type }) => {
                tracing::warn!(%message_type, "ignoring a message of unknown type");
                continue;
            }
            Err(Error::Protocol(e)) => {
                tracing::warn!("while ending the session: {e}");
                continue;
            }
            Err(Error::ConnectionClosed { reason }) => {
                tracing::warn!("connection closed before end_session_confirm_message: {reason}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match message {
            ServerMessage::EndSessionConfirmMessage => return Ok(()),
            ServerMessage::ArtifactUploadRequestMessage(request) => {
                let Some(callback) = &callback else {
                    tracing::warn!(filename = %request.filename, "late artifact upload request but no upload callback");
                    continue;
                };
                match callback(request.clone()).await {
                    Ok(target) => {
                        let response = ArtifactUploadResponse {
                            filename: request.filename,
                            filepath: request.filepath,
                            presigned_url: target.presigned_url,
                            content_type: target.content_type,
                        };
                        conn.send(&ClientMessage::ArtifactUploadResponseMessage(response))
                            .await?;
                    }
                    Err(e) => tracing::warn!(
                        "artifact upload callback failed while ending the session: {e}"
                    ),
                }
            }
            other => tracing::debug!(
                message_type = other.message_type(),
                "ignored while ending the session"
            ),
        }
    }
}

//! Reading one of a command's pipes: streaming it as text, capturing its first bytes.

use std::io;
use std::time::Duration;

use runtimeuse_protocol::{CommandOutput, OutputStream, ServerMessage};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::redact::StreamRedactor;

/// Largest read from a pipe, hence largest `command_output_message` text (before redaction).
const READ_CHUNK: usize = 64 * 1024;

/// Longest UTF-8 sequence minus one: the most bytes an unfinished char can hold back.
const MAX_CARRY: usize = 3;

/// What every pump of one command shares.
pub(super) struct PumpContext<'a> {
    /// Where the chunks go.
    pub outbox: &'a Outbox,
    /// The command string, repeated in every chunk.
    pub command: &'a str,
    /// Bytes kept per stream for the result.
    pub capture_limit: usize,
    /// How long to keep reading once the shell has exited (see [`pump`]).
    pub drain_after_exit: Duration,
    /// Cancelled once the shell has exited (or been killed).
    pub exited: &'a CancellationToken,
}

/// The first bytes of a stream's redacted text.
///
/// What is captured is what was streamed: text after redaction, so that the cut at the
/// limit can never leave the first half of a secret that the redactor would only have
/// recognised whole.
#[derive(Debug, Default)]
pub(super) struct Captured {
    /// At most `capture_limit` bytes, cut at a char boundary.
    pub text: String,
    /// Whether the stream was longer.
    pub truncated: bool,
}

impl Captured {
    fn extend(&mut self, text: &str, limit: usize) {
        if self.truncated {
            return;
        }
        let room = limit.saturating_sub(self.text.len());
        if text.len() <= room {
            self.text.push_str(text);
            return;
        }
        self.truncated = true;
        // A char cut in half by the limit is dropped rather than replaced.
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.text.push_str(&text[..cut]);
    }

    /// The captured text.
    pub(super) fn into_text(self) -> String {
        self.text
    }
}

/// Reads `reader` to its end, sending each chunk as a `command_output_message` and
/// capturing the first `capture_limit` bytes.
///
/// Sending waits for room in the outbox, so a slow client slows the command down through
/// its pipe instead of growing memory. Once the outbox is closed, output is still read (and
/// dropped) so the command never blocks on a full pipe.
///
/// After the shell exits, a background process may hold the pipe open indefinitely: reading
/// then stops `drain_after_exit` later. Time spent waiting for the outbox does not count, so
/// output the shell wrote before exiting is not lost to a slow client.
pub(super) async fn pump<R>(
    mut reader: R,
    stream: OutputStream,
    cx: &PumpContext<'_>,
) -> io::Result<Captured>
where
    R: AsyncRead + Unpin,
{
    let mut sink = Sink {
        stream,
        cx,
        redactor: Some(cx.outbox.redactor())
            .filter(|redactor| !redactor.is_empty())
            .map(StreamRedactor::new),
        closed: false,
        captured: Captured::default(),
    };
    // The bytes of a char split across reads stay at the front of the buffer.
    let mut buf = vec![0_u8; READ_CHUNK + MAX_CARRY];
    let mut carry = 0;
    let mut drain_deadline: Option<Instant> = None;
    let mut held_open = false;
    loop {
        if drain_deadline.is_none() && cx.exited.is_cancelled() {
            drain_deadline = Some(Instant::now() + cx.drain_after_exit);
        }
        let target = &mut buf[carry..carry + READ_CHUNK];
        let read = match drain_deadline {
            None => tokio::select! {
                biased;
                read = reader.read(target) => read,
                () = cx.exited.cancelled() => continue,
            },
            Some(deadline) if Instant::now() >= deadline => {
                held_open = true;
                break;
            }
            Some(deadline) => {
                if let Ok(read) = timeout_at(deadline, reader.read(target)).await {
                    read
                } else {
                    held_open = true;
                    break;
                }
            }
        };
        let n = read?;
        if n == 0 {
            break;
        }
        let end = carry + n;
        let mut text = String::with_capacity(end);
        let incomplete = decode_utf8(&buf[..end], &mut text);
        buf.copy_within(end - incomplete..end, 0);
        carry = incomplete;

        let sending = Instant::now();
        sink.emit(text).await;
        if let Some(deadline) = drain_deadline.as_mut() {
            *deadline += sending.elapsed();
        }
    }
    if held_open {
        tracing::debug!(
            ?stream,
            "stopped reading a pipe held open after the shell exited"
        );
    }
    if carry > 0 {
        sink.emit(char::REPLACEMENT_CHARACTER.to_string()).await;
    }
    sink.finish().await;
    Ok(sink.captured)
}

/// Redacts, captures and sends the text of one stream.
struct Sink<'a> {
    stream: OutputStream,
    cx: &'a PumpContext<'a>,
    /// `None` when there are no secrets, to spare a copy of every chunk.
    redactor: Option<StreamRedactor>,
    closed: bool,
    captured: Captured,
}

impl Sink<'_> {
    async fn emit(&mut self, text: String) {
        if text.is_empty() {
            return;
        }
        let safe = match &mut self.redactor {
            Some(redactor) => redactor.push(&text),
            None => text,
        };
        self.send(safe).await;
    }

    async fn finish(&mut self) {
        if let Some(rest) = self.redactor.as_mut().map(StreamRedactor::finish) {
            self.send(rest).await;
        }
    }

    /// Captures `text` (already redacted) and sends it unless the client is gone.
    async fn send(&mut self, text: String) {
        self.captured.extend(&text, self.cx.capture_limit);
        if self.closed || text.is_empty() {
            return;
        }
        let message = ServerMessage::CommandOutputMessage(CommandOutput {
            stream: self.stream,
            text,
            command: self.cx.command.to_owned(),
        });
        if self.cx.outbox.send(message).await.is_err() {
            tracing::debug!(stream = ?self.stream, "client gone; discarding command output");
            self.closed = true;
        }
    }
}

/// Appends `bytes` to `out` as text, invalid sequences becoming U+FFFD. Returns how many
/// trailing bytes were left out because they start a char that may be completed by the
/// next read.
fn decode_utf8(bytes: &[u8], out: &mut String) -> usize {
    // Fast path: nearly all output is valid UTF-8, and the SIMD-accelerated check of the
    // standard library is much faster than walking the bytes chunk by chunk.
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            out.push_str(text);
            return 0;
        }
        Err(e) if e.error_len().is_none() => {
            // Valid up to an unfinished char at the very end: hold those bytes back.
            let valid = e.valid_up_to();
            out.push_str(std::str::from_utf8(&bytes[..valid]).unwrap_or_default());
            return bytes.len() - valid;
        }
        Err(_) => {}
    }
    let mut chunks = bytes.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        out.push_str(chunk.valid());
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        let unfinished = matches!(std::str::from_utf8(invalid), Err(e) if e.error_len().is_none());
        if chunks.peek().is_none() && unfinished {
            return invalid.len();
        }
        out.push(char::REPLACEMENT_CHARACTER);
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (String, usize) {
        let mut out = String::new();
        let kept = decode_utf8(bytes, &mut out);
        (out, kept)
    }

    #[test]
    fn unfinished_char_at_end_is_held_back() {
        assert_eq!(decode(b"ab\xE2\x82"), ("ab".to_owned(), 2));
        assert_eq!(decode(b"\xE2\x82\xAC!"), ("\u{20AC}!".to_owned(), 0));
    }

    #[test]
    fn invalid_bytes_become_replacement_chars() {
        assert_eq!(
            decode(b"\xFFok\xE2A"),
            ("\u{FFFD}ok\u{FFFD}A".to_owned(), 0)
        );
        assert_eq!(decode(b"ok\xC0"), ("ok\u{FFFD}".to_owned(), 0));
    }

    #[test]
    fn truncated_capture_drops_half_a_char() {
        let mut captured = Captured::default();
        captured.extend("a\u{20AC}", 3);
        assert!(captured.truncated);
        assert_eq!(captured.into_text(), "a");
    }
}

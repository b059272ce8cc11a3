//! Redacting a stream of text chunks in time linear in the text.
//!
//! Each chunk is scanned once by the Aho-Corasick matcher, together with a carry-over tail
//! shorter than the longest secret. Only the part of that tail that could still grow into
//! a secret is held back; finding it costs one backward pass over the tail with a rolling
//! hash looked up in the set of hashes of every proper prefix of every secret, however
//! many secrets there are and whatever their shape.

use std::collections::HashSet;

use super::Redactor;

/// Multiplier of the rolling hash (odd, so every power is invertible mod 2^64).
const BASE: u64 = 0x0100_0000_01b3;
/// Mixes the length into a hash so that equal-hash prefixes of other lengths differ.
const LEN_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

fn byte_value(b: u8) -> u64 {
    u64::from(b.to_ascii_lowercase()) + 1
}

fn keyed(hash: u64, len: usize) -> u64 {
    hash ^ (len as u64).wrapping_mul(LEN_MIX)
}

/// Hashes of every proper, non-empty prefix of `patterns`, case-insensitive like the
/// matcher. A collision with the output only holds text back a little longer, which is
/// always safe.
pub(super) fn prefix_hashes(patterns: &[String]) -> HashSet<u64> {
    let mut set = HashSet::new();
    for pattern in patterns {
        let bytes = pattern.as_bytes();
        let mut hash = 0u64;
        for (i, &b) in bytes.iter().enumerate().take(bytes.len().saturating_sub(1)) {
            hash = hash.wrapping_mul(BASE).wrapping_add(byte_value(b));
            set.insert(keyed(hash, i + 1));
        }
    }
    set
}

/// Redacts a stream of text chunks, correct when a secret is split across chunks.
///
/// Each [`push`](Self::push) returns the text that is safe to send now; the tail that
/// could still grow into a secret is held back until the next chunk or
/// [`finish`](Self::finish). The held tail is always shorter than the longest secret.
#[derive(Debug)]
pub struct StreamRedactor {
    redactor: Redactor,
    pending: String,
}

impl StreamRedactor {
    /// A stream redactor for these secrets.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            redactor,
            pending: String::new(),
        }
    }

    /// Feeds a chunk; returns the redacted text that can be emitted now (may be empty).
    pub fn push(&mut self, chunk: &str) -> String {
        if self.redactor.is_empty() {
            return chunk.to_owned();
        }
        self.pending.push_str(chunk);
        let buffer = std::mem::take(&mut self.pending);
        let (cut, spans) = self.settled(&buffer);
        self.pending = buffer[cut..].to_owned();
        self.redactor.replace_spans(&buffer[..cut], &spans)
    }

    /// Ends the stream; returns whatever was held back, redacted.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.redact(&rest)
    }

    /// Length of the prefix of `text` whose redaction no later text can change, and the
    /// matches inside it: it ends at the first position, not inside a match already
    /// decided, from which the rest of `text` is a proper prefix of some secret (a secret
    /// may still be completing there, possibly a longer one than a match found so far).
    fn settled(&self, text: &str) -> (usize, Vec<(usize, usize)>) {
        let Some(inner) = self.redactor.inner.as_ref() else {
            return (text.len(), Vec::new());
        };
        let mut spans = inner.match_spans(text);
        // Positions before the window can only start secrets that fit in `text`.
        let window = text.len().saturating_sub(inner.max_len.saturating_sub(1));
        let prefixes = inner.prefixes();
        // could_grow[i]: text[window + i..] may be a proper prefix of a secret.
        let mut could_grow = vec![false; text.len() - window];
        let bytes = text.as_bytes();
        let (mut hash, mut power) = (0u64, 1u64);
        for p in (window..text.len()).rev() {
            hash = hash.wrapping_add(byte_value(bytes[p]).wrapping_mul(power));
            power = power.wrapping_mul(BASE);
            could_grow[p - window] = prefixes.contains(&keyed(hash, text.len() - p));
        }
        let mut covered = 0;
        let mut next = 0;
        for p in window..text.len() {
            while next < spans.len() && spans[next].0 < p {
                covered = covered.max(spans[next].1);
                next += 1;
            }
            if p >= covered && text.is_char_boundary(p) && could_grow[p - window] {
                spans.truncate(next);
                return (p, spans);
            }
        }
        (text.len(), spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(secrets: &[&str], pieces: &[&str]) -> String {
        let mut s = StreamRedactor::new(Redactor::new(secrets));
        let mut out: String = pieces.iter().map(|p| s.push(p)).collect();
        out.push_str(&s.finish());
        out
    }

    #[test]
    fn stream_redacts_secret_split_across_chunks() {
        let mut s = StreamRedactor::new(Redactor::new(["SECRET123"]));
        let mut out = s.push("hello SEC");
        assert_eq!(out, "hello ");
        out.push_str(&s.push("RET123 world"));
        out.push_str(&s.finish());
        assert_eq!(out, "hello [REDACTED] world");
    }

    #[test]
    fn stream_waits_when_a_longer_secret_may_extend_a_complete_one() {
        let secrets = ["tok-123", "tok-123-SECRETPART"];
        assert_eq!(
            streamed(&secrets, &["key=tok-123", "-SECRETPART end"]),
            "key=[REDACTED] end"
        );
        let text = "a tok-123 b tok-123-SECRETPART c tok-123-SECRET d";
        let whole = Redactor::new(secrets).redact(text);
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let pieces = [&text[..a], &text[a..b], &text[b..]];
                assert_eq!(streamed(&secrets, &pieces), whole, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn text_that_cannot_become_a_secret_is_not_held() {
        let mut s = StreamRedactor::new(Redactor::new(["SECRET"]));
        assert_eq!(s.push("progress: 42%"), "progress: 42%");
        assert_eq!(s.push(" SECRET done"), " [REDACTED] done");
    }

    #[test]
    fn stream_flushes_held_tail_at_end() {
        let mut s = StreamRedactor::new(Redactor::new(["SECRET"]));
        assert_eq!(s.push("abc SEC"), "abc ");
        assert_eq!(s.finish(), "SEC");
    }

    #[test]
    fn stream_split_at_every_position_never_leaks() {
        let secret = "p@ss-wörd-42";
        let text = format!("start {secret} middle {secret}{secret} end");
        for a in 0..=text.len() {
            for b in a..=text.len() {
                if !(text.is_char_boundary(a) && text.is_char_boundary(b)) {
                    continue;
                }
                let pieces = [&text[..a], &text[a..b], &text[b..]];
                assert_eq!(
                    streamed(&[secret], &pieces),
                    "start [REDACTED] middle [REDACTED][REDACTED] end",
                    "split at {a},{b}"
                );
            }
        }
    }

    #[test]
    fn a_secret_in_another_case_split_across_chunks_is_redacted() {
        assert_eq!(
            streamed(&["Secret.Host"], &["connect to secret.", "host failed"]),
            "connect to [REDACTED] failed"
        );
    }

    #[test]
    fn empty_redactor_passes_through() {
        let mut s = StreamRedactor::new(Redactor::default());
        assert_eq!(s.push("abc"), "abc");
        assert_eq!(s.finish(), "");
    }
}

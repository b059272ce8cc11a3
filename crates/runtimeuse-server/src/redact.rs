//! Secret redaction: whole strings, JSON values, and streams cut into chunks.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// What every secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces every occurrence of a set of secrets with [`REDACTED`].
///
/// Cheap to clone (the matcher is shared). An empty set redacts nothing.
///
/// ```
/// use runtimeuse_server::redact::Redactor;
/// let r = Redactor::new(["hunter2"]);
/// assert_eq!(r.redact("pw=hunter2"), "pw=[REDACTED]");
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// `None` only if the automaton could not be built (absurdly many or long secrets);
    /// then secrets are replaced one by one, which is slower but never skips one.
    matcher: Option<AhoCorasick>,
    secrets: Vec<String>,
}

impl Inner {
    fn is_match(&self, text: &str) -> bool {
        match &self.matcher {
            Some(m) => m.is_match(text),
            None => self.secrets.iter().any(|s| text.contains(s.as_str())),
        }
    }

    fn replace_all(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(text, &vec![REDACTED; self.secrets.len()]),
            None => {
                let mut sorted: Vec<&String> = self.secrets.iter().collect();
                sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
                sorted
                    .into_iter()
                    .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), REDACTED))
            }
        }
    }

    /// Start and end of every match, leftmost-longest, in order.
    fn match_spans(&self, text: &str) -> Vec<(usize, usize)> {
        match &self.matcher {
            Some(m) => m.find_iter(text).map(|m| (m.start(), m.end())).collect(),
            None => {
                let mut spans = Vec::new();
                let mut i = 0;
                while i < text.len() {
                    let longest = self
                        .secrets
                        .iter()
                        .filter(|s| text[i..].starts_with(s.as_str()))
                        .map(String::len)
                        .max();
                    match longest {
                        Some(len) => {
                            spans.push((i, i + len));
                            i += len;
                        }
                        None => i += text[i..].chars().next().map_or(1, char::len_utf8),
                    }
                }
                spans
            }
        }
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Redactor")
            .field("secrets", &self.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor for these secrets; empty strings are ignored.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut seen = std::collections::HashSet::new();
        let mut list: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if !secret.is_empty() && seen.insert(secret.to_owned()) {
                list.push(secret.to_owned());
            }
        }
        if list.is_empty() {
            return Self::default();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&list)
            .ok();
        Self {
            inner: Some(Arc::new(Inner {
                matcher,
                secrets: list,
            })),
        }
    }

    /// A redactor for the secrets of both `self` and `other`. Cheap when `other` adds
    /// nothing new (the common case of a session repeating its secrets).
    pub fn union(&self, other: &Redactor) -> Self {
        let known: std::collections::HashSet<&str> =
            self.secrets().iter().map(String::as_str).collect();
        if other.secrets().iter().all(|s| known.contains(s.as_str())) {
            return self.clone();
        }
        Self::new(self.secrets().iter().chain(other.secrets()))
    }

    /// The secrets, in insertion order.
    pub fn secrets(&self) -> &[String] {
        self.inner.as_ref().map_or(&[], |i| i.secrets.as_slice())
    }

    /// Number of distinct secrets.
    pub fn len(&self) -> usize {
        self.secrets().len()
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Length in bytes of the longest secret.
    pub fn max_secret_len(&self) -> usize {
        self.secrets().iter().map(String::len).max().unwrap_or(0)
    }

    /// `text` with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        match &self.inner {
            Some(inner) if inner.is_match(text) => inner.replace_all(text),
            _ => text.to_owned(),
        }
    }

    /// Redacts `text` in place, allocating only when a secret is present.
    pub fn redact_in_place(&self, text: &mut String) {
        if let Some(inner) = &self.inner
            && inner.is_match(text.as_str())
        {
            *text = inner.replace_all(text);
        }
    }

    /// Redacts every string (and object key) inside a JSON value.
    pub fn redact_json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.redact_in_place(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let needs_key_change = map.keys().any(|k| self.redact(k) != *k);
                if needs_key_change {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        map.insert(self.redact(&k), v);
                    }
                }
                map.values_mut().for_each(|v| self.redact_json(v));
            }
            _ => {}
        }
    }

    /// Whether `tail` is a proper prefix of some secret, i.e. more text could complete a
    /// secret starting here.
    fn completes_later(&self, tail: &str) -> bool {
        self.secrets()
            .iter()
            .any(|s| s.len() > tail.len() && s.starts_with(tail))
    }
}

/// Redacts a stream of text chunks, correct when a secret is split across chunks.
///
/// Each [`push`](Self::push) returns the text that is safe to send now; the tail that
/// could still grow into a secret is held back until the next chunk or [`finish`](Self::finish).
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
        let cut = self.settled_len(&buffer);
        self.pending = buffer[cut..].to_owned();
        self.redactor.redact(&buffer[..cut])
    }

    /// Ends the stream; returns whatever was held back, redacted.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.redact(&rest)
    }

    /// Length of the prefix of `text` whose redaction no later text can change: it ends at
    /// the first position, not inside a match already decided, from which the rest of
    /// `text` is a proper prefix of some secret (a secret may still be completing there,
    /// possibly a longer one than a match found so far).
    fn settled_len(&self, text: &str) -> usize {
        let Some(inner) = self.redactor.inner.as_ref() else {
            return text.len();
        };
        let spans = inner.match_spans(text);
        // Positions before the window can only start secrets that fit in `text`.
        let longest = self.redactor.max_secret_len();
        let window = text.len().saturating_sub(longest.saturating_sub(1));
        let mut covered = 0;
        let mut next = 0;
        for p in window..text.len() {
            while next < spans.len() && spans[next].0 < p {
                covered = covered.max(spans[next].1);
                next += 1;
            }
            if p < covered || !text.is_char_boundary(p) {
                continue;
            }
            if self.redactor.completes_later(&text[p..]) {
                return p;
            }
        }
        text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_occurrence_and_overlapping_secrets_longest_first() {
        let r = Redactor::new(["abc", "abcdef", ""]);
        assert_eq!(r.redact("xabcdefy abc"), "x[REDACTED]y [REDACTED]");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let r = Redactor::new(["tok"]);
        let mut v = serde_json::json!({"a": ["my tok", 1], "tok": {"b": "tok"}});
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["my [REDACTED]", 1], "[REDACTED]": {"b": "[REDACTED]"}})
        );
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
        let mut s = StreamRedactor::new(Redactor::new(secrets));
        let mut out = s.push("key=tok-123");
        out.push_str(&s.push("-SECRETPART end"));
        out.push_str(&s.finish());
        assert_eq!(out, "key=[REDACTED] end");

        let text = "a tok-123 b tok-123-SECRETPART c tok-123-SECRET d";
        let whole = Redactor::new(secrets).redact(text);
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let mut s = StreamRedactor::new(Redactor::new(secrets));
                let mut out = s.push(&text[..a]);
                out.push_str(&s.push(&text[a..b]));
                out.push_str(&s.push(&text[b..]));
                out.push_str(&s.finish());
                assert_eq!(out, whole, "split at {a},{b}");
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
    fn union_with_known_secrets_keeps_the_same_matcher() {
        let a = Redactor::new(["one", "two"]);
        let b = a.union(&Redactor::new(["two"]));
        assert!(Arc::ptr_eq(
            a.inner.as_ref().unwrap(),
            b.inner.as_ref().unwrap()
        ));
        assert_eq!(a.union(&Redactor::new(["three"])).len(), 3);
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
                let mut s = StreamRedactor::new(Redactor::new([secret]));
                let mut out = s.push(&text[..a]);
                out.push_str(&s.push(&text[a..b]));
                out.push_str(&s.push(&text[b..]));
                out.push_str(&s.finish());
                assert_eq!(
                    out, "start [REDACTED] middle [REDACTED][REDACTED] end",
                    "split at {a},{b}"
                );
            }
        }
    }

    #[test]
    fn empty_redactor_passes_through() {
        let mut s = StreamRedactor::new(Redactor::default());
        assert_eq!(s.push("abc"), "abc");
        assert_eq!(s.finish(), "");
    }
}

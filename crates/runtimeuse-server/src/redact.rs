//! Secret redaction: whole strings, JSON values, and streams cut into chunks.
//!
//! A secret is matched ASCII case-insensitively (URL hosts and schemes come back
//! lower-cased) and in the other forms it takes through URLs and error texts (see
//! [`forms`]). Matching is one Aho-Corasick pass, linear in the text whatever the number
//! of secrets.

mod forms;
mod stream;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

pub use stream::StreamRedactor;

/// What every secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces every occurrence of a set of secrets, in any of their forms, with [`REDACTED`].
///
/// Cheap to clone (the matcher is shared). An empty set redacts nothing.
///
/// ```
/// use runtimeuse_server::redact::Redactor;
/// let r = Redactor::new(["hunter2", "Secret.Host"]);
/// assert_eq!(r.redact("pw=hunter2"), "pw=[REDACTED]");
/// assert_eq!(r.redact("no route to secret.host"), "no route to [REDACTED]");
/// assert_eq!(r.redact("/a/hunter2%20x"), "/a/[REDACTED]%20x");
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// `None` only if the automaton could not be built (absurdly many or long secrets);
    /// then patterns are replaced one by one, which is slower but never skips one.
    matcher: Option<AhoCorasick>,
    /// The secrets as given, in insertion order.
    secrets: Vec<String>,
    /// Every form of every secret: what is matched.
    patterns: Vec<String>,
    /// Length of the longest pattern.
    max_len: usize,
    /// Hashes of the patterns' proper prefixes, built the first time a stream needs them.
    prefixes: OnceLock<HashSet<u64>>,
}

impl Inner {
    fn prefixes(&self) -> &HashSet<u64> {
        self.prefixes
            .get_or_init(|| stream::prefix_hashes(&self.patterns))
    }

    fn is_match(&self, text: &str) -> bool {
        match &self.matcher {
            Some(m) => m.is_match(text),
            None => self.patterns.iter().any(|s| text.contains(s.as_str())),
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
                        .patterns
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
        let mut seen = HashSet::new();
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
        let mut known = HashSet::new();
        let patterns: Vec<String> = list
            .iter()
            .flat_map(|s| forms::forms(s))
            .filter(|form| known.insert(form.to_ascii_lowercase()))
            .collect();
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&patterns)
            .ok();
        Self {
            inner: Some(Arc::new(Inner {
                matcher,
                max_len: patterns.iter().map(String::len).max().unwrap_or(0),
                secrets: list,
                patterns,
                prefixes: OnceLock::new(),
            })),
        }
    }

    /// A redactor for the secrets of both `self` and `other`. Cheap when `other` adds
    /// nothing new (the common case of a session repeating its secrets).
    pub fn union(&self, other: &Redactor) -> Self {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let known: HashSet<&str> = self.secrets().iter().map(String::as_str).collect();
        if other.secrets().iter().all(|s| known.contains(s.as_str())) {
            return self.clone();
        }
        Self::new(self.secrets().iter().chain(other.secrets()))
    }

    /// The secrets as given, in insertion order (not their derived forms).
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

    /// Length in bytes of the longest text redacted as one match (a secret or one of its
    /// forms).
    pub fn max_secret_len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.max_len)
    }

    /// Whether `text` holds a secret.
    pub fn is_match(&self, text: &str) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_match(text))
    }

    /// `text` with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        match &self.inner {
            Some(inner) => self.replace_spans(text, &inner.match_spans(text)),
            None => text.to_owned(),
        }
    }

    /// `text` with the byte ranges `spans` (ordered, disjoint) replaced by [`REDACTED`].
    fn replace_spans(&self, text: &str, spans: &[(usize, usize)]) -> String {
        if spans.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + spans.len() * REDACTED.len());
        let mut at = 0;
        for &(start, end) in spans {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Redacts `text` in place, allocating only when a secret is present.
    pub fn redact_in_place(&self, text: &mut String) {
        if self.is_match(text.as_str()) {
            *text = self.redact(text);
        }
    }

    /// Redacts every string (and object key) inside a JSON value: for free-form content
    /// such as structured output and metadata, never for a whole protocol message (see
    /// [`crate::outbox`], which redacts a message's values and keeps its keys and tags).
    pub fn redact_json(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.redact_in_place(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                if map.keys().any(|k| self.is_match(k)) {
                    let old = std::mem::take(map);
                    for (k, v) in old {
                        let mut key = self.redact(&k);
                        // Two keys redacted alike must not overwrite each other's values.
                        let mut n = 1;
                        while map.contains_key(&key) {
                            n += 1;
                            key = format!("{}#{n}", self.redact(&k));
                        }
                        map.insert(key, v);
                    }
                }
                map.values_mut().for_each(|v| self.redact_json(v));
            }
            _ => {}
        }
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
    fn json_strings_and_keys_are_redacted_without_losing_values() {
        let r = Redactor::new(["tok"]);
        let mut v = serde_json::json!({"a": ["my tok", 1], "tok": {"b": "tok"}, "TOK": 2});
        r.redact_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["my [REDACTED]", 1], "[REDACTED]": 2, "[REDACTED]#2": {"b": "[REDACTED]"}})
        );
    }

    #[test]
    fn a_secret_is_redacted_in_any_ascii_case_and_in_its_url_forms() {
        let r = Redactor::new(["Secret-Host.Example", "pass word"]);
        assert_eq!(
            r.redact("could not connect to secret-host.example:443"),
            "could not connect to [REDACTED]:443"
        );
        assert_eq!(
            r.redact("/files/pass%20word and ?q=pass+word"),
            "/files/[REDACTED] and ?q=[REDACTED]"
        );
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
}

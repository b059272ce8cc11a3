//! Sequence numbers on frames: numbering ours and keeping them until the runtime has them,
//! dropping the runtime's that we already had.

use std::collections::VecDeque;

use runtimeuse_protocol::resume::with_seq;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What to do with a runtime frame, judged by its `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The next frame: deliver it.
    New,
    /// Already delivered (a replayed frame we had): drop it.
    Duplicate,
    /// Frames are missing before this one: the runtime broke the contract.
    Gap {
        /// The `seq` that should have come.
        expected: u64,
    },
    /// No `seq` at all: deliver it as it is, it cannot be replayed.
    Unnumbered,
}

/// The runtime's frames received so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    last: u64,
}

impl Received {
    /// The `seq` of the last frame delivered (0: none).
    pub fn last(self) -> u64 {
        self.last
    }

    /// Judges a frame and, when it is the next one, counts it as received.
    pub fn admit(&mut self, seq: Option<u64>) -> Verdict {
        let Some(seq) = seq else {
            return Verdict::Unnumbered;
        };
        if seq <= self.last {
            Verdict::Duplicate
        } else if seq == self.last + 1 {
            self.last = seq;
            Verdict::New
        } else {
            Verdict::Gap {
                expected: self.last + 1,
            }
        }
    }
}

/// Our frames, numbered, kept until the runtime shows it has them.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    last: u64,
    /// The highest `seq` the runtime has shown it holds.
    confirmed: u64,
    kept: VecDeque<(u64, Utf8Bytes)>,
}

impl Sent {
    /// Numbers `frame` with the next `seq` and keeps it; returns what goes on the wire.
    /// A frame that is not a JSON object goes out unnumbered and is not kept.
    pub fn push(&mut self, frame: String) -> Utf8Bytes {
        if !frame.trim_start().starts_with('{') {
            return Utf8Bytes::from(frame);
        }
        self.last += 1;
        let numbered = Utf8Bytes::from(with_seq(&frame, self.last));
        self.kept.push_back((self.last, numbered.clone()));
        numbered
    }

    /// The `seq` of the last frame numbered (0: none).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The runtime has every frame up to `seq`: forget them. `false` when `seq` is beyond
    /// anything sent (the runtime claims frames that never existed).
    pub fn confirm(&mut self, seq: u64) -> bool {
        if seq > self.last {
            return false;
        }
        self.confirmed = self.confirmed.max(seq);
        while self.kept.front().is_some_and(|(kept, _)| *kept <= seq) {
            self.kept.pop_front();
        }
        true
    }

    /// The highest `seq` confirmed so far: frames up to it are no longer kept.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// The frames the runtime may not have, oldest first.
    pub fn unconfirmed(&self) -> impl Iterator<Item = &Utf8Bytes> {
        self.kept.iter().map(|(_, frame)| frame)
    }

    /// How many frames are kept.
    pub fn kept(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_gaps_reported() {
        let mut received = Received::default();
        assert_eq!(received.admit(Some(1)), Verdict::New);
        assert_eq!(received.admit(Some(2)), Verdict::New);
        // A replay after a resume starts again below what we had.
        assert_eq!(received.admit(Some(1)), Verdict::Duplicate);
        assert_eq!(received.admit(Some(2)), Verdict::Duplicate);
        assert_eq!(received.admit(Some(3)), Verdict::New);
        assert_eq!(received.admit(None), Verdict::Unnumbered);
        assert_eq!(received.admit(Some(5)), Verdict::Gap { expected: 4 });
        assert_eq!(received.last(), 3);
        assert_eq!(received.admit(Some(4)), Verdict::New);
        assert_eq!(received.last(), 4);
    }

    #[test]
    fn sent_frames_are_kept_until_confirmed() {
        let mut sent = Sent::default();
        for i in 0..4 {
            let wire = sent.push(format!(r#"{{"message_type":"m{i}"}}"#));
            assert!(wire.as_str().starts_with(&format!(r#"{{"seq":{}"#, i + 1)));
        }
        assert_eq!(sent.last(), 4);
        assert!(sent.confirm(2));
        let left: Vec<&str> = sent.unconfirmed().map(Utf8Bytes::as_str).collect();
        assert_eq!(
            left,
            [
                r#"{"seq":3,"message_type":"m2"}"#,
                r#"{"seq":4,"message_type":"m3"}"#
            ]
        );
        assert!(sent.confirm(2), "confirming again changes nothing");
        assert!(sent.confirm(1), "nor does confirming less");
        assert_eq!(sent.confirmed(), 2);
        assert_eq!(sent.kept(), 2);
        assert!(
            !sent.confirm(5),
            "the runtime cannot have more than was sent"
        );
        assert!(sent.confirm(4));
        assert_eq!(sent.kept(), 0);
        // Not an object: out as it is, not numbered, not kept.
        assert_eq!(sent.push("[]".into()).as_str(), "[]");
        assert_eq!(sent.last(), 4);
    }
}

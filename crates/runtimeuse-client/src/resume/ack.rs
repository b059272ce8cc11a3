//! When to acknowledge the runtime's frames: at least every [`ACK_EVERY_FRAMES`] frames or
//! [`ACK_EVERY_BYTES`] bytes, and at most [`ACK_DELAY`] after a frame came in (the
//! contract asks for 256 frames, 1 MiB and 200 ms).

use std::time::Duration;

use tokio::time::Instant;

/// Frames received after which an acknowledgement goes out at once.
pub(crate) const ACK_EVERY_FRAMES: u32 = 256;
/// Bytes received after which an acknowledgement goes out at once.
pub(crate) const ACK_EVERY_BYTES: usize = 1 << 20;
/// The longest a received frame waits for its acknowledgement.
pub(crate) const ACK_DELAY: Duration = Duration::from_millis(100);

/// The acknowledgement state of the runtime's frames.
#[derive(Debug, Default, Clone)]
pub(crate) struct AckPolicy {
    /// The `seq` of the last frame received.
    received: u64,
    /// The `seq` last acknowledged (by an ack or by a resume's `last_seq`).
    acked: u64,
    frames: u32,
    bytes: usize,
    /// When the oldest unacknowledged frame must be acknowledged by.
    due: Option<Instant>,
}

impl AckPolicy {
    /// Notes frame `seq` of `len` bytes, received at `now`; whether to ack at once.
    pub fn on_frame(&mut self, seq: u64, len: usize, now: Instant) -> bool {
        self.received = self.received.max(seq);
        self.frames += 1;
        self.bytes = self.bytes.saturating_add(len);
        self.due.get_or_insert(now + ACK_DELAY);
        self.frames >= ACK_EVERY_FRAMES || self.bytes >= ACK_EVERY_BYTES
    }

    /// When an acknowledgement is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The `seq` to acknowledge now, if anything is unacknowledged; resets the counters.
    pub fn take(&mut self) -> Option<u64> {
        self.due = None;
        self.frames = 0;
        self.bytes = 0;
        (self.received > self.acked).then(|| {
            self.acked = self.received;
            self.received
        })
    }

    /// A resume told the runtime we hold everything up to `seq`: that counts as an ack.
    pub fn acked_by_resume(&mut self, seq: u64) {
        self.received = self.received.max(seq);
        self.acked = seq;
        if self.acked >= self.received {
            self.due = None;
            self.frames = 0;
            self.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_are_acked_after_a_delay_or_every_256() {
        let now = Instant::now();
        let mut policy = AckPolicy::default();
        assert_eq!(policy.due(), None);
        assert!(!policy.on_frame(1, 10, now));
        assert_eq!(policy.due(), Some(now + ACK_DELAY));
        // Later frames do not push the deadline back.
        assert!(!policy.on_frame(2, 10, now + Duration::from_millis(50)));
        assert_eq!(policy.due(), Some(now + ACK_DELAY));
        assert_eq!(policy.take(), Some(2));
        assert_eq!(policy.due(), None);
        assert_eq!(policy.take(), None, "nothing new to acknowledge");

        let mut at_once = Vec::new();
        for seq in 3..3 + 600 {
            if policy.on_frame(seq, 10, now) {
                at_once.push(policy.take().unwrap());
            }
        }
        assert_eq!(at_once, [258, 514]);
        assert_eq!(policy.take(), Some(602));
    }

    #[test]
    fn a_mebibyte_is_acked_at_once() {
        let now = Instant::now();
        let mut policy = AckPolicy::default();
        assert!(!policy.on_frame(1, ACK_EVERY_BYTES / 2, now));
        assert!(policy.on_frame(2, ACK_EVERY_BYTES / 2, now));
        assert_eq!(policy.take(), Some(2));
        assert!(
            policy.on_frame(3, ACK_EVERY_BYTES * 4, now),
            "one big frame"
        );
        assert_eq!(policy.take(), Some(3));
    }

    #[test]
    fn a_resume_counts_as_an_ack() {
        let now = Instant::now();
        let mut policy = AckPolicy::default();
        policy.on_frame(1, 10, now);
        policy.on_frame(2, 10, now);
        policy.acked_by_resume(2);
        assert_eq!(policy.due(), None);
        assert_eq!(policy.take(), None);
        policy.on_frame(3, 10, now);
        assert_eq!(policy.take(), Some(3));
    }
}

//! The replay buffer of a durable session: every frame the runtime sent, numbered, kept
//! until the client acknowledges it, bounded in bytes.
//!
//! Producers [`push`](Replay::push) frames (waiting while the buffer is full, which is
//! what back-pressures command output); a connection's writer reads them in order from any
//! point the client names with a [`Cursor`], as often as the client reconnects; acks free
//! them.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use runtimeuse_protocol::resume::with_seq;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The buffer no longer takes frames (the session expired or ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session's replay buffer is closed")]
pub(crate) struct ReplayClosed;

/// A client's position `N` cannot be replayed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot replay after frame {asked}: frames {acked_through} and before are gone, {last} is the last sent"
)]
pub(crate) struct ReplayUnavailable {
    /// What the client asked for.
    pub asked: u64,
    /// Frames up to here were acknowledged and freed.
    pub acked_through: u64,
    /// The last frame sent.
    pub last: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Unacknowledged frames; `frames[i]` has seq `acked + 1 + i`.
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
    /// Every frame up to this seq was acknowledged (and freed).
    acked: u64,
    /// No more frames will come (the session ended).
    finished: bool,
    /// Pushing fails from now on.
    closed: bool,
}

impl State {
    fn last(&self) -> u64 {
        self.acked + self.frames.len() as u64
    }
}

/// See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Replay {
    state: Mutex<State>,
    capacity: usize,
    /// A frame was pushed, or the buffer finished or closed.
    data: Notify,
    /// Room was freed, or the buffer closed.
    room: Notify,
    /// An ack arrived.
    acked: Notify,
}

impl Replay {
    /// A buffer holding at most `capacity` bytes of unacknowledged frames (one larger frame
    /// is admitted when the buffer is empty).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            data: Notify::new(),
            room: Notify::new(),
            acked: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers `frame` and keeps it, waiting while the buffer is full.
    pub async fn push(&self, frame: &str) -> Result<u64, ReplayClosed> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(ReplayClosed);
                }
                if state.frames.is_empty() || state.bytes + frame.len() <= self.capacity {
                    let seq = state.last() + 1;
                    let numbered = with_seq(frame, seq);
                    state.bytes += numbered.len();
                    state.frames.push_back(Utf8Bytes::from(numbered));
                    drop(state);
                    self.data.notify_waiters();
                    return Ok(seq);
                }
            }
            room.await;
        }
    }

    /// Frees every frame up to `seq`. Acks beyond the last frame sent are clamped.
    pub fn ack(&self, seq: u64) {
        let mut state = self.lock();
        let upto = seq.min(state.last());
        if upto <= state.acked {
            return;
        }
        while state.acked < upto {
            if let Some(frame) = state.frames.pop_front() {
                state.bytes -= frame.len();
            }
            state.acked += 1;
        }
        drop(state);
        self.room.notify_waiters();
        self.acked.notify_waiters();
    }

    /// No frame will be pushed anymore: readers end after the last one.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.data.notify_waiters();
    }

    /// Pushing fails from now on (waiting producers too); what is kept stays readable.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
        self.data.notify_waiters();
    }

    /// Whether the session finished and the client acknowledged every frame.
    pub fn fully_acked(&self) -> bool {
        let state = self.lock();
        state.finished && state.frames.is_empty()
    }

    /// Resolves once [`fully_acked`](Self::fully_acked) holds.
    pub async fn wait_fully_acked(&self) {
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if self.fully_acked() {
                return;
            }
            acked.await;
        }
    }

    /// Bytes of unacknowledged frames.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// A reader starting after frame `after` (what the client already has): valid when
    /// every later frame is still kept and `after` is not beyond the last frame sent.
    pub fn cursor(&self, after: u64) -> Result<Cursor, ReplayUnavailable> {
        let state = self.lock();
        if after < state.acked || after > state.last() {
            return Err(ReplayUnavailable {
                asked: after,
                acked_through: state.acked,
                last: state.last(),
            });
        }
        Ok(Cursor { sent: after })
    }

    /// The frame after `cursor`, waiting for it; `None` once the session finished and
    /// every frame was read (or, after a close, once what is kept was read).
    pub async fn next(&self, cursor: &mut Cursor) -> Option<Utf8Bytes> {
        loop {
            let data = self.data.notified();
            tokio::pin!(data);
            data.as_mut().enable();
            match self.try_next(cursor) {
                Next::Frame(frame) => return Some(frame),
                Next::End => return None,
                Next::Wait => data.await,
            }
        }
    }

    /// The frame after `cursor` if it is there now.
    pub fn try_next(&self, cursor: &mut Cursor) -> Next {
        let state = self.lock();
        if cursor.sent < state.acked {
            // Acked by another connection of the same client meanwhile: skip ahead.
            cursor.sent = state.acked;
        }
        let index = (cursor.sent - state.acked) as usize;
        match state.frames.get(index) {
            Some(frame) => {
                cursor.sent += 1;
                Next::Frame(frame.clone())
            }
            None if state.finished || state.closed => Next::End,
            None => Next::Wait,
        }
    }
}

/// What [`Replay::try_next`] found.
pub(crate) enum Next {
    /// The next frame.
    Frame(Utf8Bytes),
    /// Nothing will come anymore.
    End,
    /// Nothing yet.
    Wait,
}

/// A reader's position: the seq of the last frame it handed out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor {
    sent: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn seq_of(frame: &Utf8Bytes) -> u64 {
        runtimeuse_protocol::resume::frame_seq(frame.as_str())
            .unwrap()
            .seq
            .unwrap()
    }

    #[tokio::test]
    async fn frames_are_numbered_replayed_from_any_kept_point_and_freed_by_acks() {
        let replay = Replay::new(1 << 20);
        for i in 0..5 {
            let seq = replay
                .push(&format!(r#"{{"message_type":"m","i":{i}}}"#))
                .await
                .unwrap();
            assert_eq!(seq, i + 1);
        }
        let mut from_two = replay.cursor(2).unwrap();
        let seqs: Vec<u64> = (0..3)
            .map(|_| match replay.try_next(&mut from_two) {
                Next::Frame(frame) => seq_of(&frame),
                _ => panic!("frame expected"),
            })
            .collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert!(matches!(replay.try_next(&mut from_two), Next::Wait));
        replay.ack(3);
        assert!(replay.cursor(2).is_err(), "frames up to 3 are gone");
        assert!(replay.cursor(6).is_err(), "6 was never sent");
        let mut from_three = replay.cursor(3).unwrap();
        assert!(matches!(replay.try_next(&mut from_three), Next::Frame(f) if seq_of(&f) == 4));
        replay.ack(100);
        assert_eq!(replay.bytes(), 0);
        replay.finish();
        assert!(replay.fully_acked());
        assert!(matches!(replay.try_next(&mut from_three), Next::End));
    }

    #[tokio::test]
    async fn a_full_buffer_makes_producers_wait_until_an_ack() {
        let replay = Arc::new(Replay::new(100));
        let frame = format!(r#"{{"t":"{}"}}"#, "x".repeat(60));
        replay.push(&frame).await.unwrap();
        let second = tokio::spawn({
            let replay = replay.clone();
            let frame = frame.clone();
            async move { replay.push(&frame).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "no room: the producer waits");
        replay.ack(1);
        assert_eq!(second.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn an_oversized_frame_enters_an_empty_buffer_and_close_stops_producers() {
        let replay = Arc::new(Replay::new(10));
        replay.push(&"y".repeat(1000)).await.unwrap();
        let waiting = tokio::spawn({
            let replay = replay.clone();
            async move { replay.push("{}").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        replay.close();
        assert_eq!(waiting.await.unwrap(), Err(ReplayClosed));
        let mut cursor = replay.cursor(0).unwrap();
        assert!(replay.next(&mut cursor).await.is_some());
        assert!(replay.next(&mut cursor).await.is_none());
    }
}

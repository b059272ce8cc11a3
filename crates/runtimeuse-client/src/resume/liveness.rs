//! Noticing a connection that died silently (a peer gone without a reset, a laptop that
//! slept through the runtime's close): a ping after [`PING_AFTER`] of silence, and the
//! connection counted as dropped after [`DEAD_AFTER`] without hearing anything.
//!
//! Only time spent reading counts: while the driver holds a frame for a slow consumer it
//! does not read, so it cannot hear the runtime, and the clock starts again when it reads.

use std::time::Duration;

use tokio::time::Instant;

/// Silence after which the driver pings the runtime.
pub(crate) const PING_AFTER: Duration = Duration::from_secs(15);
/// Silence after which the connection is taken for dropped (and resumed).
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(45);

/// What to do when [`Liveness::due`] comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Send a ping.
    Ping,
    /// Nothing heard for [`DEAD_AFTER`]: the connection is gone.
    Dead,
}

/// When the runtime was last heard from, and when to ping it next.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    heard: Instant,
    next_ping: Instant,
}

impl Liveness {
    /// A connection heard from at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            heard: now,
            next_ping: now + PING_AFTER,
        }
    }

    /// Something arrived (a frame, a pong), or reading starts again, at `now`.
    pub fn heard(&mut self, now: Instant) {
        *self = Self::new(now);
    }

    /// When [`Self::check`] is to be called next.
    pub fn due(&self) -> Instant {
        self.next_ping.min(self.heard + DEAD_AFTER)
    }

    /// What to do at `now` (at or after [`Self::due`]).
    pub fn check(&mut self, now: Instant) -> Check {
        if now >= self.heard + DEAD_AFTER {
            return Check::Dead;
        }
        self.next_ping = now + PING_AFTER;
        Check::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_brings_pings_then_death() {
        let start = Instant::now();
        let mut liveness = Liveness::new(start);
        assert_eq!(liveness.due(), start + PING_AFTER);
        let mut now = liveness.due();
        let mut pings = 0;
        while let Check::Ping = liveness.check(now) {
            pings += 1;
            now = liveness.due();
        }
        assert_eq!(now, start + DEAD_AFTER);
        assert_eq!(pings, 2, "at 15 s and 30 s");
    }

    #[test]
    fn hearing_anything_starts_the_clock_again() {
        let start = Instant::now();
        let mut liveness = Liveness::new(start);
        assert_eq!(liveness.check(start + PING_AFTER), Check::Ping);
        let later = start + DEAD_AFTER - Duration::from_secs(1);
        liveness.heard(later);
        assert_eq!(liveness.due(), later + PING_AFTER);
        assert_eq!(liveness.check(later + PING_AFTER), Check::Ping);
        assert_eq!(liveness.check(later + DEAD_AFTER), Check::Dead);
    }
}

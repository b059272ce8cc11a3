//! Jittered exponential backoff between reconnection attempts.

use std::time::Duration;

/// The first delay (before jitter).
pub(crate) const INITIAL_DELAY: Duration = Duration::from_millis(100);
/// The delay stops doubling here (before jitter).
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);

/// Delays doubling from `initial` to `max`, each scaled by a random factor in [0.5, 1.5)
/// so that clients cut at the same moment do not come back in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    base: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    /// Delays from `initial` to `max`, jittered by `rng`.
    pub fn new(initial: Duration, max: Duration, rng: fastrand::Rng) -> Self {
        Self {
            initial,
            max,
            base: initial,
            rng,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.base.mul_f64(0.5 + self.rng.f64());
        self.base = (self.base * 2).min(self.max);
        delay
    }

    /// Starts again from the initial delay (after a successful resume).
    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(INITIAL_DELAY, MAX_DELAY, fastrand::Rng::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter() {
        let mut backoff = Backoff::new(INITIAL_DELAY, MAX_DELAY, fastrand::Rng::with_seed(7));
        let mut base = INITIAL_DELAY;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= base / 2 && delay < base * 3 / 2,
                "{delay:?} for {base:?}"
            );
            base = (base * 2).min(MAX_DELAY);
        }
        backoff.reset();
        assert!(backoff.next_delay() < INITIAL_DELAY * 3 / 2);
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut a = Backoff::new(INITIAL_DELAY, MAX_DELAY, fastrand::Rng::with_seed(1));
        let mut b = Backoff::new(INITIAL_DELAY, MAX_DELAY, fastrand::Rng::with_seed(2));
        let same = (0..10).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 10);
    }
}

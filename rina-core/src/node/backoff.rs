//! The back-off between attempts to set something up again (joining a DIF, keeping an
//! adjacency): one type, so every retry in a node grows the same way.

use std::time::Duration;

/// An exponential back-off: the first retry after `initial`, each next one after twice
/// the last, never more than `max`; [`Backoff::reset`] once an attempt succeeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// The back-off a node uses for joining and for adjacencies: 500 ms, doubling up to
    /// 30 s.
    pub const STANDARD: Self = Self::new(Duration::from_millis(500), Duration::from_secs(30));

    /// A back-off from `initial` up to `max` (at least `initial`).
    pub const fn new(initial: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < initial.as_nanos() {
            initial
        } else {
            max
        };
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// Takes the delay before the next attempt; the one after is twice as long (up to
    /// the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// An attempt succeeded: the next failure waits the initial delay again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::STANDARD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_starts_again_after_a_reset() {
        let mut b = Backoff::STANDARD;
        let got: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            got,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        let mut b = b;
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }
}

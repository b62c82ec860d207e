//! The runtime thread's adaptive spin: before it sleeps, it polls its sockets for a
//! short while, so that the next message of a conversation (a request, an answer, an
//! acknowledgement) is taken without a cross-core wake-up (about 30 µs each way on a
//! virtual machine, where a poll costs well under a microsecond).
//!
//! The budget adapts to what spinning would have caught: a spin that ends with an
//! event, or a sleep woken within [`MAX_SPIN`], doubles it (up to `MAX_SPIN`); a spin
//! that finds nothing halves it, down to nothing. An idle process therefore stops
//! spinning after a few quiet turns and costs nothing while it sleeps; a keepalive
//! every few seconds earns at most one short spin. Between polls the thread yields,
//! so on a busy machine the application threads it is waiting for get the core.
//!
//! `RINA_SPIN_US` sets `MAX_SPIN` in microseconds (0: never spin), for measurement.
//!
//! The same budget serves an application thread that polls before it blocks on an
//! empty flow (the interposer's inline receives), with its own maximum.

use std::time::Duration;

/// The longest a spin lasts, by default.
pub(super) const MAX_SPIN: Duration = Duration::from_micros(50);

/// How a wait went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waited {
    /// The spin caught an event.
    Caught,
    /// The spin found nothing, then the thread slept: this long before an event woke
    /// it (`None`: its time-out did).
    MissedThenSlept(Option<Duration>),
    /// It slept at once: this long before an event woke it (`None`: its time-out, or
    /// a poll).
    Slept(Option<Duration>),
}

/// The spin budget and its adaptation (no clock: the caller measures).
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    max: Duration,
    budget: Duration,
}

impl Spin {
    /// A spin of at most `max` (zero: never).
    pub const fn new(max: Duration) -> Self {
        Self { max, budget: max }
    }

    /// From `RINA_SPIN_US`, else [`MAX_SPIN`].
    pub(super) fn from_env() -> Self {
        Self::from_var("RINA_SPIN_US", MAX_SPIN)
    }

    /// A spin of at most the environment variable `var`'s microseconds (at most 10 ms),
    /// else `max`.
    pub fn from_var(var: &str, max: Duration) -> Self {
        let max = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(max, |us| Duration::from_micros(us.min(10_000)));
        Self::new(max)
    }

    /// Adapts to how the last wait went.
    pub(super) fn record(&mut self, w: Waited) {
        match w {
            Waited::Caught => self.caught(),
            Waited::MissedThenSlept(slept) => {
                self.missed();
                if let Some(s) = slept {
                    self.woken_after(s);
                }
            }
            Waited::Slept(Some(s)) => self.woken_after(s),
            Waited::Slept(None) => {}
        }
    }

    /// How long to spin before the next sleep (zero: sleep at once).
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The spin caught an event.
    pub fn caught(&mut self) {
        self.grow();
    }

    /// The spin ran out with nothing to show.
    pub fn missed(&mut self) {
        self.budget /= 2;
        if self.budget < Duration::from_micros(2) {
            self.budget = Duration::ZERO;
        }
    }

    /// The thread slept `slept` before an event woke it (not its timer): a spin that
    /// long would have caught it.
    pub fn woken_after(&mut self, slept: Duration) {
        if slept <= self.max {
            self.grow();
        }
    }

    fn grow(&mut self) {
        self.budget = (self.budget * 2)
            .max(Duration::from_micros(4))
            .min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn quiet_turns_stop_the_spin_and_a_conversation_restarts_it() {
        let mut s = Spin::new(us(50));
        assert_eq!(s.budget(), us(50));
        for _ in 0..6 {
            s.missed();
        }
        assert_eq!(s.budget(), Duration::ZERO, "an idle thread sleeps at once");
        s.woken_after(us(500));
        assert_eq!(
            s.budget(),
            Duration::ZERO,
            "a long sleep: spinning would not help"
        );
        s.woken_after(us(20));
        assert_eq!(s.budget(), us(4));
        for _ in 0..10 {
            s.caught();
        }
        assert_eq!(s.budget(), us(50), "never above the maximum");
    }

    #[test]
    fn zero_never_spins() {
        let mut s = Spin::new(Duration::ZERO);
        s.caught();
        s.woken_after(Duration::ZERO);
        assert_eq!(s.budget(), Duration::ZERO);
    }
}

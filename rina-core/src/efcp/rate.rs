//! The delivery rate: how fast the peer is taking PDUs, measured from acknowledgements
//! (the way BBR samples it), and its recent maximum, which with the smallest round
//! trip gives the path's bandwidth-delay product.
//!
//! Each PDU sent remembers how many PDUs had been delivered then and when the last of
//! them was ([`Snapshot`]). When it is delivered, the PDUs delivered since, over the
//! time since, is one sample: about a round trip's worth of deliveries, so a burst of
//! acknowledgements arriving together does not inflate it. The maximum is kept over a
//! window of time (a sample older than the window gives way to the best newer one).

use std::time::Duration;

use crate::time::Instant;

/// What a PDU remembers of the deliveries when it was sent.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Snapshot {
    delivered: u64,
    at: Instant,
}

/// Deliveries counted, and the recent maximum rate.
#[derive(Clone, Debug, Default)]
pub(super) struct DeliveryRate {
    delivered: u64,
    /// When the last delivery was counted (before any: the first send).
    last: Option<Instant>,
    /// The best sample, in PDUs per 1000 seconds, and when it was taken.
    best: (u64, Instant),
    /// The best sample taken after `best`, which replaces it when it ages out.
    next: (u64, Instant),
}

impl DeliveryRate {
    /// The snapshot a PDU sent now carries.
    pub(super) fn snapshot(&mut self, now: Instant) -> Snapshot {
        Snapshot {
            delivered: self.delivered,
            at: *self.last.get_or_insert(now),
        }
    }

    /// `n` PDUs were delivered now; `newest` is the snapshot of the most recently sent
    /// of them. `window`: how long a maximum is kept.
    pub(super) fn on_delivered(
        &mut self,
        now: Instant,
        n: u64,
        newest: Option<Snapshot>,
        window: Duration,
    ) {
        if n == 0 {
            return;
        }
        self.delivered = self.delivered.saturating_add(n);
        self.last = Some(now);
        let Some(s) = newest else { return };
        let micros = (now - s.at).as_micros().max(1);
        let pdus = u128::from(self.delivered.saturating_sub(s.delivered));
        let rate = u64::try_from(pdus * 1_000_000_000 / micros).unwrap_or(u64::MAX);
        self.sample(now, rate, window);
    }

    fn sample(&mut self, now: Instant, rate: u64, window: Duration) {
        let expired = |t: Instant| now - t > window;
        if expired(self.best.1) {
            // The best newer sample takes over.
            self.best = if self.next.0 > 0 && !expired(self.next.1) {
                self.next
            } else {
                (0, now)
            };
            self.next = (0, now);
        }
        if rate >= self.best.0 {
            self.best = (rate, now);
            self.next = (0, now);
        } else if rate >= self.next.0 || expired(self.next.1) {
            self.next = (rate, now);
        }
    }

    /// The bandwidth-delay product, in PDUs, for round trip `rtt`; `None` before any
    /// sample.
    pub(super) fn bdp(&self, rtt: Duration) -> Option<u64> {
        if self.best.0 == 0 {
            return None;
        }
        let pdus = u128::from(self.best.0) * rtt.as_micros() / 1_000_000_000;
        Some(u64::try_from(pdus).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    #[test]
    fn a_steady_flow_gives_its_rate_and_bdp() {
        let mut r = DeliveryRate::default();
        let win = Duration::from_millis(10);
        // 10 PDUs every 100 µs, each delivered a round trip (100 µs) after it was sent.
        let mut sent = Vec::new();
        for t in 0..50u64 {
            for _ in 0..10 {
                sent.push(r.snapshot(at(t * 100)));
            }
            if t > 0 {
                let newest = sent[(t as usize - 1) * 10 + 9];
                r.on_delivered(at(t * 100), 10, Some(newest), win);
            }
        }
        // 100,000 PDUs per second; 100 µs of them is 10.
        assert_eq!(r.bdp(Duration::from_micros(100)), Some(10));
    }

    #[test]
    fn the_maximum_ages_out() {
        let mut r = DeliveryRate::default();
        let win = Duration::from_millis(1);
        r.sample(at(0), 1_000_000, win);
        r.sample(at(500), 10, win);
        assert_eq!(r.best.0, 1_000_000);
        r.sample(at(1_200), 5, win);
        assert_eq!(r.best.0, 10, "the best newer sample took over");
        r.sample(at(1_600), 20, win);
        assert_eq!(r.best.0, 20);
        assert_eq!(r.bdp(Duration::ZERO), Some(0));
    }
}

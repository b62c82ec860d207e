//! Round-trip time estimation and the congestion window.
//!
//! - [`RttEstimator`]: RFC 6298 (`srtt`, `rttvar`, RTO = srtt + max(4·rttvar, A)
//!   clamped to `[min_rto, max_rto]`, doubled on each expiry). Karn's rule is the
//!   caller's: it never offers a sample from a retransmitted PDU.
//! - [`Congestion`]: a window in PDUs. It starts at [`INITIAL_CWND`] and grows by one
//!   per acknowledged PDU (slow start, doubling per RTT) until the first loss event,
//!   then by one per window acknowledged (additive increase). A loss event halves it,
//!   at most once per round trip: losses among PDUs sent before the last reduction
//!   belong to the same event. It stays within [`MIN_CWND`]..=[`MAX_CWND`].

use std::time::Duration;

use crate::time::Instant;

/// Congestion window at the start, in PDUs.
pub(super) const INITIAL_CWND: u64 = 16;
/// Smallest congestion window, in PDUs.
pub(super) const MIN_CWND: u64 = 2;
/// Largest congestion window, in PDUs.
pub(super) const MAX_CWND: u64 = 65536;

/// Smoothed RTT, variation and the retransmission timeout.
#[derive(Clone, Debug)]
pub(super) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    /// The receiver may hold an acknowledgement this long; the RTO leaves room for it.
    ack_delay: Duration,
}

impl RttEstimator {
    pub(super) fn new(
        initial: Duration,
        min_rto: Duration,
        max_rto: Duration,
        ack_delay: Duration,
    ) -> Self {
        let max_rto = max_rto.max(min_rto);
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            rto: initial.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
            ack_delay,
        }
    }

    /// Takes a sample (never from a retransmitted PDU) and recomputes the RTO, which
    /// also ends any back-off.
    pub(super) fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // RFC 6298 §2.3, beta = 1/4 then alpha = 1/8.
                self.rttvar = (self.rttvar * 3 + srtt.abs_diff(r)) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + (self.rttvar * 4).max(self.ack_delay)).clamp(self.min_rto, self.max_rto);
    }

    /// The timer expired: double the RTO (RFC 6298 §5.5), up to `max_rto`.
    pub(super) fn back_off(&mut self) {
        self.rto = (self.rto * 2).min(self.max_rto);
    }

    pub(super) fn rto(&self) -> Duration {
        self.rto
    }

    pub(super) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub(super) fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The smallest sample seen.
    pub(super) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }
}

/// The congestion window and its state.
#[derive(Clone, Debug)]
pub(super) struct Congestion {
    cwnd: u64,
    /// Slow start while `cwnd < ssthresh`; unbounded until the first loss event.
    ssthresh: u64,
    /// PDUs acknowledged toward the next +1 in additive increase.
    acc: u64,
    /// Losses of sequence numbers below this belong to the last loss event.
    recovery_end: u64,
    last_reduction: Option<Instant>,
}

impl Congestion {
    pub(super) fn new() -> Self {
        Self {
            cwnd: INITIAL_CWND,
            ssthresh: u64::MAX,
            acc: 0,
            recovery_end: 0,
            last_reduction: None,
        }
    }

    pub(super) fn window(&self) -> u64 {
        self.cwnd
    }

    /// `newly` PDUs were acknowledged (cumulatively or selectively). The window grows
    /// only when it was the limit (at least half used), and not while the PDUs of the
    /// last loss event are still outstanding (`snd_una` below the recovery point).
    pub(super) fn on_ack(&mut self, newly: u64, in_flight: u64, snd_una: u64) {
        if newly == 0 || in_flight.saturating_mul(2) < self.cwnd || snd_una < self.recovery_end {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(newly).min(MAX_CWND);
        } else {
            self.acc += newly;
            while self.acc >= self.cwnd {
                self.acc -= self.cwnd;
                self.cwnd = (self.cwnd + 1).min(MAX_CWND);
            }
        }
    }

    /// The PDU `seq` was lost (`next_seq`: the next new sequence number). Halves the
    /// window unless this loss belongs to the last event. A timeout (`timeout`)
    /// starts a new event once a round trip (`srtt`) passed since the last reduction.
    /// Returns true if the window was reduced.
    pub(super) fn on_loss(
        &mut self,
        now: Instant,
        seq: u64,
        next_seq: u64,
        timeout: bool,
        srtt: Duration,
    ) -> bool {
        let new_event = seq >= self.recovery_end
            || (timeout && self.last_reduction.is_none_or(|t| now >= t + srtt));
        if !new_event {
            return false;
        }
        self.cwnd = (self.cwnd / 2).max(MIN_CWND);
        self.ssthresh = self.cwnd;
        self.acc = 0;
        self.recovery_end = next_seq;
        self.last_reduction = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298_estimates_and_back_off() {
        let ms = Duration::from_millis;
        let mut e = RttEstimator::new(ms(200), ms(10), ms(4000), ms(2));
        assert_eq!(e.rto(), ms(200));
        e.sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rto(), ms(300), "srtt + 4 * srtt/2");
        e.sample(ms(100));
        // rttvar = 3/4 * 50 = 37.5 ms
        assert_eq!(e.rto(), ms(250));
        e.back_off();
        assert_eq!(e.rto(), ms(500));
        for _ in 0..10 {
            e.back_off();
        }
        assert_eq!(e.rto(), ms(4000));
        for _ in 0..100 {
            e.sample(Duration::from_micros(100));
        }
        assert_eq!(e.rto(), ms(10), "clamped to min_rto");
    }

    #[test]
    fn slow_start_then_additive_increase() {
        let mut c = Congestion::new();
        let t = Instant::ZERO;
        c.on_ack(16, 16, 16);
        assert_eq!(c.window(), 32, "doubles in a round trip");
        assert!(c.on_loss(t, 40, 50, false, Duration::from_millis(10)));
        assert_eq!(c.window(), 16);
        assert!(!c.on_loss(t, 45, 60, false, Duration::from_millis(10)));
        assert_eq!(c.window(), 16, "same event");
        c.on_ack(16, 16, 50);
        assert_eq!(c.window(), 17, "one per window");
        c.on_ack(100, 2, 60);
        assert_eq!(c.window(), 17, "not window-limited");
    }
}

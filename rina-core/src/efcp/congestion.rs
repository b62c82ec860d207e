//! Round-trip time estimation and the congestion window.
//!
//! - [`RttEstimator`]: RFC 6298 (`srtt`, `rttvar`, RTO = srtt + max(4·rttvar, A)
//!   clamped to `[min_rto, max_rto]`, doubled on each expiry). Karn's rule is the
//!   caller's: it never offers a sample from a retransmitted PDU.
//! - [`Congestion`]: a window in PDUs. It starts at [`INITIAL_CWND`] and grows by one
//!   per acknowledged PDU (slow start, doubling per RTT) until the first loss event,
//!   then by one per window acknowledged (additive increase). Losses among PDUs sent
//!   before the last loss event belong to it (one response per round trip).
//!
//!   A loss event does not take the window below 1.25 times the path's
//!   bandwidth-delay product (the `floor`: the recent maximum delivery rate times the
//!   smallest round trip, see `rate.rs`): a window that small keeps at most a quarter
//!   of a BDP queued, so a loss there is taken as random (a lossy link, a dropping firewall), not as a
//!   queue overflowing, and costs nothing but its retransmission. Above the floor, or
//!   when more than [`HEAVY_LOSS_PERMILLE`] of recent PDUs are lost (the floor is
//!   wrong: a queue shallower than the BDP), the window shrinks to
//!   [`BETA_PERMILLE`] of itself (CUBIC's 0.7), or to half on a retransmission
//!   timeout (a tail lost at random times out too, so the floor holds there as well).
//!   It stays within [`MIN_CWND`]..=[`MAX_CWND`].

use std::time::Duration;

use crate::time::Instant;

/// Congestion window at the start, in PDUs.
pub(super) const INITIAL_CWND: u64 = 16;
/// Smallest congestion window, in PDUs.
pub(super) const MIN_CWND: u64 = 2;
/// Largest congestion window, in PDUs.
pub(super) const MAX_CWND: u64 = 65536;
/// What a loss event leaves of the window, in thousandths.
pub(super) const BETA_PERMILLE: u64 = 700;
/// The smoothed share of PDUs lost (thousandths) above which losses are congestion
/// whatever the floor says.
pub(super) const HEAVY_LOSS_PERMILLE: u64 = 150;

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

    /// The longest the peer delays an acknowledgement.
    pub(super) fn ack_delay(&self) -> Duration {
        self.ack_delay
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
    /// The window does not grow while `snd_una` is below this (the PDUs of the last
    /// reduction are still outstanding).
    frozen_until: u64,
    last_reduction: Option<Instant>,
    /// The loss share, smoothed over rounds (1/8 per round), in thousandths.
    loss_permille: u64,
    /// This round: it ends when `snd_una` reaches `round_end`.
    round_end: u64,
    round_delivered: u64,
    round_lost: u64,
}

/// What the sender knows of a loss event.
#[derive(Clone, Copy, Debug)]
pub(super) struct Loss {
    /// The newest PDU found lost.
    pub(super) seq: u64,
    /// How many were found lost.
    pub(super) count: u64,
    /// The next new sequence number.
    pub(super) next_seq: u64,
    /// Found by the retransmission timer.
    pub(super) timeout: bool,
    pub(super) srtt: Duration,
    /// 1.25 times the bandwidth-delay product, in PDUs, once measured.
    pub(super) floor: Option<u64>,
}

impl Congestion {
    pub(super) fn new() -> Self {
        Self {
            cwnd: INITIAL_CWND,
            ssthresh: u64::MAX,
            acc: 0,
            recovery_end: 0,
            frozen_until: 0,
            last_reduction: None,
            loss_permille: 0,
            round_end: 0,
            round_delivered: 0,
            round_lost: 0,
        }
    }

    pub(super) fn window(&self) -> u64 {
        self.cwnd
    }

    /// `newly` PDUs were acknowledged (cumulatively or selectively). The window grows
    /// only when it was the limit (at least half used), and not while the PDUs of the
    /// last reduction are still outstanding (`snd_una` below its recovery point).
    pub(super) fn on_ack(&mut self, newly: u64, in_flight: u64, snd_una: u64, next_seq: u64) {
        self.round_delivered = self.round_delivered.saturating_add(newly);
        if snd_una >= self.round_end {
            let total = self.round_delivered + self.round_lost;
            if let Some(share) = self.round_lost.saturating_mul(1000).checked_div(total) {
                self.loss_permille = (self.loss_permille * 7 + share.min(1000)) / 8;
            }
            self.round_end = next_seq;
            self.round_delivered = 0;
            self.round_lost = 0;
        }
        if newly == 0 || in_flight.saturating_mul(2) < self.cwnd || snd_una < self.frozen_until {
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

    /// PDUs were found lost. Unless they belong to the last event (sent before it), this
    /// is a new one: it ends slow start and shrinks the window as the module says. A
    /// timeout starts a new event once a round trip passed since the last reduction.
    /// Returns true if the window was reduced.
    pub(super) fn on_loss(&mut self, now: Instant, l: Loss) -> bool {
        self.round_lost = self.round_lost.saturating_add(l.count);
        let new_event = l.seq >= self.recovery_end
            || (l.timeout && self.last_reduction.is_none_or(|t| now >= t + l.srtt));
        if !new_event {
            return false;
        }
        self.recovery_end = l.next_seq;
        self.acc = 0;
        let heavy = self.loss_permille > HEAVY_LOSS_PERMILLE;
        let cut = if l.timeout {
            self.cwnd / 2
        } else {
            self.cwnd.saturating_mul(BETA_PERMILLE) / 1000
        };
        let target = match l.floor {
            Some(f) if !heavy => cut.max(f.min(self.cwnd)),
            _ => cut,
        }
        .max(MIN_CWND);
        self.ssthresh = target;
        if target >= self.cwnd {
            // Random loss: the window stays, and keeps growing.
            return false;
        }
        self.cwnd = target;
        self.frozen_until = l.next_seq;
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

    fn loss(seq: u64, next_seq: u64, floor: Option<u64>) -> Loss {
        Loss {
            seq,
            count: 1,
            next_seq,
            timeout: false,
            srtt: Duration::from_millis(10),
            floor,
        }
    }

    #[test]
    fn slow_start_then_additive_increase() {
        let mut c = Congestion::new();
        let t = Instant::ZERO;
        c.on_ack(16, 16, 16, 32);
        assert_eq!(c.window(), 32, "doubles in a round trip");
        assert!(c.on_loss(t, loss(40, 50, None)));
        assert_eq!(c.window(), 22, "0.7 of 32");
        assert!(!c.on_loss(t, loss(45, 60, None)));
        assert_eq!(c.window(), 22, "same event");
        c.on_ack(22, 22, 50, 72);
        assert_eq!(c.window(), 23, "one per window");
        c.on_ack(100, 2, 60, 72);
        assert_eq!(c.window(), 23, "not window-limited");
    }

    #[test]
    fn random_loss_below_twice_the_bdp_keeps_the_window() {
        let mut c = Congestion::new();
        let t = Instant::ZERO;
        c.on_ack(16, 16, 16, 32);
        assert!(
            !c.on_loss(t, loss(40, 50, Some(64))),
            "32 is under the floor"
        );
        assert_eq!(c.window(), 32);
        c.on_ack(32, 32, 50, 90);
        assert_eq!(c.window(), 33, "it grows on, additively");
        assert!(c.on_loss(t, loss(95, 100, Some(30))));
        assert_eq!(c.window(), 30, "above the floor: down to it, not to 0.7");
        assert!(c.on_loss(t, loss(110, 120, Some(2))));
        assert_eq!(c.window(), 21, "0.7 at most");
        let timeout = Loss {
            timeout: true,
            ..loss(115, 130, Some(64))
        };
        assert!(!c.on_loss(t + Duration::from_secs(1), timeout));
        assert_eq!(
            c.window(),
            21,
            "under the floor a timeout keeps the window too"
        );
        let timeout = Loss {
            timeout: true,
            ..loss(125, 140, Some(4))
        };
        assert!(c.on_loss(t + Duration::from_secs(2), timeout));
        assert_eq!(c.window(), 10, "above it, a timeout halves it");
    }

    #[test]
    fn heavy_loss_overrides_the_floor() {
        let mut c = Congestion::new();
        let t = Instant::ZERO;
        let mut next = 32;
        // Rounds losing half their PDUs.
        for round in 0..20u64 {
            c.on_loss(
                t,
                Loss {
                    count: 8,
                    ..loss(next - 1, next, Some(1000))
                },
            );
            c.on_ack(8, 16, next, next + 16);
            next += 16;
            let _ = round;
        }
        assert!(c.loss_permille > HEAVY_LOSS_PERMILLE, "{}", c.loss_permille);
        let w = c.window();
        assert!(c.on_loss(t, loss(next, next + 16, Some(1000))));
        assert_eq!(c.window(), (w * 7 / 10).max(MIN_CWND));
    }
}

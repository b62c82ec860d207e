//! Loss detection, the retransmission and probe timers, and failure.
//!
//! Loss detection:
//! - fast retransmit: a hole with at least `dupthresh` SACKed PDUs above it is lost
//!   (each hole once; `loss_floor` is the seq below which holes were already judged,
//!   so each seq is looked at once). `dupthresh` starts at 3 and rises to the
//!   reordering actually seen (a never-retransmitted PDU acknowledged below the
//!   highest SACKed one), capped at half the PDUs outstanding and at 256;
//! - lost retransmission: a retransmitted PDU is lost again once `dupthresh` PDUs
//!   first sent after it were SACKed, or once a PDU sent after it by more than the
//!   reordering window was delivered (RACK's rule, RFC 8985 §6: in recovery the PDUs
//!   sent after a retransmission are mostly other retransmissions, which the count
//!   leaves out; the window is a quarter of the smallest round trip, or of the
//!   smoothed one once reordering was seen) (`rtx_watch`, in retransmission order);
//! - retransmission timeout: the oldest unaccounted PDU and every one sent an RTO ago
//!   or more are lost; the RTO backs off. `max_rtx` timeouts in a row without
//!   progress fail the connection.
//!
//! A timer with nothing in flight and the peer's window closed is a window probe:
//! the next PDU goes out past the window, so a lost window update cannot deadlock.

use crate::time::Instant;

use super::{Failure, Loss, RangeSet, Sender, Slot, VecDeque, MIN_DUPTHRESH};

impl Sender {
    /// SACKed PDUs above a hole that make it lost: `dupthresh`, at most half the PDUs
    /// outstanding (but 3), and with fewer than four outstanding one less than them
    /// (early retransmit, RFC 5827), so a small window does not wait for the RTO.
    pub(super) fn threshold(&self) -> u64 {
        let out = self.outstanding();
        let t = self.dupthresh.min((out / 2).max(MIN_DUPTHRESH));
        if out < 4 {
            t.min(out.saturating_sub(1).max(1))
        } else {
            t
        }
    }

    /// PDUs sent past the window as probes were dropped by the peer unless it had
    /// room after all; once the window covers them and they are not acknowledged,
    /// they go again (not a congestion signal).
    pub(super) fn on_window_opened(&mut self) {
        let Some(p) = self.probed else { return };
        if p < self.snd_una {
            self.probed = None;
            return;
        }
        if self.peer_rwe <= p {
            return;
        }
        self.probed = None;
        for seq in p..self.next_seq.min(self.peer_rwe) {
            let Some(slot) = self.slot_mut(seq) else {
                break;
            };
            if !slot.sacked && !slot.lost {
                slot.lost = true;
                self.lost.insert(seq);
            }
        }
    }

    /// Fast retransmit: holes with `dupthresh` SACKed PDUs above them are lost.
    pub(super) fn detect_losses(&mut self, now: Instant) {
        let thresh = self.threshold();
        let mut count = 0;
        let mut edge = None;
        for (s, e) in self.sacked.iter().rev() {
            count += e - s;
            if count >= thresh {
                edge = Some(s);
                break;
            }
            if s <= self.loss_floor {
                break;
            }
        }
        let Some(edge) = edge else { return };
        self.mark_lost(now, self.loss_floor..edge, |s| s.rtx == 0);
        self.loss_floor = self.loss_floor.max(edge);
    }

    /// Marks lost every PDU of `seqs` neither SACKed nor already lost that `eligible`
    /// accepts; any found make one loss event.
    pub(super) fn mark_lost(
        &mut self,
        now: Instant,
        seqs: std::ops::Range<u64>,
        eligible: impl Fn(&Slot) -> bool,
    ) {
        let (mut newest, mut count) = (None, 0);
        for seq in seqs {
            let Some(slot) = self.slot_mut(seq) else {
                break;
            };
            if slot.sacked || slot.lost || !eligible(slot) {
                continue;
            }
            slot.lost = true;
            self.lost.insert(seq);
            newest = Some(seq);
            count += 1;
        }
        if let Some(seq) = newest {
            self.on_loss_event(now, seq, count, false);
        }
    }

    /// A retransmission is lost once `dupthresh` PDUs first sent after it were SACKed,
    /// or once `newest` (the send time of the latest-sent PDU this acknowledgement
    /// delivered) is past its own sending by more than the reordering window.
    pub(super) fn detect_lost_retransmissions(&mut self, now: Instant, newest: Option<Instant>) {
        let thresh = self.threshold();
        let reo = self.reordering_window();
        while let Some(&(seq, mark, rtx)) = self.rtx_watch.front() {
            let sent = self
                .slot(seq)
                .filter(|s| !s.sacked && !s.lost && s.rtx == rtx)
                .map(|s| s.sent_at);
            if let Some(sent) = sent {
                let overtaken = newest.is_some_and(|t| t > sent + reo);
                if !overtaken && self.sacked_from(mark, thresh) < thresh {
                    return;
                }
                if let Some(slot) = self.slot_mut(seq) {
                    slot.lost = true;
                }
                self.lost.insert(seq);
                self.on_loss_event(now, mark, 1, false);
            }
            self.rtx_watch.pop_front();
        }
    }

    /// How much later a PDU sent after another may be delivered before the other
    /// counts as lost: a quarter of the smallest round trip, or of the smoothed one
    /// once reordering was seen (RFC 8985 §6.2).
    fn reordering_window(&self) -> std::time::Duration {
        let base = if self.dupthresh > MIN_DUPTHRESH {
            self.rtt.srtt()
        } else {
            self.rtt.min_rtt()
        };
        base.map_or(std::time::Duration::ZERO, |t| t / 4)
    }

    /// SACKed seqs at or above `from`, counted up to `cap`.
    fn sacked_from(&self, from: u64, cap: u64) -> u64 {
        let mut n = 0;
        for (s, e) in self.sacked.iter().rev() {
            if e <= from || n >= cap {
                break;
            }
            n += e - s.max(from);
        }
        n
    }

    fn on_loss_event(&mut self, now: Instant, seq: u64, count: u64, timeout: bool) {
        let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
        let floor = self
            .rtt
            .min_rtt()
            .and_then(|m| self.rate.bdp(m))
            .map(|b| b.saturating_mul(5) / 4);
        let loss = Loss {
            seq,
            count,
            next_seq: self.next_seq,
            timeout,
            srtt,
            floor,
        };
        if self.cc.on_loss(now, loss) {
            self.loss_events += 1;
        }
    }

    /// Arms the retransmission timer while data is outstanding, or the probe timer
    /// while data waits on a closed window.
    pub(super) fn update_timer(&mut self, now: Instant) {
        if !self.reliable || self.failure.is_some() {
            self.timer = None;
        } else if self.outstanding() > 0
            || (self.queued() > 0 && self.next_seq >= self.peer_rwe && !self.probe)
        {
            self.timer.get_or_insert(now + self.rtt.rto());
        } else {
            self.timer = None;
        }
    }

    pub(in crate::efcp) fn poll_timeout(&self) -> Option<Instant> {
        crate::time::earliest(self.timer, self.tail.deadline())
    }

    pub(in crate::efcp) fn on_timeout(&mut self, now: Instant) {
        self.on_tail_timeout(now);
        if self.timer.is_none_or(|t| t > now) {
            return;
        }
        self.tail_timed_out();
        self.timer = None;
        self.timeouts += 1;
        if self.outstanding() == 0 {
            // Nothing in flight and the window closed: probe it.
            self.probe = self.queued() > 0;
            return;
        }
        if self.stalled >= self.max_rtx {
            self.fail();
            return;
        }
        self.stalled += 1;
        let rto = self.rtt.rto();
        let (mut newest, mut count) = (None, 0);
        let mut oldest = true;
        for seq in self.snd_una..self.next_seq {
            let Some(slot) = self.slot_mut(seq) else {
                break;
            };
            if slot.sacked || slot.lost {
                oldest &= slot.sacked;
                continue;
            }
            if oldest || slot.sent_at + rto <= now {
                slot.lost = true;
                self.lost.insert(seq);
                newest = Some(seq);
                count += 1;
            }
            oldest = false;
        }
        // A probe past the peer's window is not a congestion signal.
        if let Some(seq) = newest.filter(|&s| s < self.peer_rwe) {
            self.on_loss_event(now, seq, count, true);
        }
        self.rtt.back_off();
        self.timer = Some(now + self.rtt.rto());
    }

    fn fail(&mut self) {
        self.failure = Some(Failure::RetransmissionsExhausted);
        self.slots = VecDeque::new();
        self.bytes.clear();
        self.lost.clear();
        self.sacked = RangeSet::default();
        self.rtx_watch = VecDeque::new();
        self.timer = None;
        self.probed = None;
        self.snd_una = self.next_seq;
    }
}

//! The tail-loss probe (RFC 8985 §7): when the last PDUs of a burst are lost, no
//! later PDU arrives to reveal the hole, and only the retransmission timeout (at least
//! `min_rto`) would. Instead, two smoothed round trips plus the longest acknowledgement
//! delay after the last sending with nothing acknowledged, one probe goes: the next new
//! PDU if the peer's window has room, else the highest PDU sent and not yet
//! acknowledged again. Its acknowledgement either acknowledges everything, or SACKs
//! the probe above a hole: every PDU sent before the probe and still unacknowledged is
//! then lost (RACK's rule, RFC 8985 §6, kept to the probe, which went two round trips
//! after them), which is a loss event, and they go again at once.
//!
//! One probe per episode: the next goes only after new data is acknowledged (a
//! retransmission timeout does not start a new episode), none while recovering (a PDU
//! known lost, or SACKed ones above a hole) and none after a window probe. A probe
//! ignores the congestion window (it is one PDU and replaces a timeout that would
//! collapse the window). A probe that resent the last PDU and is acknowledged
//! cumulatively cannot be told from one that repaired a loss (there is no duplicate
//! report), so that case is no loss event: random loss is not congestion here (see
//! `congestion.rs`), and several PDUs lost show up as above. The retransmission
//! timer restarts when a probe goes, so a lost probe still ends in a timeout.

use std::time::Duration;

use crate::time::Instant;
use crate::wire::Pci;

use super::Sender;

/// The shortest probe timeout: below the scheduling jitter of a busy host a probe
/// would mostly duplicate PDUs that are merely late.
const MIN_PTO: Duration = Duration::from_micros(500);

/// The probe's state.
#[derive(Debug, Default)]
pub(super) struct TailProbe {
    /// When the probe goes, unless new data is acknowledged first.
    at: Option<Instant>,
    /// The probe timer fired: the next transmission is the probe.
    due: bool,
    /// A probe went in this episode (or a timeout ended it: none until progress).
    sent: bool,
    /// The probe's seq and sending time, until acknowledged.
    probe: Option<(u64, Instant)>,
    /// Probes sent.
    pub(super) count: u64,
}

impl TailProbe {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.at
    }
}

impl Sender {
    /// PDUs are known lost, or SACKed above a hole: fast retransmission and the
    /// timer handle those (no probe then, as RFC 8985 §7.2 has it).
    pub(super) fn recovering(&self) -> bool {
        !self.lost.is_empty() || self.sacked.count() > 0
    }

    /// (Re)starts the probe timer after new data went out or new data was
    /// acknowledged, and stops it once recovering: only while data is outstanding,
    /// with a round-trip estimate, no probe yet in this episode, no window probe out,
    /// and before the retransmission timer.
    pub(super) fn arm_tail_probe(&mut self, now: Instant) {
        self.tail.at = None;
        if !self.reliable
            || self.tail.sent
            || self.outstanding() == 0
            || self.probed.is_some()
            || self.recovering()
        {
            return;
        }
        let Some(srtt) = self.rtt.srtt() else { return };
        let pto = srtt
            .saturating_mul(2)
            .saturating_add(self.rtt.ack_delay())
            .max(MIN_PTO);
        let at = now + pto;
        if self.timer.is_some_and(|rto| at < rto) {
            self.tail.at = Some(at);
        }
    }

    /// New data was acknowledged: the episode is over.
    pub(super) fn end_tail_episode(&mut self) {
        self.tail.sent = false;
        self.tail.due = false;
    }

    /// The retransmission timer fired: it handles the tail, and no probe goes until
    /// new data is acknowledged.
    pub(super) fn tail_timed_out(&mut self) {
        self.tail.at = None;
        self.tail.due = false;
        self.tail.sent = true;
        self.tail.probe = None;
    }

    /// After an acknowledgement's cumulative and selective parts: if it SACKs the
    /// probe, the PDUs sent before the probe and still unacknowledged are lost.
    pub(super) fn on_tail_ack(&mut self, now: Instant) {
        let Some((p, sent_at)) = self.tail.probe else {
            return;
        };
        if p < self.snd_una {
            self.tail.probe = None;
            return;
        }
        if !self.slot(p).is_some_and(|s| s.sacked) {
            return;
        }
        self.tail.probe = None;
        self.mark_lost(now, self.snd_una..p, |s| s.sent_at <= sent_at);
    }

    /// Handles the probe timer, if it is due.
    pub(super) fn on_tail_timeout(&mut self, now: Instant) {
        if self.tail.at.is_some_and(|t| t <= now) {
            self.tail.at = None;
            self.tail.due = self.outstanding() > 0;
        }
    }

    /// Sends the probe if one is due.
    pub(super) fn send_tail_probe(&mut self, now: Instant, base: &Pci, buf: &mut Vec<u8>) -> bool {
        if !std::mem::take(&mut self.tail.due) {
            return false;
        }
        // Marked first: sending new data would otherwise arm another probe.
        self.tail.sent = true;
        let seq = if self.queued() > 0 && self.next_seq < self.peer_rwe {
            let seq = self.next_seq;
            self.send_new(now, base, buf).then_some(seq)
        } else {
            self.resend_newest(now, base, buf)
        };
        self.tail.sent = seq.is_some();
        self.tail.probe = seq.map(|s| (s, now));
        if seq.is_some() {
            // (The probe timer is already off: it fired.)
            self.tail.count += 1;
            self.timer = Some(now + self.rtt.rto());
        }
        seq.is_some()
    }

    /// Sends again the highest PDU sent and not acknowledged; its seq.
    fn resend_newest(&mut self, now: Instant, base: &Pci, buf: &mut Vec<u8>) -> Option<u64> {
        // `lost` is empty when a probe fires (none is armed while recovering); if not,
        // the first lost PDU is the one resent.
        let seq = match self.lost.first() {
            Some(&first) => first,
            None => {
                let seq = (self.snd_una..self.next_seq)
                    .rev()
                    .find(|&s| self.slot(s).is_some_and(|x| !x.sacked))?;
                if let Some(slot) = self.slot_mut(seq) {
                    slot.lost = true;
                }
                self.lost.insert(seq);
                seq
            }
        };
        self.retransmit(now, base, buf).then_some(seq)
    }
}

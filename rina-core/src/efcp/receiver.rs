//! The reliable receiving side (DTP receive half and DTCP receiver): duplicate
//! detection, reordering, the receive window and acknowledgements.
//!
//! - `rcv_next` is the next sequence number expected in order; PDUs above it wait in
//!   `ooo` (their seqs also in `held`, a [`RangeSet`], which yields the SACK ranges).
//! - The window: a PDU is accepted only if `seq < rwe`, `rwe = released + credit`
//!   ([`Reassembly`] says what is released), so `ooo` never holds more than the
//!   credit. Buffers of PDUs taken out of `ooo` are recycled.
//! - Duplicates (below `rcv_next` or already held) are counted and dropped, and make
//!   an acknowledgement go out at once: the sender may have missed the last one.
//! - Acknowledgements: at once on a PDU out of order (a gap), one filling a gap, a
//!   duplicate, a retransmission (its sender is recovering: a lost last PDU found by
//!   a tail-loss probe, say), one past the window, the end of stream, when two
//!   full-sized PDUs' worth of payload or a quarter of the credit is unacknowledged,
//!   and for the 32 in-order PDUs after one out of order (quick acknowledgements while
//!   the sender recovers); otherwise after `ack_delay` (the A timer). Reading that
//!   grows the window by a quarter of the credit since the last advertised edge sends
//!   a window update. The SACK ranges are the lowest [`MAX_SACKS`] held runs, the ones
//!   whose holes block delivery first.
//! - The echo: each acknowledgement names the DT PDU that arrived last since the
//!   previous one, if that was a new first transmission; a retransmission or a
//!   duplicate arriving clears it, since the acknowledgement it causes is about a
//!   transmission the sender cannot tell apart.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::time::Instant;
use crate::wire::control::{ControlRepr, MAX_SACKS};
use crate::wire::pci::flags;

use super::ranges::RangeSet;
use super::reassembly::Reassembly;
use super::{ConnectionStats, Delivery, EfcpConfig};

/// An acknowledgement goes out at once when two full-sized PDUs' worth of payload is
/// unacknowledged (TCP's every second full-sized segment, RFC 1122 §4.2.3.2): a full
/// size is the largest payload seen, at least [`SMALL_PAYLOAD`] bytes, so a stream of
/// small requests is acknowledged by the timer, or by the bulk it grows into. The
/// runtime reads every datagram waiting before it sends, so under load one
/// acknowledgement covers a whole batch.
const SMALL_PAYLOAD: u64 = 1024;

/// In-order PDUs acknowledged at once after one arrived out of order (a loss).
const QUICK_ACKS: u64 = 32;

/// Recycled PDU buffers kept at most.
const POOL_MAX: usize = 64;

/// A PDU received above the in-order edge.
#[derive(Debug)]
struct Held {
    flags: u8,
    data: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Receiver {
    credit: u64,
    ack_delay: Duration,
    rcv_next: u64,
    ooo: BTreeMap<u64, Held>,
    held: RangeSet,
    pool: Vec<Vec<u8>>,
    asm: Reassembly,
    /// When the next acknowledgement is due.
    ack_at: Option<Instant>,
    /// What the next acknowledgement echoes.
    echo: Option<u64>,
    /// In-order PDUs since the last acknowledgement, and their payload bytes.
    unacked: u64,
    unacked_bytes: u64,
    /// The largest payload received (the peer's full size, as far as seen).
    largest: u64,
    /// In-order PDUs still to acknowledge at once after a loss was seen (quick
    /// acknowledgements while the sender recovers: its window is small then, and a
    /// delayed acknowledgement would stall it and inflate its round-trip estimate).
    quick: u64,
    advertised: u64,
    ctrl: ControlRepr,
    pdus_received: u64,
    /// Payload bytes received in order.
    bytes_received: u64,
    duplicates: u64,
    sdus_delivered: u64,
}

impl Receiver {
    pub(super) fn new(cfg: &EfcpConfig) -> Self {
        let credit = cfg.initial_credit.max(1);
        Self {
            credit,
            ack_delay: cfg.ack_delay,
            rcv_next: 0,
            ooo: BTreeMap::new(),
            held: RangeSet::default(),
            pool: Vec::new(),
            asm: Reassembly::new(cfg.max_sdu_size),
            ack_at: None,
            echo: None,
            unacked: 0,
            unacked_bytes: 0,
            largest: 0,
            quick: 0,
            advertised: credit,
            ctrl: ControlRepr::default(),
            pdus_received: 0,
            bytes_received: 0,
            duplicates: 0,
            sdus_delivered: 0,
        }
    }

    fn rwe(&self) -> u64 {
        self.asm.released().saturating_add(self.credit)
    }

    /// A quarter of the credit, at least one PDU.
    fn quarter(&self) -> u64 {
        (self.credit / 4).max(1)
    }

    fn ack_now(&mut self, now: Instant) {
        self.ack_at = Some(self.ack_at.map_or(now, |t| t.min(now)));
    }

    /// Handles a DT PDU.
    pub(super) fn on_data(&mut self, now: Instant, seq: u64, f: u8, payload: &[u8]) {
        self.pdus_received += 1;
        let duplicate = seq < self.rcv_next || self.ooo.contains_key(&seq);
        let fresh = !duplicate && seq < self.rwe() && f & flags::RTX == 0;
        self.echo = fresh.then_some(seq);
        if duplicate {
            self.duplicates += 1;
            self.ack_now(now);
            return;
        }
        if seq >= self.rwe() {
            // Past the window (a probe, or a broken peer): say where the window is.
            self.ack_now(now);
            return;
        }
        if seq > self.rcv_next {
            let mut data = self.pool.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(payload);
            self.ooo.insert(seq, Held { flags: f, data });
            self.held.insert(seq, seq + 1, |_, _| {});
            self.quick = QUICK_ACKS;
            self.ack_now(now);
            return;
        }
        self.asm.push(f, payload);
        self.bytes_received += payload.len() as u64;
        self.rcv_next += 1;
        self.unacked += 1;
        self.unacked_bytes += payload.len() as u64;
        self.largest = self.largest.max(payload.len() as u64);
        let filled = !self.ooo.is_empty();
        while let Some(e) = self.ooo.first_entry() {
            if *e.key() != self.rcv_next {
                break;
            }
            let h = e.remove();
            self.asm.push(h.flags, &h.data);
            self.bytes_received += h.data.len() as u64;
            self.unacked_bytes += h.data.len() as u64;
            if self.pool.len() < POOL_MAX {
                self.pool.push(h.data);
            }
            self.rcv_next += 1;
            self.unacked += 1;
        }
        if filled {
            self.held.remove_below(self.rcv_next);
        }
        // The end of stream is acknowledged at once: the peer may be waiting for it to
        // finish, and this side may go away right after reading it.
        let two_full = self.largest.max(SMALL_PAYLOAD).saturating_mul(2);
        let quick = self.quick > 0;
        self.quick = self.quick.saturating_sub(1);
        if filled
            || quick
            || f & flags::RTX != 0
            || self.asm.eof_received()
            || self.unacked >= self.quarter()
            || self.unacked_bytes >= two_full
        {
            self.ack_now(now);
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + self.ack_delay);
        }
    }

    pub(super) fn has_delivery(&self) -> bool {
        self.asm.has_delivery()
    }

    /// The next SDU in order; consuming it may send a window update.
    pub(super) fn recv(&mut self, now: Instant) -> Option<Delivery> {
        let d = self.asm.pop()?;
        if matches!(d, Delivery::Sdu(_)) {
            self.sdus_delivered += 1;
        }
        if self.rwe() >= self.advertised.saturating_add(self.quarter()) {
            self.ack_now(now);
        }
        Some(d)
    }

    pub(super) fn eof_received(&self) -> bool {
        self.asm.eof_received()
    }

    pub(super) fn eof_delivered(&self) -> bool {
        self.asm.eof_delivered()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.ack_at
    }

    /// The acknowledgement to send now, if one is due.
    pub(super) fn poll_ack(&mut self, now: Instant) -> Option<&ControlRepr> {
        if self.ack_at.is_none_or(|t| t > now) {
            return None;
        }
        self.ack_at = None;
        self.unacked = 0;
        self.unacked_bytes = 0;
        self.advertised = self.rwe();
        self.ctrl.ack = self.rcv_next;
        self.ctrl.rwe = self.advertised;
        self.ctrl.echo = self.echo.take();
        self.ctrl.sacks.clear();
        self.ctrl.sacks.extend(self.held.iter().take(MAX_SACKS));
        Some(&self.ctrl)
    }

    pub(super) fn fill_stats(&self, s: &mut ConnectionStats) {
        s.pdus_received = self.pdus_received;
        s.bytes_received = self.bytes_received;
        s.duplicates = self.duplicates;
        s.sdus_delivered = self.sdus_delivered;
    }
}

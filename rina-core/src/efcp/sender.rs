//! The sending side (DTP send half and DTCP sender): the send queue, sequence
//! numbers, the retransmission state, loss detection and the windows.
//!
//! Every PDU from the oldest unacknowledged one (`snd_una`) to the last queued one
//! has a [`Slot`] in `slots` (index = seq − `snd_una`) and its payload in a
//! [`ByteQueue`]. Slots below `next_seq` were sent; the rest wait for the windows.
//!
//! Invariants (reliable mode):
//! - `sacked` holds exactly the selectively acknowledged seqs in `snd_una..next_seq`,
//!   and those slots have `sacked` set;
//! - `lost` holds exactly the slots with `lost` set: sent, not acknowledged, deemed
//!   lost and waiting for retransmission;
//! - in flight = sent − acknowledged − SACKed − lost.
//!
//! Loss detection, timers and failure live in `sender/loss.rs`, the tail-loss probe in
//! `sender/tail.rs`.

use std::collections::{BTreeSet, VecDeque};

use crate::time::Instant;
use crate::wire::control::ControlRepr;
use crate::wire::pci::flags;
use crate::wire::{Pci, PduType, PCI_LEN};

use super::buffer::ByteQueue;
use super::congestion::{Congestion, Loss, RttEstimator};
use super::ranges::RangeSet;
use super::rate::{DeliveryRate, Snapshot};
use super::{ConnectionStats, EfcpConfig, Failure};

mod loss;
mod tail;

use tail::TailProbe;

/// Fast-retransmit threshold before any reordering is seen.
const MIN_DUPTHRESH: u64 = 3;
/// Largest fast-retransmit threshold reordering can raise it to.
const MAX_DUPTHRESH: u64 = 256;
/// The delivery rate's maximum is kept ten round trips, and at least this long (a
/// retransmission timeout must not make the sender forget the path's rate: at 5%
/// random loss on a veth a 5 ms window let the window spiral down to 4 PDUs).
const RATE_WINDOW_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// One PDU, queued or sent.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// Offset of the payload in the byte queue.
    off: u64,
    len: u32,
    flags: u8,
    sacked: bool,
    lost: bool,
    rtx: u32,
    /// Time of the first transmission (round trips are timed from it, by the echo).
    first_sent: Instant,
    /// Time of the last transmission.
    sent_at: Instant,
    /// The deliveries when it was last sent (for the delivery rate).
    snap: Snapshot,
}

/// What one acknowledgement taught.
#[derive(Default)]
struct AckEvent {
    newly: u64,
    /// Reordering distance seen.
    reorder: u64,
    /// The most recently sent of the newly delivered PDUs: (sent at, seq, snapshot).
    newest: Option<(Instant, u64, Snapshot)>,
}

#[derive(Debug)]
pub(super) struct Sender {
    reliable: bool,
    max_rtx: u32,
    send_queue_pdus: usize,
    bytes: ByteQueue,
    slots: VecDeque<Slot>,
    snd_una: u64,
    next_seq: u64,
    peer_rwe: u64,
    sacked: RangeSet,
    lost: BTreeSet<u64>,
    /// Retransmissions not yet acknowledged: (seq, next_seq when resent, rtx count).
    rtx_watch: VecDeque<(u64, u64, u32)>,
    loss_floor: u64,
    dupthresh: u64,
    rtt: RttEstimator,
    cc: Congestion,
    rate: DeliveryRate,
    /// The retransmission timer, or the window probe timer when nothing is in flight.
    timer: Option<Instant>,
    probe: bool,
    tail: TailProbe,
    /// The lowest seq sent past the peer's window (a probe), while unacknowledged.
    probed: Option<u64>,
    /// Timeouts in a row without progress.
    stalled: u32,
    closing: bool,
    failure: Option<Failure>,
    scratch: Vec<(u64, u64)>,
    pdus_sent: u64,
    pdus_retransmitted: u64,
    /// Payload bytes acknowledged.
    bytes_acked: u64,
    spurious: u64,
    malformed: u64,
    timeouts: u64,
    loss_events: u64,
}

impl Sender {
    pub(super) fn new(cfg: &EfcpConfig) -> Self {
        Self {
            reliable: cfg.reliable,
            max_rtx: cfg.max_rtx,
            send_queue_pdus: cfg.send_queue_pdus.max(1),
            bytes: ByteQueue::default(),
            slots: VecDeque::new(),
            snd_una: 0,
            next_seq: 0,
            peer_rwe: cfg.initial_credit.max(1),
            sacked: RangeSet::default(),
            lost: BTreeSet::new(),
            rtx_watch: VecDeque::new(),
            loss_floor: 0,
            dupthresh: MIN_DUPTHRESH,
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto, cfg.ack_delay),
            cc: Congestion::new(),
            rate: DeliveryRate::default(),
            timer: None,
            probe: false,
            tail: TailProbe::default(),
            probed: None,
            stalled: 0,
            closing: false,
            failure: None,
            scratch: Vec::new(),
            pdus_sent: 0,
            pdus_retransmitted: 0,
            bytes_acked: 0,
            spurious: 0,
            malformed: 0,
            timeouts: 0,
            loss_events: 0,
        }
    }

    /// PDUs accepted and not yet sent.
    fn queued(&self) -> usize {
        self.slots.len() - self.outstanding() as usize
    }

    /// PDUs sent and not cumulatively acknowledged.
    fn outstanding(&self) -> u64 {
        self.next_seq - self.snd_una
    }

    fn in_flight(&self) -> u64 {
        self.outstanding()
            .saturating_sub(self.sacked.count() + self.lost.len() as u64)
    }

    /// Where `seq`'s slot is in `slots`.
    fn index(&self, seq: u64) -> Option<usize> {
        usize::try_from(seq.checked_sub(self.snd_una)?).ok()
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        self.slots.get(self.index(seq)?)
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = self.index(seq)?;
        self.slots.get_mut(i)
    }

    pub(super) fn can_send(&self) -> bool {
        !self.is_closed() && self.queued() < self.send_queue_pdus
    }

    /// `close_send` was called or the connection failed.
    pub(super) fn is_closed(&self) -> bool {
        self.closing || self.failure.is_some()
    }

    pub(super) fn failure(&self) -> Option<Failure> {
        self.failure
    }

    /// Queues `sdu` as fragments of at most `payload` bytes.
    pub(super) fn queue_sdu(&mut self, sdu: &[u8], payload: usize) {
        let payload = payload.clamp(1, u32::MAX as usize);
        let at = self.bytes.push(sdu);
        let n = sdu.len().div_ceil(payload).max(1);
        for i in 0..n {
            let start = i * payload;
            let len = payload.min(sdu.len() - start);
            let mut f = 0;
            if i == 0 {
                f |= flags::FIRST;
            }
            if i + 1 == n {
                f |= flags::LAST;
            }
            self.push_slot(at + start as u64, len as u32, f);
        }
    }

    /// Queues the end-of-stream mark (once).
    pub(super) fn queue_eof(&mut self) {
        if !self.is_closed() {
            self.closing = true;
            let at = self.bytes.end();
            self.push_slot(at, 0, flags::EOF);
        }
    }

    fn push_slot(&mut self, off: u64, len: u32, flags: u8) {
        self.slots.push_back(Slot {
            off,
            len,
            flags,
            sacked: false,
            lost: false,
            rtx: 0,
            first_sent: Instant::ZERO,
            sent_at: Instant::ZERO,
            snap: Snapshot::default(),
        });
    }

    /// Everything including the end-of-stream mark was acknowledged (reliable) or
    /// sent (unreliable).
    pub(super) fn is_done(&self) -> bool {
        self.closing && self.failure.is_none() && self.slots.is_empty()
    }

    /// Handles the body of a control PDU.
    pub(super) fn on_control(&mut self, now: Instant, body: &[u8]) {
        let Ok(c) = ControlRepr::parse(body) else {
            self.malformed += 1;
            return;
        };
        if self.failure.is_some() {
            return;
        }
        if c.ack > self.next_seq {
            // Acknowledges what was never sent: garbage.
            self.malformed += 1;
            return;
        }
        let in_flight = self.in_flight();
        let fack = self.sacked.max_end().unwrap_or(0);
        let echoed = self.echoed(&c);
        let mut ev = AckEvent::default();
        let progress = c.ack > self.snd_una;
        while self.snd_una < c.ack {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            let seq = self.snd_una;
            self.snd_una += 1;
            if slot.lost {
                self.lost.remove(&seq);
            }
            if !slot.sacked {
                self.on_delivered(&mut ev, now, seq, &slot, fack);
            }
            self.bytes.release_to(slot.off + u64::from(slot.len));
            self.bytes_acked = slot.off + u64::from(slot.len);
        }
        self.sacked.remove_below(self.snd_una);
        self.loss_floor = self.loss_floor.max(self.snd_una);
        self.on_sacks(&mut ev, now, &c.sacks, fack);
        self.on_tail_ack(now);
        if let Some(t) = echoed {
            self.rtt.sample(now - t);
        }
        let window = self
            .rtt
            .srtt()
            .map_or(RATE_WINDOW_MIN, |s| (s * 10).max(RATE_WINDOW_MIN));
        self.rate
            .on_delivered(now, ev.newly, ev.newest.map(|n| n.2), window);
        if ev.reorder > 0 {
            self.dupthresh = self.dupthresh.max(ev.reorder + 1).min(MAX_DUPTHRESH);
        }
        self.peer_rwe = self.peer_rwe.max(c.rwe);
        self.on_window_opened();
        if progress || ev.newly > 0 || c.rwe <= self.snd_una {
            // The peer is there: it took data, or told us its window is closed.
            self.stalled = 0;
        }
        if progress {
            // RFC 6298 §5.3: restart the timer when new data is acknowledged.
            self.timer = None;
            self.end_tail_episode();
        }
        self.cc
            .on_ack(ev.newly, in_flight, self.snd_una, self.next_seq);
        self.detect_losses(now);
        self.detect_lost_retransmissions(now, ev.newest.map(|n| n.0));
        self.update_timer(now);
        if progress || self.recovering() {
            self.arm_tail_probe(now);
        }
    }

    /// The first sending time of the PDU the acknowledgement echoes, when this
    /// acknowledgement newly covers it: the round trip is timed from there. An
    /// acknowledgement without an echo (caused by a retransmission or a duplicate)
    /// gives no sample, which is Karn's rule without its blind spot (a cumulative
    /// acknowledgement carried by a retransmission no longer times the PDUs sent
    /// before it).
    fn echoed(&self, c: &ControlRepr) -> Option<Instant> {
        let e = c.echo?;
        let slot = self.slot(e)?;
        let covered = e < c.ack || c.sacks.iter().any(|&(s, x)| s <= e && e < x);
        (e < self.next_seq && !slot.sacked && covered).then_some(slot.first_sent)
    }

    fn on_sacks(&mut self, ev: &mut AckEvent, now: Instant, sacks: &[(u64, u64)], fack: u64) {
        let mut fresh = std::mem::take(&mut self.scratch);
        fresh.clear();
        for &(s, e) in sacks {
            let (s, e) = (s.max(self.snd_una), e.min(self.next_seq));
            self.sacked.insert(s, e, |a, b| fresh.push((a, b)));
        }
        for &(a, b) in &fresh {
            for seq in a..b {
                let Some(slot) = self.slot_mut(seq) else {
                    break;
                };
                slot.sacked = true;
                let was_lost = std::mem::replace(&mut slot.lost, false);
                let slot = *slot;
                if was_lost {
                    self.lost.remove(&seq);
                }
                self.on_delivered(ev, now, seq, &slot, fack);
            }
        }
        self.scratch = fresh;
    }

    /// A PDU was newly acknowledged, cumulatively or selectively.
    fn on_delivered(&mut self, ev: &mut AckEvent, now: Instant, seq: u64, slot: &Slot, fack: u64) {
        ev.newly += 1;
        if ev
            .newest
            .is_none_or(|(t, s, _)| (slot.sent_at, seq) > (t, s))
        {
            ev.newest = Some((slot.sent_at, seq, slot.snap));
        }
        if slot.rtx == 0 {
            if seq < fack {
                // It arrived after PDUs sent later: reordering, not loss.
                ev.reorder = ev.reorder.max(fack - seq);
            }
        } else if self
            .rtt
            .min_rtt()
            .is_some_and(|m| now - slot.sent_at < m / 2)
        {
            // Acknowledged too soon after the retransmission to be about it.
            self.spurious += 1;
        }
    }

    /// Writes the next DT PDU into `buf`: a retransmission, else a new PDU if the
    /// windows allow. `base` carries the addresses and CEP-ids.
    pub(super) fn poll_transmit(&mut self, now: Instant, base: &Pci, buf: &mut Vec<u8>) -> bool {
        if self.failure.is_some() {
            return false;
        }
        if !self.reliable {
            let Some(slot) = self.slots.pop_front() else {
                return false;
            };
            self.emit(base, self.next_seq, &slot, buf);
            self.next_seq += 1;
            self.snd_una = self.next_seq;
            self.bytes.release_to(slot.off + u64::from(slot.len));
            self.pdus_sent += 1;
            return true;
        }
        if self.send_tail_probe(now, base, buf) {
            return true;
        }
        let cwnd = self.cc.window();
        if self.in_flight() < cwnd && self.retransmit(now, base, buf) {
            return true;
        }
        let queued = self.queued();
        if queued == 0 {
            return false;
        }
        if self.next_seq >= self.peer_rwe && !self.probe {
            self.update_timer(now);
            return false;
        }
        self.in_flight() < cwnd && self.send_new(now, base, buf)
    }

    /// Sends the next queued PDU (the caller checked the windows).
    fn send_new(&mut self, now: Instant, base: &Pci, buf: &mut Vec<u8>) -> bool {
        let seq = self.next_seq;
        let snap = self.rate.snapshot(now);
        let Some(slot) = self.slot_mut(seq) else {
            return false;
        };
        slot.first_sent = now;
        slot.sent_at = now;
        slot.snap = snap;
        let slot = *slot;
        self.emit(base, seq, &slot, buf);
        if seq >= self.peer_rwe {
            self.probed.get_or_insert(seq);
        }
        self.next_seq += 1;
        self.probe = false;
        self.pdus_sent += 1;
        self.timer.get_or_insert(now + self.rtt.rto());
        self.arm_tail_probe(now);
        true
    }

    fn retransmit(&mut self, now: Instant, base: &Pci, buf: &mut Vec<u8>) -> bool {
        let snap = self.rate.snapshot(now);
        while let Some(seq) = self.lost.pop_first() {
            let Some(slot) = self.slot_mut(seq) else {
                continue;
            };
            if slot.sacked || !slot.lost {
                continue;
            }
            slot.lost = false;
            slot.rtx += 1;
            slot.sent_at = now;
            slot.snap = snap;
            let slot = *slot;
            self.emit(base, seq, &slot, buf);
            self.rtx_watch.push_back((seq, self.next_seq, slot.rtx));
            self.pdus_sent += 1;
            self.pdus_retransmitted += 1;
            if seq == self.snd_una || self.timer.is_none() {
                self.timer = Some(now + self.rtt.rto());
            }
            return true;
        }
        false
    }

    fn emit(&self, base: &Pci, seq: u64, slot: &Slot, buf: &mut Vec<u8>) {
        let mut f = slot.flags;
        if seq == 0 {
            f |= flags::DRF;
        }
        if slot.rtx > 0 {
            f |= flags::RTX;
        }
        buf.clear();
        buf.reserve(PCI_LEN + slot.len as usize);
        buf.resize(PCI_LEN, 0);
        Pci {
            pdu_type: PduType::Data,
            flags: f,
            seq,
            ..*base
        }
        .emit(buf);
        self.bytes.copy_to(slot.off, slot.len as usize, buf);
    }

    pub(super) fn fill_stats(&self, s: &mut ConnectionStats) {
        s.pdus_sent = self.pdus_sent;
        s.pdus_retransmitted = self.pdus_retransmitted;
        s.srtt = self.rtt.srtt();
        s.rttvar = self.rtt.rttvar();
        s.bytes_acked = self.bytes_acked;
        s.rto = self.rtt.rto();
        s.cwnd = self.cc.window();
        s.in_flight = self.in_flight();
        s.malformed += self.malformed;
        s.spurious_retransmissions = self.spurious;
        s.timeouts = self.timeouts;
        s.loss_events = self.loss_events;
        s.tail_probes = self.tail.count;
    }
}

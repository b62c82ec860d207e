//! The sending side: the send queue, sequence numbers, the retransmission queue, loss
//! detection, RTT estimation and the congestion window.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Instant;
use crate::wire::control::ControlRepr;
use crate::wire::pci::flags;
use crate::wire::{Pci, PduType, PCI_LEN};

use super::{ConnectionStats, EfcpConfig, Failure};

/// Initial congestion window, PDUs.
const INITIAL_CWND: u64 = 16;
/// Congestion window bounds, PDUs.
const MIN_CWND: u64 = 2;
const MAX_CWND: u64 = 65536;

/// A PDU sent and not yet cumulatively acknowledged.
#[derive(Debug)]
struct Sent {
    flags: u8,
    data: Vec<u8>,
    sent_at: Instant,
    rtx: u32,
    sacked: bool,
    lost: bool,
}

#[derive(Debug)]
pub(super) struct Sender {
    reliable: bool,
    /// PDUs not yet sent: (flags, payload).
    queue: VecDeque<(u8, Vec<u8>)>,
    /// Sent PDUs from `snd_una` on, one per sequence number.
    unacked: VecDeque<Sent>,
    snd_una: u64,
    next_seq: u64,
    peer_rwe: u64,
    sacked: u64,
    /// Sequence numbers to retransmit, oldest first.
    lost: VecDeque<u64>,
    cwnd: u64,
    cwnd_acc: u64,
    ssthresh: u64,
    /// Losses of PDUs below this belong to the loss event already counted.
    recovery_until: u64,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    rto_deadline: Option<Instant>,
    /// The send time of the most recently sent PDU known to be delivered, and its seq.
    rack: Option<(Instant, u64)>,
    probe: bool,
    closing: bool,
    pub(super) failure: Option<Failure>,
    pdus_sent: u64,
    pdus_retransmitted: u64,
}

impl Sender {
    pub(super) fn new(cfg: &EfcpConfig, _now: Instant) -> Self {
        Self {
            reliable: cfg.reliable,
            queue: VecDeque::new(),
            unacked: VecDeque::new(),
            snd_una: 0,
            next_seq: 0,
            peer_rwe: cfg.initial_credit,
            sacked: 0,
            lost: VecDeque::new(),
            cwnd: INITIAL_CWND,
            cwnd_acc: 0,
            ssthresh: MAX_CWND,
            recovery_until: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: cfg.initial_rto,
            rto_deadline: None,
            rack: None,
            probe: false,
            closing: false,
            failure: None,
            pdus_sent: 0,
            pdus_retransmitted: 0,
        }
    }

    pub(super) fn can_send(&self, cfg: &EfcpConfig) -> bool {
        !self.closing && self.failure.is_none() && self.queue.len() < cfg.send_queue_pdus.max(1)
    }

    pub(super) fn closed(&self) -> bool {
        self.closing
    }

    pub(super) fn queue_sdu(&mut self, sdu: &[u8], payload: usize) {
        if sdu.is_empty() {
            self.queue
                .push_back((flags::FIRST | flags::LAST, Vec::new()));
            return;
        }
        let n = sdu.len().div_ceil(payload);
        for (i, chunk) in sdu.chunks(payload).enumerate() {
            let mut f = 0;
            if i == 0 {
                f |= flags::FIRST;
            }
            if i + 1 == n {
                f |= flags::LAST;
            }
            self.queue.push_back((f, chunk.to_vec()));
        }
    }

    pub(super) fn queue_eof(&mut self) {
        if !self.closing {
            self.closing = true;
            self.queue.push_back((flags::EOF, Vec::new()));
        }
    }

    pub(super) fn is_done(&self) -> bool {
        self.closing && self.queue.is_empty() && self.unacked.is_empty()
    }

    fn in_flight(&self) -> u64 {
        (self.unacked.len() as u64).saturating_sub(self.sacked + self.lost.len() as u64)
    }

    fn get(&mut self, seq: u64) -> Option<&mut Sent> {
        let i = usize::try_from(seq.checked_sub(self.snd_una)?).ok()?;
        self.unacked.get_mut(i)
    }

    /// Handles an acknowledgement.
    pub(super) fn on_control(&mut self, cfg: &EfcpConfig, now: Instant, body: &[u8]) {
        let Ok(c) = ControlRepr::parse(body) else {
            return;
        };
        if c.ack > self.next_seq {
            return; // acknowledges what was never sent: ignore
        }
        self.peer_rwe = self.peer_rwe.max(c.rwe);
        if self.peer_rwe > self.next_seq {
            self.probe = false;
        }
        let mut newly = 0u64;
        let mut sample: Option<Instant> = None;
        let advanced = c.ack > self.snd_una;
        while self.snd_una < c.ack {
            let Some(s) = self.unacked.pop_front() else {
                break;
            };
            if s.sacked {
                self.sacked -= 1;
            } else {
                newly += 1;
                if s.lost {
                    // Delivered after all: no retransmission needed.
                    self.lost.retain(|&q| q != self.snd_una);
                }
                note(&mut sample, &mut self.rack, s.sent_at, s.rtx, self.snd_una);
            }
            self.snd_una += 1;
        }
        for &(start, end) in &c.sacks {
            for seq in start.max(self.snd_una)..end.min(self.next_seq) {
                let Some(s) = self.get(seq) else { break };
                if s.sacked {
                    continue;
                }
                s.sacked = true;
                let (sent_at, rtx, was_lost) = (s.sent_at, s.rtx, s.lost);
                s.lost = false;
                if was_lost {
                    self.lost.retain(|&q| q != seq);
                }
                newly += 1;
                self.sacked += 1;
                note(&mut sample, &mut self.rack, sent_at, rtx, seq);
            }
        }
        if let Some(t) = sample {
            self.on_rtt_sample(cfg, now - t);
        }
        if advanced || newly > 0 {
            self.rto_deadline = (!self.unacked.is_empty()).then(|| now + self.rto);
            if advanced {
                // Progress resets the back-off.
                self.rto = self.base_rto(cfg);
            }
        }
        self.grow_cwnd(newly);
        self.detect_losses();
        if self.queue.is_empty() && self.unacked.is_empty() {
            self.rto_deadline = None;
        }
    }

    fn base_rto(&self, cfg: &EfcpConfig) -> Duration {
        match self.srtt {
            Some(srtt) => (srtt + (self.rttvar * 4).max(Duration::from_micros(100)))
                .clamp(cfg.min_rto, cfg.max_rto),
            None => cfg.initial_rto,
        }
    }

    /// RFC 6298 estimates (Karn's rule is applied by the caller: no retransmitted PDU).
    fn on_rtt_sample(&mut self, cfg: &EfcpConfig, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        self.rto = self.base_rto(cfg);
    }

    fn grow_cwnd(&mut self, newly: u64) {
        if newly == 0 || self.snd_una < self.recovery_until {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = (self.cwnd + newly).min(MAX_CWND);
        } else {
            self.cwnd_acc += newly;
            while self.cwnd_acc >= self.cwnd {
                self.cwnd_acc -= self.cwnd;
                self.cwnd = (self.cwnd + 1).min(MAX_CWND);
            }
        }
    }

    /// A PDU is lost if it was sent more than a quarter RTT before a PDU that was
    /// delivered (time order), or if three PDUs above it were selectively acknowledged
    /// (duplicate threshold, for PDUs sent in the same instant).
    fn detect_losses(&mut self) {
        let Some((rack_time, rack_seq)) = self.rack else {
            return;
        };
        let reo = self.srtt.map_or(Duration::from_millis(1), |s| s / 4);
        let mut event = false;
        let top = rack_seq.min(self.next_seq.saturating_sub(1));
        let mut sacked_above = 0u32;
        let mut seq = top;
        while seq >= self.snd_una {
            let Some(s) = self.get(seq) else { break };
            if s.sacked {
                sacked_above += 1;
            } else if !s.lost
                && seq < top
                && (s.sent_at + reo <= rack_time && s.sent_at < rack_time || sacked_above >= 3)
            {
                s.lost = true;
                self.lost.push_back(seq);
                event |= seq >= self.recovery_until;
            }
            if seq == 0 {
                break;
            }
            seq -= 1;
        }
        if event {
            // Oldest first.
            self.lost.make_contiguous().sort_unstable();
            self.enter_recovery(false);
        }
    }

    fn enter_recovery(&mut self, timeout: bool) {
        self.ssthresh = (self.cwnd / 2).max(MIN_CWND);
        self.cwnd = if timeout { MIN_CWND } else { self.ssthresh };
        self.cwnd_acc = 0;
        self.recovery_until = self.next_seq;
    }

    pub(super) fn on_timeout(&mut self, cfg: &EfcpConfig, now: Instant) {
        let Some(deadline) = self.rto_deadline else {
            return;
        };
        if now < deadline || !self.reliable {
            return;
        }
        if self.unacked.is_empty() {
            // Window closed and nothing in flight: probe with the next PDU.
            if !self.queue.is_empty() {
                self.probe = true;
            }
            self.rto_deadline = None;
            return;
        }
        let oldest_rtx = self.unacked.iter().find(|s| !s.sacked).map_or(0, |s| s.rtx);
        if oldest_rtx >= cfg.max_rtx {
            self.failure = Some(Failure::RetransmissionsExhausted);
            self.queue.clear();
            self.lost.clear();
            self.rto_deadline = None;
            return;
        }
        let rto = self.rto;
        let mut any = false;
        for seq in self.snd_una..self.next_seq {
            let Some(s) = self.get(seq) else { break };
            if !s.sacked && !s.lost && s.sent_at + rto <= now {
                s.lost = true;
                self.lost.push_back(seq);
                any = true;
            }
        }
        if !any {
            // Everything outstanding is younger than the RTO: resend the oldest anyway.
            let first = (self.snd_una..self.next_seq)
                .find(|&q| self.get(q).is_some_and(|s| !s.sacked && !s.lost));
            if let Some(seq) = first {
                if let Some(s) = self.get(seq) {
                    s.lost = true;
                }
                self.lost.push_back(seq);
            }
        }
        self.enter_recovery(true);
        self.rto = (self.rto * 2).min(cfg.max_rto);
        self.rto_deadline = Some(now + self.rto);
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.failure.is_some() {
            return None;
        }
        self.rto_deadline
    }

    pub(super) fn poll_transmit(
        &mut self,
        cfg: &EfcpConfig,
        now: Instant,
        base: Pci,
        buf: &mut Vec<u8>,
    ) -> bool {
        if self.failure.is_some() {
            return false;
        }
        while let Some(seq) = self.lost.pop_front() {
            let rto = self.rto;
            let Some(s) = self.get(seq) else { continue };
            if s.sacked || !s.lost {
                continue;
            }
            s.lost = false;
            s.rtx += 1;
            s.sent_at = now;
            let (f, data) = (s.flags, &s.data);
            emit(buf, base, seq, f, data);
            self.pdus_sent += 1;
            self.pdus_retransmitted += 1;
            if self.rto_deadline.is_none() {
                self.rto_deadline = Some(now + rto);
            }
            return true;
        }
        if self.queue.is_empty() {
            return false;
        }
        if self.reliable {
            let window_open =
                self.next_seq < self.peer_rwe || (self.probe && self.unacked.is_empty());
            if !window_open || self.in_flight() >= self.cwnd {
                if !window_open && self.unacked.is_empty() && self.rto_deadline.is_none() {
                    self.rto_deadline = Some(now + self.rto);
                }
                return false;
            }
        }
        let Some((mut f, data)) = self.queue.pop_front() else {
            return false;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        if seq == 0 {
            f |= flags::DRF;
        }
        emit(buf, base, seq, f, &data);
        self.pdus_sent += 1;
        if self.reliable {
            self.probe = false;
            self.unacked.push_back(Sent {
                flags: f,
                data,
                sent_at: now,
                rtx: 0,
                sacked: false,
                lost: false,
            });
            if self.rto_deadline.is_none() {
                self.rto_deadline = Some(now + self.rto);
            }
        }
        let _ = cfg;
        true
    }

    pub(super) fn stats(&self) -> ConnectionStats {
        ConnectionStats {
            pdus_sent: self.pdus_sent,
            pdus_retransmitted: self.pdus_retransmitted,
            srtt: self.srtt,
            rto: self.rto,
            cwnd: self.cwnd,
            in_flight: self.in_flight(),
            ..ConnectionStats::default()
        }
    }
}

/// Records a delivered PDU: an RTT sample if it was never retransmitted (Karn), and
/// the most recent send time among delivered PDUs (for loss detection).
fn note(
    sample: &mut Option<Instant>,
    rack: &mut Option<(Instant, u64)>,
    sent_at: Instant,
    rtx: u32,
    seq: u64,
) {
    if rtx == 0 {
        *sample = Some(sample.map_or(sent_at, |t| t.max(sent_at)));
    }
    if rack.is_none_or(|(t, q)| sent_at > t || (sent_at == t && seq > q)) {
        *rack = Some((sent_at, seq));
    }
}

fn emit(buf: &mut Vec<u8>, base: Pci, seq: u64, f: u8, data: &[u8]) {
    buf.clear();
    buf.resize(PCI_LEN, 0);
    Pci {
        pdu_type: PduType::Data,
        flags: f,
        seq,
        ..base
    }
    .emit(buf);
    buf.extend_from_slice(data);
}

//! The receiving side: duplicate detection, reordering, reassembly, the receive window
//! (advanced by the application's reads) and acknowledgements.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::time::Instant;
use crate::wire::control::{ControlRepr, MAX_SACKS};
use crate::wire::pci::flags;
use crate::wire::Pci;

use super::{ConnectionStats, Delivery, EfcpConfig};

/// How many recent sequence numbers an unreliable receiver remembers for duplicates.
const SEEN_WINDOW: usize = 4096;

#[derive(Debug)]
pub(super) struct Receiver {
    reliable: bool,
    credit: u64,
    ack_delay: Duration,
    /// Reliable: the next sequence number expected in order.
    rcv_next: u64,
    /// Reliable: PDUs received above `rcv_next`.
    ooo: BTreeMap<u64, (u8, Vec<u8>)>,
    /// In-order PDUs not yet read by the application.
    ready: VecDeque<(u8, Vec<u8>)>,
    /// Complete SDUs (or end marks) in `ready`.
    complete: usize,
    /// PDUs the application consumed: the window's left edge.
    consumed: u64,
    advertised: u64,
    ack_now: bool,
    ack_at: Option<Instant>,
    unacked: u64,
    eof_delivered: bool,
    /// The end of stream arrived (in order, for reliable flows); it may not be read yet.
    eof_received: bool,
    /// Unreliable: deliveries in arrival order, the SDU being reassembled, and the
    /// recently seen sequence numbers.
    deliveries: VecDeque<Delivery>,
    partial: Option<(u64, Vec<u8>)>,
    seen: BTreeSet<u64>,
    pdus_received: u64,
    duplicates: u64,
    sdus_delivered: u64,
}

impl Receiver {
    pub(super) fn new(cfg: &EfcpConfig) -> Self {
        Self {
            reliable: cfg.reliable,
            credit: cfg.initial_credit.max(1),
            ack_delay: cfg.ack_delay,
            rcv_next: 0,
            ooo: BTreeMap::new(),
            ready: VecDeque::new(),
            complete: 0,
            consumed: 0,
            advertised: cfg.initial_credit.max(1),
            ack_now: false,
            ack_at: None,
            unacked: 0,
            eof_delivered: false,
            eof_received: false,
            deliveries: VecDeque::new(),
            partial: None,
            seen: BTreeSet::new(),
            pdus_received: 0,
            duplicates: 0,
            sdus_delivered: 0,
        }
    }

    fn rwe(&self) -> u64 {
        self.consumed + self.credit
    }

    pub(super) fn on_data(&mut self, _cfg: &EfcpConfig, now: Instant, pci: &Pci, payload: &[u8]) {
        self.pdus_received += 1;
        if pci.flags & !(flags::FIRST | flags::LAST | flags::EOF | flags::DRF) != 0 {
            return;
        }
        if self.reliable {
            self.on_reliable(now, pci.seq, pci.flags, payload);
        } else {
            self.on_unreliable(pci.seq, pci.flags, payload);
        }
    }

    fn on_reliable(&mut self, now: Instant, seq: u64, f: u8, payload: &[u8]) {
        if seq < self.rcv_next || self.ooo.contains_key(&seq) {
            self.duplicates += 1;
            self.ack_now = true; // the sender may have missed our ack
            return;
        }
        if seq >= self.rwe() {
            self.ack_now = true; // beyond the window (a probe): tell the sender where it is
            return;
        }
        if seq > self.rcv_next {
            self.ooo.insert(seq, (f, payload.to_vec()));
            self.ack_now = true;
            return;
        }
        self.push_ready(f, payload.to_vec());
        self.rcv_next += 1;
        let had_gap = !self.ooo.is_empty();
        while let Some(e) = self.ooo.first_entry() {
            if *e.key() != self.rcv_next {
                break;
            }
            let (f, data) = e.remove();
            self.push_ready(f, data);
            self.rcv_next += 1;
        }
        self.unacked += 1;
        // The end of stream is acknowledged at once: the peer may be waiting on it to
        // exit, and this side may exit right after reading it.
        let eof = self.ready.back().is_some_and(|(f, _)| f & flags::EOF != 0);
        if had_gap || eof || self.unacked >= (self.credit / 4).max(1) {
            self.ack_now = true;
        } else if self.ack_at.is_none() {
            self.ack_at = Some(now + self.ack_delay);
        }
    }

    fn push_ready(&mut self, f: u8, data: Vec<u8>) {
        if f & (flags::LAST | flags::EOF) != 0 {
            self.complete += 1;
        }
        if f & flags::EOF != 0 {
            self.eof_received = true;
        }
        self.ready.push_back((f, data));
    }

    fn on_unreliable(&mut self, seq: u64, f: u8, payload: &[u8]) {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        if self.seen.len() > SEEN_WINDOW {
            self.seen.pop_first();
        }
        if self.deliveries.len() as u64 >= self.credit {
            return; // the application is not reading: drop, as an unreliable flow may
        }
        if f & flags::EOF != 0 {
            self.eof_received = true;
            self.deliveries.push_back(Delivery::Eof);
            return;
        }
        if f & flags::FIRST != 0 {
            self.partial = Some((seq + 1, payload.to_vec()));
        } else if let Some((next, data)) = &mut self.partial {
            if *next == seq {
                data.extend_from_slice(payload);
                *next += 1;
            } else {
                self.partial = None;
            }
        }
        if f & flags::LAST != 0 {
            if let Some((_, data)) = self.partial.take() {
                self.deliveries.push_back(Delivery::Sdu(data));
            }
        }
    }

    pub(super) fn has_delivery(&self) -> bool {
        if self.eof_delivered {
            return false;
        }
        if self.reliable {
            self.complete > 0
        } else {
            !self.deliveries.is_empty()
        }
    }

    pub(super) fn recv(&mut self, _cfg: &EfcpConfig, _now: Instant) -> Option<Delivery> {
        if self.eof_delivered {
            return None;
        }
        let d = if self.reliable {
            self.recv_reliable()?
        } else {
            self.deliveries.pop_front()?
        };
        match &d {
            Delivery::Eof => self.eof_delivered = true,
            Delivery::Sdu(_) => self.sdus_delivered += 1,
        }
        Some(d)
    }

    fn recv_reliable(&mut self) -> Option<Delivery> {
        if self.complete == 0 {
            return None;
        }
        let mut sdu: Option<Vec<u8>> = None;
        while let Some((f, data)) = self.ready.pop_front() {
            self.consumed += 1;
            if f & flags::EOF != 0 {
                self.complete -= 1;
                self.window_update();
                if let Some(s) = sdu {
                    // An end mark inside an SDU is a protocol error: deliver what came.
                    return Some(Delivery::Sdu(s));
                }
                return Some(Delivery::Eof);
            }
            match &mut sdu {
                None => sdu = Some(data),
                Some(s) => s.extend_from_slice(&data),
            }
            if f & flags::LAST != 0 {
                self.complete -= 1;
                break;
            }
        }
        self.window_update();
        sdu.map(Delivery::Sdu)
    }

    /// Reading opened the window: tell the sender once it grew by a quarter.
    fn window_update(&mut self) {
        if self.rwe() >= self.advertised + (self.credit / 4).max(1) {
            self.ack_now = true;
        }
    }

    pub(super) fn eof_delivered(&self) -> bool {
        self.eof_delivered
    }

    pub(super) fn eof_received(&self) -> bool {
        self.eof_received
    }

    /// The acknowledgement to send now, if one is due.
    pub(super) fn poll_ack(&mut self, now: Instant) -> Option<ControlRepr> {
        let due = self.ack_now || self.ack_at.is_some_and(|t| t <= now);
        if !due {
            return None;
        }
        self.ack_now = false;
        self.ack_at = None;
        self.unacked = 0;
        self.advertised = self.rwe();
        let mut sacks: Vec<(u64, u64)> = Vec::new();
        for &seq in self.ooo.keys() {
            match sacks.last_mut() {
                Some((_, end)) if *end == seq => *end += 1,
                _ => {
                    if sacks.len() == MAX_SACKS {
                        break;
                    }
                    sacks.push((seq, seq + 1));
                }
            }
        }
        Some(ControlRepr {
            ack: self.rcv_next,
            rwe: self.advertised,
            sacks,
        })
    }

    pub(super) fn on_timeout(&mut self, _now: Instant) {}

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.ack_now {
            return Some(Instant::ZERO);
        }
        self.ack_at
    }

    pub(super) fn fill_stats(&self, s: &mut ConnectionStats) {
        s.pdus_received = self.pdus_received;
        s.duplicates = self.duplicates;
        s.sdus_delivered = self.sdus_delivered;
    }
}

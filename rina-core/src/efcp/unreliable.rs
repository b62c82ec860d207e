//! The unreliable receiving side: complete SDUs in arrival order, no duplicates, no
//! acknowledgements.
//!
//! - Duplicates: a bitmap of the last [`SEEN_WINDOW`] sequence numbers below the
//!   highest one seen; anything older is dropped as a duplicate.
//! - Fragments wait in `frags` (at most `credit` of them, the oldest evicted first)
//!   until a contiguous `FIRST ..= LAST` run is there, whatever order they came in.
//!   A `FIRST` drops the fragments of older, still incomplete SDUs.
//! - Complete SDUs wait in `out` for the application, at most `credit` of them; more
//!   are dropped (an unreliable flow may drop).
//! - `EOF` is delivered after the SDUs before it in arrival order; what arrives later
//!   is ignored.

use std::collections::{BTreeMap, VecDeque};

use crate::wire::pci::flags;

use super::{ConnectionStats, Delivery, EfcpConfig};

/// Sequence numbers remembered for duplicate detection.
const SEEN_WINDOW: u64 = 4096;
const SEEN_WORDS: usize = (SEEN_WINDOW / 64) as usize;

/// Which of the last [`SEEN_WINDOW`] sequence numbers arrived.
#[derive(Debug)]
struct SeenWindow {
    /// One past the highest sequence number seen.
    top: u64,
    bits: Box<[u64; SEEN_WORDS]>,
}

impl SeenWindow {
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % SEEN_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Records `seq`; false if it was seen or is too old to tell.
    fn insert(&mut self, seq: u64) -> bool {
        if seq >= self.top {
            let Some(new_top) = seq.checked_add(1) else {
                return false;
            };
            if new_top - self.top >= SEEN_WINDOW {
                *self.bits = [0; SEEN_WORDS];
            } else {
                for s in self.top..seq {
                    let (w, b) = Self::bit(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = new_top;
            let (w, b) = Self::bit(seq);
            self.bits[w] |= b;
            return true;
        }
        if self.top - seq > SEEN_WINDOW {
            return false;
        }
        let (w, b) = Self::bit(seq);
        let fresh = self.bits[w] & b == 0;
        self.bits[w] |= b;
        fresh
    }
}

#[derive(Debug)]
pub(super) struct Unreliable {
    cap: usize,
    max_sdu: usize,
    seen: SeenWindow,
    frags: BTreeMap<u64, (u8, Vec<u8>)>,
    out: VecDeque<Delivery>,
    eof_received: bool,
    eof_delivered: bool,
    pdus_received: u64,
    duplicates: u64,
    sdus_delivered: u64,
}

impl Unreliable {
    pub(super) fn new(cfg: &EfcpConfig) -> Self {
        Self {
            cap: usize::try_from(cfg.initial_credit.max(1)).unwrap_or(usize::MAX),
            max_sdu: cfg.max_sdu_size,
            seen: SeenWindow {
                top: 0,
                bits: Box::new([0; SEEN_WORDS]),
            },
            frags: BTreeMap::new(),
            out: VecDeque::new(),
            eof_received: false,
            eof_delivered: false,
            pdus_received: 0,
            duplicates: 0,
            sdus_delivered: 0,
        }
    }

    pub(super) fn on_data(&mut self, seq: u64, f: u8, payload: &[u8]) {
        self.pdus_received += 1;
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        if self.eof_received {
            return;
        }
        if f & flags::EOF != 0 {
            self.eof_received = true;
            self.frags.clear();
            self.out.push_back(Delivery::Eof);
            return;
        }
        if f & flags::FIRST != 0 {
            // Older SDUs still missing fragments are given up.
            self.frags = self.frags.split_off(&seq);
        }
        if f & flags::FIRST != 0 && f & flags::LAST != 0 {
            self.deliver(payload.to_vec());
            return;
        }
        self.frags.insert(seq, (f, payload.to_vec()));
        if self.frags.len() > self.cap {
            self.frags.pop_first();
        }
        self.try_complete(seq);
    }

    /// Delivers the SDU `seq` belongs to if all its fragments are here.
    fn try_complete(&mut self, seq: u64) {
        let mut first = seq;
        loop {
            let Some(&(f, _)) = self.frags.get(&first) else {
                return;
            };
            if f & flags::FIRST != 0 {
                break;
            }
            if first != seq && f & flags::LAST != 0 {
                return;
            }
            let Some(prev) = first.checked_sub(1) else {
                return;
            };
            first = prev;
        }
        let mut last = seq;
        loop {
            let Some(&(f, _)) = self.frags.get(&last) else {
                return;
            };
            if f & flags::LAST != 0 {
                break;
            }
            if last != first && f & flags::FIRST != 0 {
                return;
            }
            let Some(next) = last.checked_add(1) else {
                return;
            };
            last = next;
        }
        let mut rest = self.frags.split_off(&first);
        let mut after = rest.split_off(&last.saturating_add(1));
        self.frags.append(&mut after);
        let mut sdu = Vec::new();
        for (_, (_, data)) in rest {
            sdu.extend_from_slice(&data);
        }
        if sdu.len() <= self.max_sdu {
            self.deliver(sdu);
        }
    }

    fn deliver(&mut self, sdu: Vec<u8>) {
        if self.out.len() < self.cap {
            self.out.push_back(Delivery::Sdu(sdu));
        }
    }

    pub(super) fn has_delivery(&self) -> bool {
        !self.eof_delivered && !self.out.is_empty()
    }

    pub(super) fn recv(&mut self) -> Option<Delivery> {
        if self.eof_delivered {
            return None;
        }
        let d = self.out.pop_front()?;
        match d {
            Delivery::Eof => self.eof_delivered = true,
            Delivery::Sdu(_) => self.sdus_delivered += 1,
        }
        Some(d)
    }

    pub(super) fn eof_received(&self) -> bool {
        self.eof_received
    }

    pub(super) fn eof_delivered(&self) -> bool {
        self.eof_delivered
    }

    pub(super) fn fill_stats(&self, s: &mut ConnectionStats) {
        s.pdus_received = self.pdus_received;
        s.duplicates = self.duplicates;
        s.sdus_delivered = self.sdus_delivered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_window_slides() {
        let mut w = SeenWindow {
            top: 0,
            bits: Box::new([0; SEEN_WORDS]),
        };
        assert!(w.insert(5));
        assert!(!w.insert(5));
        assert!(w.insert(3));
        assert!(w.insert(5000));
        assert!(!w.insert(3), "too old to tell: dropped");
        assert!(w.insert(4999));
        assert!(!w.insert(4999));
        assert!(w.insert(5000 + SEEN_WINDOW - 1));
        assert!(!w.insert(u64::MAX));
    }

    #[test]
    fn fragments_in_any_order_and_stale_sdus_dropped() {
        let mut u = Unreliable::new(&EfcpConfig::default());
        u.on_data(2, flags::LAST, b"c");
        u.on_data(0, flags::FIRST, b"a");
        assert!(!u.has_delivery());
        u.on_data(1, 0, b"b");
        assert_eq!(u.recv(), Some(Delivery::Sdu(b"abc".to_vec())));
        u.on_data(3, flags::FIRST, b"x"); // its LAST (4) never comes
        u.on_data(5, flags::FIRST, b"y");
        u.on_data(4, flags::LAST, b"z");
        assert!(!u.has_delivery(), "SDU 3..=4 was given up");
        u.on_data(6, flags::LAST, b"w");
        assert_eq!(u.recv(), Some(Delivery::Sdu(b"yw".to_vec())));
        assert!(u.frags.len() <= 1);
    }
}

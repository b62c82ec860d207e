//! The unreliable receiving side: complete SDUs in arrival order, no duplicates, no
//! acknowledgements.
//!
//! - Duplicates: a bitmap of the last [`SEEN_WINDOW`] sequence numbers below the
//!   highest one seen; anything older is dropped as a duplicate.
//! - Fragments that come in order are appended to the SDU they belong to as they
//!   come (`run`: one copy, no walk). Others wait in `frags` (at most `credit` of
//!   them, the oldest evicted first) until a contiguous `FIRST ..= LAST` run is there,
//!   whatever order they came in; fragments that came early continue a run when the
//!   one it waits for arrives.
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

/// An SDU being put together from fragments that came in order.
#[derive(Debug)]
struct Run {
    /// Its first fragment's sequence number.
    start: u64,
    /// The sequence number of the fragment it waits for.
    next: u64,
    /// Its bytes so far.
    bytes: Vec<u8>,
}

/// Bytes set aside for an SDU being put together (at most the largest SDU): a 60 kB
/// SDU then grows without being copied again.
const RUN_CAPACITY: usize = 64 << 10;

#[derive(Debug)]
pub(super) struct Unreliable {
    cap: usize,
    max_sdu: usize,
    seen: SeenWindow,
    frags: BTreeMap<u64, (u8, Vec<u8>)>,
    /// The SDU whose fragments are coming in order, put together as they come.
    run: Option<Run>,
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
            run: None,
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
            self.run = None;
            self.out.push_back(Delivery::Eof);
            return;
        }
        if f & flags::FIRST != 0 {
            // Older SDUs still missing fragments are given up.
            self.frags = self.frags.split_off(&seq);
            if self.run.as_ref().is_some_and(|r| r.start < seq) {
                self.run = None;
            }
            if f & flags::LAST != 0 {
                self.deliver(payload.to_vec());
                return;
            }
            if self.run.is_none() && self.frags.is_empty() {
                self.start_run(seq, payload);
                return;
            }
        } else if self.extend_run(seq, f, payload) {
            return;
        }
        self.frags.insert(seq, (f, payload.to_vec()));
        if self.frags.len() > self.cap {
            self.frags.pop_first();
        }
        // Only a LAST, or a fragment filling a gap before later ones, can complete an
        // SDU: fragments arriving in order do not walk the SDU again each (that walk
        // made a 42-fragment SDU cost some 900 lookups).
        let later = seq
            .checked_add(1)
            .is_some_and(|next| self.frags.range(next..).next().is_some());
        if f & flags::LAST != 0 || later {
            self.try_complete(seq);
        }
    }

    /// Starts putting an SDU together from its first fragment, `seq`.
    fn start_run(&mut self, seq: u64, payload: &[u8]) {
        let Some(next) = seq.checked_add(1) else {
            return;
        };
        let mut bytes = Vec::with_capacity(RUN_CAPACITY.min(self.max_sdu).max(payload.len()));
        bytes.extend_from_slice(payload);
        self.run = Some(Run {
            start: seq,
            next,
            bytes,
        });
    }

    /// Appends fragment `seq` to the SDU being put together if it is the one that SDU
    /// waits for, then the fragments after it that came early; delivers the SDU at its
    /// `LAST`. True if the fragment was taken.
    fn extend_run(&mut self, seq: u64, f: u8, payload: &[u8]) -> bool {
        if self.run.as_ref().is_none_or(|r| r.next != seq) {
            return false;
        }
        let (mut seq, mut f, mut early) = (seq, f, None::<Vec<u8>>);
        loop {
            let Some(run) = self.run.as_mut() else {
                return true;
            };
            let data = early.as_deref().unwrap_or(payload);
            if run.bytes.len().saturating_add(data.len()) > self.max_sdu {
                self.run = None; // too large: given up
                return true;
            }
            run.bytes.extend_from_slice(data);
            if f & flags::LAST != 0 {
                if let Some(run) = self.run.take() {
                    self.deliver(run.bytes);
                }
                return true;
            }
            let Some(next) = seq.checked_add(1) else {
                self.run = None;
                return true;
            };
            run.next = next;
            seq = next;
            match self.frags.get(&seq) {
                Some(&(g, _)) if g & flags::FIRST == 0 => {
                    let (g, d) = self.frags.remove(&seq).unwrap_or_default();
                    f = g;
                    early = Some(d);
                }
                _ => return true,
            }
        }
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
        let mut sdu = Vec::with_capacity(rest.values().map(|(_, d)| d.len()).sum());
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

    /// Every arrival order of a four-fragment SDU (24) delivers it once, whole, when
    /// its last missing fragment comes and not before.
    #[test]
    fn every_order_of_four_fragments_completes_once() {
        let frags: [(u8, &[u8]); 4] = [
            (flags::FIRST, b"ab"),
            (0, b"cd"),
            (0, b"ef"),
            (flags::LAST, b"g"),
        ];
        let mut orders: Vec<Vec<usize>> = vec![vec![]];
        for _ in 0..4 {
            let mut longer = Vec::new();
            for o in &orders {
                for i in (0..4).filter(|i| !o.contains(i)) {
                    longer.push([o.clone(), vec![i]].concat());
                }
            }
            orders = longer;
        }
        assert_eq!(orders.len(), 24);
        for order in orders {
            let mut u = Unreliable::new(&EfcpConfig::default());
            for (n, &i) in order.iter().enumerate() {
                assert!(!u.has_delivery(), "{order:?}: delivered early");
                u.on_data(10 + i as u64, frags[i].0, frags[i].1);
                if n < 3 {
                    assert!(!u.has_delivery(), "{order:?}: delivered before all came");
                }
            }
            assert_eq!(
                u.recv(),
                Some(Delivery::Sdu(b"abcdefg".to_vec())),
                "{order:?}"
            );
            assert_eq!(u.recv(), None, "{order:?}");
            assert!(u.frags.is_empty() && u.run.is_none(), "{order:?}");
        }
    }
}

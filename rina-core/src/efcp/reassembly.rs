//! In-order reassembly of SDUs (reliable mode) and the accounting that drives the
//! receive window.
//!
//! PDUs are pushed in sequence order. A `FIRST` fragment starts an SDU, `LAST` ends
//! it, `EOF` ends the stream. Complete SDUs wait in `ready` until the application
//! reads them.
//!
//! The window's left edge is `released`: the number of PDUs whose buffer space is
//! free again. A PDU is released when the application consumes the SDU it belongs to
//! (reader-driven flow control), with one exception that keeps an SDU larger than the
//! window from deadlocking: the non-final fragments of the SDU being assembled are
//! released at once while no complete SDU waits to be read (the application could
//! not make room by reading). Memory held is therefore bounded by the credit plus one
//! SDU of at most `max_sdu` bytes.
//!
//! Protocol errors from a broken peer never panic: a fragment without a `FIRST`
//! before it is dropped, a `FIRST` inside an SDU drops the unfinished one, an SDU
//! growing past `max_sdu` is dropped, and everything after `EOF` is ignored. Dropped
//! PDUs are released at once so the window keeps moving.

use std::collections::VecDeque;

use crate::wire::pci::flags;

use super::Delivery;

/// A complete SDU (or the end of stream) waiting for the application.
#[derive(Debug)]
struct Ready {
    item: Delivery,
    /// Its PDUs not yet released.
    held: u64,
}

/// The SDU being assembled.
#[derive(Debug)]
struct Partial {
    data: Vec<u8>,
    held: u64,
}

#[derive(Debug)]
pub(super) struct Reassembly {
    max_sdu: usize,
    partial: Option<Partial>,
    ready: VecDeque<Ready>,
    released: u64,
    eof_received: bool,
    eof_delivered: bool,
}

impl Reassembly {
    pub(super) fn new(max_sdu: usize) -> Self {
        Self {
            max_sdu,
            partial: None,
            ready: VecDeque::new(),
            released: 0,
            eof_received: false,
            eof_delivered: false,
        }
    }

    /// PDUs whose space is free: the window's left edge.
    pub(super) fn released(&self) -> u64 {
        self.released
    }

    /// The end of stream arrived (it may not have been read yet).
    pub(super) fn eof_received(&self) -> bool {
        self.eof_received
    }

    /// `pop` returned the end of stream.
    pub(super) fn eof_delivered(&self) -> bool {
        self.eof_delivered
    }

    /// `pop` would return something.
    pub(super) fn has_delivery(&self) -> bool {
        !self.eof_delivered && !self.ready.is_empty()
    }

    /// Takes the next PDU in sequence order.
    pub(super) fn push(&mut self, f: u8, payload: &[u8]) {
        if self.eof_received {
            self.released += 1;
            return;
        }
        if f & flags::EOF != 0 {
            self.drop_partial();
            self.eof_received = true;
            self.ready.push_back(Ready {
                item: Delivery::Eof,
                held: 1,
            });
            return;
        }
        if f & flags::FIRST != 0 {
            self.drop_partial();
            let cap = if f & flags::LAST != 0 {
                payload.len()
            } else {
                0
            };
            self.partial = Some(Partial {
                data: Vec::with_capacity(cap),
                held: 0,
            });
        }
        let Some(p) = self.partial.as_mut() else {
            // A fragment whose SDU start we never saw.
            self.released += 1;
            return;
        };
        if p.data.len() + payload.len() > self.max_sdu {
            self.drop_partial();
            self.released += 1;
            return;
        }
        p.data.extend_from_slice(payload);
        if f & flags::LAST != 0 {
            p.held += 1;
            if let Some(p) = self.partial.take() {
                self.ready.push_back(Ready {
                    item: Delivery::Sdu(p.data),
                    held: p.held,
                });
            }
        } else if self.ready.is_empty() {
            self.released += 1;
        } else {
            p.held += 1;
        }
    }

    fn drop_partial(&mut self) {
        if let Some(p) = self.partial.take() {
            self.released += p.held;
        }
    }

    /// The next complete SDU or the end of stream; releases its PDUs.
    pub(super) fn pop(&mut self) -> Option<Delivery> {
        if self.eof_delivered {
            return None;
        }
        let r = self.ready.pop_front()?;
        self.released += r.held;
        if self.ready.is_empty() {
            if let Some(p) = self.partial.as_mut() {
                // Nothing left to read before it: free its fragments (see module docs).
                self.released += std::mem::take(&mut p.held);
            }
        }
        if r.item == Delivery::Eof {
            self.eof_delivered = true;
        }
        Some(r.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flags::{EOF, FIRST, LAST};

    #[test]
    fn window_edge_follows_reads() {
        let mut r = Reassembly::new(1000);
        r.push(FIRST | LAST, b"a");
        r.push(FIRST, b"b");
        r.push(LAST, b"c");
        assert_eq!(r.released(), 0, "nothing read yet");
        assert_eq!(r.pop(), Some(Delivery::Sdu(b"a".to_vec())));
        assert_eq!(r.released(), 1);
        assert_eq!(r.pop(), Some(Delivery::Sdu(b"bc".to_vec())));
        assert_eq!(r.released(), 3);
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn sdu_larger_than_the_window_does_not_deadlock() {
        let mut r = Reassembly::new(1000);
        for _ in 0..10 {
            r.push(if r.released() == 0 { FIRST } else { 0 }, b"xy");
        }
        assert_eq!(
            r.released(),
            10,
            "fragments released while nothing is readable"
        );
        r.push(LAST, b"z");
        assert_eq!(r.released(), 10, "the last one waits for the read");
        assert_eq!(
            r.pop()
                .map(|d| matches!(d, Delivery::Sdu(v) if v.len() == 21)),
            Some(true)
        );
        assert_eq!(r.released(), 11);
    }

    #[test]
    fn protocol_errors_release_and_never_panic() {
        let mut r = Reassembly::new(4);
        r.push(0, b"orphan");
        r.push(LAST, b"orphan");
        assert_eq!(r.released(), 2);
        r.push(FIRST, b"abc");
        r.push(LAST, b"de"); // 5 > max_sdu 4
        assert_eq!(r.released(), 4);
        r.push(FIRST, b"ab");
        r.push(FIRST | LAST, b"cd"); // restarts
        assert_eq!(r.released(), 5);
        r.push(EOF, b"");
        r.push(FIRST | LAST, b"late");
        assert_eq!(r.pop(), Some(Delivery::Sdu(b"cd".to_vec())));
        assert!(r.eof_received() && !r.eof_delivered());
        assert_eq!(r.pop(), Some(Delivery::Eof));
        assert_eq!(r.pop(), None);
        assert!(r.eof_delivered());
    }
}

//! The body of an EFCP control PDU: cumulative acknowledgement, right window edge and
//! selective acknowledgements.
//!
//! Layout (network byte order), after a PCI of type `Control`:
//!
//! ```text
//! ack: u64      every DT sequence number below it was received
//! rwe: u64      the sender may send sequence numbers below it
//! n_sack: u8    at most MAX_SACKS
//! n_sack x (start: u64, end: u64)   half-open ranges received above `ack`,
//!                                   strictly increasing and disjoint
//! ```

use super::codec::{Reader, Writer};
use super::Error;

/// The most SACK ranges one control PDU carries.
pub const MAX_SACKS: usize = 16;

/// A decoded control PDU body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlRepr {
    /// Cumulative acknowledgement: every sequence number below it was received.
    pub ack: u64,
    /// Right window edge: the peer may send sequence numbers below it.
    pub rwe: u64,
    /// Ranges `[start, end)` received above `ack`, increasing.
    pub sacks: Vec<(u64, u64)>,
}

impl ControlRepr {
    /// Decodes a body; never panics.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let ack = r.u64()?;
        let rwe = r.u64()?;
        let n = usize::from(r.u8()?);
        if n > MAX_SACKS {
            return Err(Error::Malformed);
        }
        let mut sacks = Vec::with_capacity(n);
        let mut floor = ack;
        for _ in 0..n {
            let (start, end) = (r.u64()?, r.u64()?);
            if start <= floor || start >= end {
                return Err(Error::Malformed);
            }
            floor = end;
            sacks.push((start, end));
        }
        r.finish()?;
        Ok(Self { ack, rwe, sacks })
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        17 + 16 * self.sacks.len().min(MAX_SACKS)
    }

    /// Appends the encoded body to `out` (at most [`MAX_SACKS`] ranges).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new();
        w.u64(self.ack);
        w.u64(self.rwe);
        let n = self.sacks.len().min(MAX_SACKS);
        w.u8(n as u8);
        for &(s, e) in &self.sacks[..n] {
            w.u64(s);
            w.u64(e);
        }
        out.extend_from_slice(&w.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_bytes() {
        let bytes = [
            0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0,
            0, 0, 0, 9,
        ];
        let c = ControlRepr {
            ack: 5,
            rwe: 256,
            sacks: vec![(7, 9)],
        };
        let mut v = Vec::new();
        c.emit(&mut v);
        assert_eq!(v, bytes);
        assert_eq!(c.buffer_len(), bytes.len());
        assert_eq!(ControlRepr::parse(&bytes).unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(ControlRepr::parse(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn rejects_bad_ranges() {
        let enc = |c: &ControlRepr| {
            let mut v = Vec::new();
            c.emit(&mut v);
            v
        };
        assert!(ControlRepr::parse(&enc(&ControlRepr {
            ack: 5,
            rwe: 9,
            sacks: vec![(5, 6)]
        }))
        .is_err());
        assert!(ControlRepr::parse(&enc(&ControlRepr {
            ack: 1,
            rwe: 9,
            sacks: vec![(3, 3)]
        }))
        .is_err());
        assert!(ControlRepr::parse(&enc(&ControlRepr {
            ack: 1,
            rwe: 9,
            sacks: vec![(3, 5), (4, 6)]
        }))
        .is_err());
        let mut long = enc(&ControlRepr {
            ack: 1,
            rwe: 2,
            sacks: vec![],
        });
        long.push(0);
        assert_eq!(ControlRepr::parse(&long), Err(Error::Trailing));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = ControlRepr::parse(&bytes);
        }

        #[test]
        fn round_trip(ack in 0u64..1000, rwe: u64, gaps in proptest::collection::vec((1u64..50, 1u64..50), 0..16)) {
            let mut sacks = Vec::new();
            let mut at = ack;
            for (gap, len) in gaps {
                sacks.push((at + gap, at + gap + len));
                at += gap + len;
            }
            let c = ControlRepr { ack, rwe, sacks };
            let mut v = Vec::new();
            c.emit(&mut v);
            proptest::prop_assert_eq!(ControlRepr::parse(&v).unwrap(), c);
        }
    }
}

//! The body of an EFCP control PDU (DTCP): cumulative acknowledgement, right window
//! edge, the round-trip echo and selective acknowledgements.
//!
//! It follows a PCI of type [`PduType::Control`](super::PduType::Control). Layout,
//! network byte order:
//!
//! ```text
//!  0                8                16               24       25
//!  +----------------+----------------+----------------+--------+---------------------+
//!  |      ack       |      rwe       |      echo      | n_sack | n_sack x (start: u64,
//!  +----------------+----------------+----------------+--------+   end: u64)         |
//! ```
//!
//! - `ack`: cumulative; every DT sequence number below it was received;
//! - `rwe`: right window edge; the peer may send sequence numbers below it;
//! - `echo`: the sequence number of the DT PDU that arrived last since the previous
//!   control PDU, if it was a first transmission and new, else all ones (none): the
//!   sender times the round trip from that PDU's first sending, with no ambiguity about
//!   which transmission is acknowledged (the role of TCP's timestamp echo, RFC 7323
//!   §4);
//! - `n_sack`: at most [`MAX_SACKS`];
//! - each SACK pair is a half-open range `[start, end)` received above `ack`; the
//!   ranges are non-empty, strictly increasing and disjoint (`ack < start < end`, and
//!   each `start` is above the previous `end`).
//!
//! [`ControlRepr::parse`] never panics and rejects anything else, trailing bytes
//! included.

use super::codec::Reader;
use super::Error;

/// The most SACK ranges one control PDU carries.
pub const MAX_SACKS: usize = 16;

/// Length of the fixed part (`ack`, `rwe`, `echo`, `n_sack`).
const FIXED_LEN: usize = 25;
/// The wire value of "no echo".
const NO_ECHO: u64 = u64::MAX;
/// Length of one SACK range.
const SACK_LEN: usize = 16;

/// A decoded control PDU body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlRepr {
    /// Cumulative acknowledgement: every sequence number below it was received.
    pub ack: u64,
    /// Right window edge: the peer may send sequence numbers below it.
    pub rwe: u64,
    /// The last DT PDU that arrived since the previous control PDU, when it was a
    /// first transmission and new (never all ones: that encodes `None`).
    pub echo: Option<u64>,
    /// Ranges `[start, end)` received above `ack`, strictly increasing.
    pub sacks: Vec<(u64, u64)>,
}

impl ControlRepr {
    /// Decodes a control PDU body.
    ///
    /// # Errors
    /// [`Error::Truncated`] on a short buffer, [`Error::Malformed`] on more than
    /// [`MAX_SACKS`] ranges or a range that is empty, not above `ack` or not above
    /// the previous range, [`Error::Trailing`] on bytes after the last range.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let ack = r.u64()?;
        let rwe = r.u64()?;
        let echo = Some(r.u64()?).filter(|&e| e != NO_ECHO);
        let n = usize::from(r.u8()?);
        if n > MAX_SACKS {
            return Err(Error::Malformed);
        }
        let mut sacks = Vec::with_capacity(n);
        // Every start must be strictly above this (the ack, then the previous end).
        let mut floor = ack;
        for _ in 0..n {
            let start = r.u64()?;
            let end = r.u64()?;
            if start <= floor || start >= end {
                return Err(Error::Malformed);
            }
            floor = end;
            sacks.push((start, end));
        }
        r.finish()?;
        Ok(Self {
            ack,
            rwe,
            echo,
            sacks,
        })
    }

    /// The encoded length, in bytes.
    pub fn buffer_len(&self) -> usize {
        FIXED_LEN + SACK_LEN * self.sacks.len().min(MAX_SACKS)
    }

    /// Appends the encoded body to `out`. Only the first [`MAX_SACKS`] ranges are
    /// written; the caller keeps them valid (see the module docs).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let n = self.sacks.len().min(MAX_SACKS);
        out.reserve(FIXED_LEN + SACK_LEN * n);
        out.extend_from_slice(&self.ack.to_be_bytes());
        out.extend_from_slice(&self.rwe.to_be_bytes());
        out.extend_from_slice(&self.echo.unwrap_or(NO_ECHO).to_be_bytes());
        out.push(n as u8); // n <= MAX_SACKS < 256
        for &(start, end) in &self.sacks[..n] {
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&end.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(c: &ControlRepr) -> Vec<u8> {
        let mut v = Vec::new();
        c.emit(&mut v);
        v
    }

    #[test]
    fn hand_written_bytes() {
        #[rustfmt::skip]
        let bytes = [
            0, 0, 0, 0, 0, 0, 0x01, 0x02, // ack 258
            0, 0, 0, 0, 0, 0, 0x02, 0x00, // rwe 512
            0, 0, 0, 0, 0, 0, 0x01, 0x06, // echo 262
            2,                            // two ranges
            0, 0, 0, 0, 0, 0, 0x01, 0x05, // [261,
            0, 0, 0, 0, 0, 0, 0x01, 0x07, //  263)
            0, 0, 0, 0, 0, 0, 0x01, 0x10, // [272,
            0, 0, 0, 0, 0, 0, 0x01, 0x11, //  273)
        ];
        let c = ControlRepr {
            ack: 258,
            rwe: 512,
            echo: Some(262),
            sacks: vec![(261, 263), (272, 273)],
        };
        assert_eq!(ControlRepr::parse(&bytes), Ok(c.clone()));
        assert_eq!(encode(&c), bytes);
        assert_eq!(c.buffer_len(), bytes.len());
    }

    #[test]
    fn plain_ack_is_twenty_five_bytes() {
        let c = ControlRepr {
            ack: 1,
            rwe: 2,
            echo: None,
            sacks: vec![],
        };
        let v = encode(&c);
        #[rustfmt::skip]
        let want = [
            0, 0, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 0, 0, 0, 0, 2,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0,
        ];
        assert_eq!(v, want);
        assert_eq!(ControlRepr::parse(&v), Ok(c));
    }

    #[test]
    fn every_truncation_fails() {
        let c = ControlRepr {
            ack: 5,
            rwe: 9,
            echo: Some(8),
            sacks: vec![(6, 7), (8, 9)],
        };
        let v = encode(&c);
        for cut in 0..v.len() {
            assert_eq!(
                ControlRepr::parse(&v[..cut]),
                Err(Error::Truncated),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn rejects_bad_ranges_and_trailing_bytes() {
        let bad = |ack: u64, sacks: Vec<(u64, u64)>| {
            ControlRepr::parse(&encode(&ControlRepr {
                ack,
                rwe: 100,
                echo: None,
                sacks,
            }))
        };
        assert_eq!(bad(5, vec![(5, 6)]), Err(Error::Malformed), "not above ack");
        assert_eq!(bad(5, vec![(3, 4)]), Err(Error::Malformed), "below ack");
        assert_eq!(bad(1, vec![(3, 3)]), Err(Error::Malformed), "empty");
        assert_eq!(bad(1, vec![(4, 3)]), Err(Error::Malformed), "reversed");
        assert_eq!(
            bad(1, vec![(3, 5), (4, 6)]),
            Err(Error::Malformed),
            "overlap"
        );
        assert_eq!(
            bad(1, vec![(3, 5), (5, 6)]),
            Err(Error::Malformed),
            "touching"
        );
        assert_eq!(bad(1, vec![(7, 9), (3, 5)]), Err(Error::Malformed), "order");
        let mut long = encode(&ControlRepr::default());
        long.push(0);
        assert_eq!(ControlRepr::parse(&long), Err(Error::Trailing));
        let mut many = encode(&ControlRepr::default());
        many[24] = MAX_SACKS as u8 + 1;
        many.extend(std::iter::repeat_n(0, 16 * (MAX_SACKS + 1)));
        assert_eq!(ControlRepr::parse(&many), Err(Error::Malformed));
    }

    #[test]
    fn emit_writes_at_most_max_sacks() {
        let c = ControlRepr {
            ack: 0,
            rwe: 1000,
            echo: None,
            sacks: (0..20).map(|i| (10 * i + 1, 10 * i + 2)).collect(),
        };
        let v = encode(&c);
        assert_eq!(v.len(), c.buffer_len());
        assert_eq!(ControlRepr::parse(&v).map(|p| p.sacks.len()), Ok(MAX_SACKS));
    }

    fn arb_repr() -> impl Strategy<Value = ControlRepr> {
        (
            any::<u64>(),
            any::<u64>(),
            prop::option::of(0..u64::MAX),
            prop::collection::vec((1u64..1000, 1u64..1000), 0..=MAX_SACKS),
        )
            .prop_map(|(ack, rwe, echo, gaps)| {
                let ack = ack >> 8; // leave room for the ranges above it
                let mut at = ack;
                let sacks = gaps
                    .into_iter()
                    .map(|(gap, len)| {
                        let r = (at + gap, at + gap + len);
                        at = r.1;
                        r
                    })
                    .collect();
                ControlRepr {
                    ack,
                    rwe,
                    echo,
                    sacks,
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(c in arb_repr()) {
            let v = encode(&c);
            prop_assert_eq!(v.len(), c.buffer_len());
            prop_assert_eq!(ControlRepr::parse(&v), Ok(c));
        }

        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(c) = ControlRepr::parse(&bytes) {
                prop_assert_eq!(encode(&c), bytes);
            }
        }
    }
}

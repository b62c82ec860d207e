//! Protocol control information (PCI): the fixed header of every normal-DIF PDU.
//!
//! Version 2 layout (version 1 had neither the RTX flag nor the control echo), 28
//! bytes, network byte order:
//!
//! ```text
//!  0        1        2        3        4                8
//!  +--------+--------+--------+--------+----------------+----------------+
//!  |version |  type  | flags  |  ttl   |    dst_addr    |    src_addr    |
//!  +--------+--------+--------+--------+----------------+----------------+
//!  12               16               20                               28
//!  +----------------+----------------+--------------------------------+
//!  |    dst_cep     |    src_cep     |         sequence number        |
//!  +----------------+----------------+--------------------------------+
//! ```
//!
//! Sequence numbers are 64 bits and never wrap in practice (IRATI#1370 is the bug this
//! avoids). The PDU length is the N-1 SDU length: every shim preserves boundaries.
//! Address 0 means "the neighbour at the other end of this N-1 port": PDUs of the
//! per-neighbour management connection carry it and are never relayed.

use core::fmt;

use super::Error;
use crate::{Address, CepId};

/// Length of the PCI in bytes.
pub const PCI_LEN: usize = 28;
/// The PCI version this implementation speaks.
pub const PCI_VERSION: u8 = 2;
/// Initial TTL of a PDU; relays drop a PDU whose TTL reaches zero.
pub const DEFAULT_TTL: u8 = 64;

/// The kind of PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PduType {
    /// Data transfer (DTP): carries (a fragment of) an SDU.
    Data,
    /// EFCP control (DTCP): acknowledgement, flow control and selective ack.
    Control,
    /// A management message routed to an IPC process (flow allocation).
    Management,
}

impl PduType {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            Self::Data => 0x80,
            Self::Control => 0xC0,
            Self::Management => 0x40,
        }
    }

    /// The type for a wire code.
    pub fn from_code(code: u8) -> Result<Self, Error> {
        match code {
            0x80 => Ok(Self::Data),
            0xC0 => Ok(Self::Control),
            0x40 => Ok(Self::Management),
            other => Err(Error::UnknownType(other)),
        }
    }
}

/// PDU flags (meaningful on [`PduType::Data`]).
pub mod flags {
    /// The PDU carries the first fragment of an SDU.
    pub const FIRST: u8 = 0x01;
    /// The PDU carries the last fragment of an SDU.
    pub const LAST: u8 = 0x02;
    /// End of stream: the sender will send no more SDUs after this sequence number.
    /// A PDU with this flag carries no payload.
    pub const EOF: u8 = 0x04;
    /// Data run flag: first PDU of a connection (the receiver may start here).
    pub const DRF: u8 = 0x08;
    /// A retransmission: the receiver echoes only first transmissions (see
    /// [`ControlRepr::echo`](crate::wire::control::ControlRepr::echo)).
    pub const RTX: u8 = 0x10;
    /// All flags this version defines.
    pub const ALL: u8 = FIRST | LAST | EOF | DRF | RTX;
}

/// The decoded PCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pci {
    /// Kind of PDU.
    pub pdu_type: PduType,
    /// Flags, see [`flags`].
    pub flags: u8,
    /// Hops left.
    pub ttl: u8,
    /// Destination IPC process address (0: the neighbour on this N-1 port).
    pub dst_addr: Address,
    /// Source IPC process address.
    pub src_addr: Address,
    /// Destination connection endpoint.
    pub dst_cep: CepId,
    /// Source connection endpoint.
    pub src_cep: CepId,
    /// Sequence number (data), or a per-sender counter (control, management).
    pub seq: u64,
}

impl Pci {
    /// Decodes the PCI at the start of `pdu` and returns it with the payload.
    pub fn parse(pdu: &[u8]) -> Result<(Self, &[u8]), Error> {
        if pdu.len() < PCI_LEN {
            return Err(Error::Truncated);
        }
        if pdu[0] != PCI_VERSION {
            return Err(Error::Version(pdu[0]));
        }
        let pdu_type = PduType::from_code(pdu[1])?;
        let flags = pdu[2];
        if flags & !flags::ALL != 0 {
            return Err(Error::Malformed);
        }
        let u32_at = |i: usize| u32::from_be_bytes([pdu[i], pdu[i + 1], pdu[i + 2], pdu[i + 3]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&pdu[20..28]);
        Ok((
            Self {
                pdu_type,
                flags,
                ttl: pdu[3],
                dst_addr: Address(u32_at(4)),
                src_addr: Address(u32_at(8)),
                dst_cep: CepId(u32_at(12)),
                src_cep: CepId(u32_at(16)),
                seq: u64::from_be_bytes(seq),
            },
            &pdu[PCI_LEN..],
        ))
    }

    /// Writes the PCI into the first [`PCI_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`PCI_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = PCI_VERSION;
        buf[1] = self.pdu_type.code();
        buf[2] = self.flags;
        buf[3] = self.ttl;
        buf[4..8].copy_from_slice(&self.dst_addr.0.to_be_bytes());
        buf[8..12].copy_from_slice(&self.src_addr.0.to_be_bytes());
        buf[12..16].copy_from_slice(&self.dst_cep.0.to_be_bytes());
        buf[16..20].copy_from_slice(&self.src_cep.0.to_be_bytes());
        buf[20..28].copy_from_slice(&self.seq.to_be_bytes());
    }

    /// A PDU (PCI followed by `payload`) as a new buffer.
    pub fn to_pdu(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; PCI_LEN + payload.len()];
        self.emit(&mut v);
        v[PCI_LEN..].copy_from_slice(payload);
        v
    }

    /// True if `flag` is set.
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Rewrites the TTL of an encoded PDU in place (relaying), returning the new value,
/// or `None` if the PDU must be dropped (TTL exhausted or too short to be a PDU).
pub fn decrement_ttl(pdu: &mut [u8]) -> Option<u8> {
    if pdu.len() < PCI_LEN || pdu[3] <= 1 {
        return None;
    }
    pdu[3] -= 1;
    Some(pdu[3])
}

impl fmt::Display for Pci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {}:{} -> {}:{} seq={} flags={:#04x} ttl={}",
            self.pdu_type,
            self.src_addr.0,
            self.src_cep.0,
            self.dst_addr.0,
            self.dst_cep.0,
            self.seq,
            self.flags,
            self.ttl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_bytes() {
        let bytes: [u8; 30] = [
            2, 0x80, 0x03, 64, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1,
            0, b'h', b'i',
        ];
        let (pci, payload) = Pci::parse(&bytes).unwrap();
        assert_eq!(
            pci,
            Pci {
                pdu_type: PduType::Data,
                flags: flags::FIRST | flags::LAST,
                ttl: 64,
                dst_addr: Address(2),
                src_addr: Address(1),
                dst_cep: CepId(9),
                src_cep: CepId(8),
                seq: 256,
            }
        );
        assert_eq!(payload, b"hi");
        assert_eq!(pci.to_pdu(b"hi"), bytes);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Pci::parse(&[1; 27]), Err(Error::Truncated));
        let mut b = [0u8; 28];
        b[0] = 1;
        assert_eq!(Pci::parse(&b), Err(Error::Version(1)));
        b[0] = 2;
        b[1] = 0x11;
        assert_eq!(Pci::parse(&b), Err(Error::UnknownType(0x11)));
        b[1] = 0x80;
        b[2] = 0xF0;
        assert_eq!(Pci::parse(&b), Err(Error::Malformed));
    }

    #[test]
    fn ttl_decrements_to_drop() {
        let mut b = [0u8; 28];
        b[3] = 2;
        assert_eq!(decrement_ttl(&mut b), Some(1));
        assert_eq!(decrement_ttl(&mut b), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = Pci::parse(&bytes);
        }

        #[test]
        fn emit_parse_round_trip(t in 0usize..3, fl in 0u8..16, ttl: u8, d: u32, s: u32, dc: u32, sc: u32, seq: u64) {
            let pci = Pci {
                pdu_type: [PduType::Data, PduType::Control, PduType::Management][t],
                flags: fl, ttl, dst_addr: Address(d), src_addr: Address(s),
                dst_cep: CepId(dc), src_cep: CepId(sc), seq,
            };
            let pdu = pci.to_pdu(b"x");
            proptest::prop_assert_eq!(Pci::parse(&pdu).unwrap(), (pci, &b"x"[..]));
        }
    }
}

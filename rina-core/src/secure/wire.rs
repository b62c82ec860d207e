//! The messages of a secured N-1 flow, as they cross it: the three Noise handshake
//! messages and sealed messages (a PDU of the DIF, or a channel control). Every message
//! starts with one type byte.
//!
//! ```text
//! handshake:  type(1: 1 initiation, 2 response, 3 final) | Noise message
//! sealed:     type(1: 0x10 | control << 1 | slot) | counter(8, big-endian)
//!             | ciphertext | tag(16)
//! ```
//!
//! A sealed message's header (type and counter) is the AEAD's associated data; its
//! nonce is the counter. `slot` tells which of the two live sessions sealed it (it
//! flips at each rekeying).

/// Bytes before a sealed message's ciphertext: type and counter.
pub const HEADER: usize = 9;
/// The AEAD tag after the ciphertext.
pub const TAG: usize = 16;
/// What sealing adds to a PDU.
pub const OVERHEAD: usize = HEADER + TAG;

/// Handshake message 1 (initiator to responder).
pub const INITIATION: u8 = 1;
/// Handshake message 2 (responder to initiator).
pub const RESPONSE: u8 = 2;
/// Handshake message 3 (initiator to responder).
pub const FINAL: u8 = 3;
/// A sealed message: this bit set, with the control bit and the slot.
pub const SEALED: u8 = 0x10;
const CONTROL_BIT: u8 = 0b10;
const SLOT_BIT: u8 = 0b01;

/// What a sealed control message says (its one byte of plaintext).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// The responder read the final handshake message: the session is in use.
    Confirm = 1,
    /// The flow is closed by its peer (authenticated, unlike the shim's release).
    Close = 2,
}

impl Control {
    /// Decodes a control's byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Confirm),
            2 => Some(Self::Close),
            _ => None,
        }
    }
}

/// A message of a secured flow, classified by its header (nothing is verified yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A handshake message: its type and its Noise bytes.
    Handshake(u8, &'a [u8]),
    /// A sealed message.
    Sealed {
        /// A control (else a PDU).
        control: bool,
        /// The session slot.
        slot: u8,
        /// Its counter (the nonce).
        counter: u64,
    },
}

/// Classifies `bytes`; `None` if it is no message of a secured flow.
pub fn classify(bytes: &[u8]) -> Option<Message<'_>> {
    let (&kind, rest) = bytes.split_first()?;
    match kind {
        INITIATION | RESPONSE | FINAL => Some(Message::Handshake(kind, rest)),
        k if k & !(CONTROL_BIT | SLOT_BIT) == SEALED => {
            if bytes.len() < OVERHEAD {
                return None;
            }
            let counter = u64::from_be_bytes(bytes[1..HEADER].try_into().ok()?);
            Some(Message::Sealed {
                control: k & CONTROL_BIT != 0,
                slot: k & SLOT_BIT,
                counter,
            })
        }
        _ => None,
    }
}

/// Writes a sealed message's header.
pub fn write_header(out: &mut [u8; HEADER], control: bool, slot: u8, counter: u64) {
    out[0] = SEALED | if control { CONTROL_BIT } else { 0 } | (slot & SLOT_BIT);
    out[1..].copy_from_slice(&counter.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let mut h = [0u8; HEADER];
        write_header(&mut h, true, 1, 0x0102_0304_0506_0708);
        let mut msg = h.to_vec();
        msg.extend_from_slice(&[0; TAG]);
        assert_eq!(
            classify(&msg),
            Some(Message::Sealed {
                control: true,
                slot: 1,
                counter: 0x0102_0304_0506_0708
            })
        );
        // Too short to hold a tag: not a sealed message.
        assert_eq!(classify(&msg[..OVERHEAD - 1]), None);
        assert_eq!(classify(&[0x20, 0, 0]), None);
        assert_eq!(classify(&[]), None);
        assert_eq!(
            classify(&[FINAL, 9]),
            Some(Message::Handshake(FINAL, &[9][..]))
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = classify(&bytes);
        }
    }
}

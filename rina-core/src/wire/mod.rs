//! Wire formats. All multi-byte fields are in network byte order.
//!
//! - [`pci`]: the 28-byte protocol control information in front of every PDU of a
//!   normal DIF, fixed field widths, version first;
//! - [`control`]: the body of EFCP control PDUs (acknowledgement, flow control, SACK);
//! - [`mgmt`]: management messages (enrollment, directory, routing, flow allocation),
//!   a versioned binary encoding;
//! - [`codec`]: the cursor used by the variable-length formats.
//!
//! Parsing never panics on any input: a short or malformed buffer is an [`Error`].

pub mod codec;
pub mod control;
pub mod mgmt;
pub mod pci;

pub use codec::{Reader, Writer};
pub use pci::{Pci, PduType, PCI_LEN};

/// A PDU or message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the field being read.
    #[error("truncated")]
    Truncated,
    /// A version this implementation does not speak.
    #[error("unknown version {0}")]
    Version(u8),
    /// An unknown type or tag.
    #[error("unknown type {0:#04x}")]
    UnknownType(u8),
    /// A field holds a value that is not allowed.
    #[error("malformed field")]
    Malformed,
    /// Bytes left over after the message.
    #[error("trailing bytes")]
    Trailing,
}

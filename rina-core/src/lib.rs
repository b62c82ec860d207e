//! # rina-core: the RINA protocol, without I/O
//!
//! This crate is the protocol logic of a RINA IPC process (IPCP). It is deterministic:
//! it has no sockets, no threads, reads no clock and draws no randomness of its own.
//! Time is an argument ([`time::Instant`]), randomness comes from a seed
//! ([`rand::Rng`]), and maps iterate in a fixed order. A driver (the `runtime` crate,
//! or the `sim` simulator (a feature) in tests) feeds it inputs and carries out its outputs:
//!
//! - inputs: `handle_pdu(now, port, bytes)`, `handle_timeout(now)` and commands
//!   (register, allocate a flow, write, read, deallocate);
//! - outputs: `poll_transmit` (a PDU to send out of an N-1 port), `poll_timeout`
//!   (when to call `handle_timeout` next) and `poll_event` (flow allocated, incoming
//!   flow, readable, closed, enrolled, neighbour lost).
//!
//! ## Layers
//!
//! - [`wire`]: PCI, EFCP control PDUs and management messages, in network byte order;
//! - [`efcp`]: one EFCP connection (DTP + DTCP): sequencing, fragmentation,
//!   retransmission, flow and congestion control;
//! - [`ipcp`]: the IPC process facade: enrollment, directory, flow allocation,
//!   relaying and multiplexing (RMT), link-state routing;
//! - [`shim`]: the protocol of the shim DIFs (flow setup over a UDP tunnel or
//!   Ethernet), generic over the link address; the `shims` crate does their I/O.
//!
//! ## Glossary
//!
//! - **DIF**: a distributed IPC facility, a layer; its members are IPC processes.
//! - **IPCP**: IPC process, one member of one DIF in one system.
//! - **Flow**: what a DIF provides to the layer above, named by a **port-id** at each
//!   end ([`PortId`]). **N-1 port** ([`N1Port`]): a flow provided by the DIF below.
//! - **Connection**: EFCP state between two **CEP-ids** ([`CepId`]) that carries a
//!   flow. A flow is not a connection.
//! - **PDU / SDU**: a protocol data unit of this DIF / a service data unit handed to or
//!   from the layer above (a PDU carries an SDU or a fragment of one).
//! - **PCI**: protocol control information, the PDU header.
//! - **RMT / PFT**: relaying and multiplexing task / PDU forwarding table.

#![forbid(unsafe_code)]

pub mod efcp;

pub mod ipcp;
pub mod name;
pub mod node;
pub mod rand;
pub mod secure;
pub mod shim;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;
pub mod wire;

pub use name::ApplicationName;
pub use time::Instant;

use core::fmt;

/// The address of an IPC process within its DIF. 0 is "no address / the neighbour".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub u32);

impl Address {
    /// The unassigned address; in a PCI it names the neighbour on the N-1 port.
    pub const NONE: Self = Self(0);
}

/// A connection endpoint id, unique within one IPCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CepId(pub u32);

/// The port-id of a flow this IPCP provides to the layer above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u32);

/// A flow provided to this IPCP by a DIF below (an N-1 flow), as numbered by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct N1Port(pub u32);

macro_rules! display_id {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_id!(Address, CepId, PortId, N1Port);

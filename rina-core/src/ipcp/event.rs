//! What an IPC process tells its driver: events, why a flow or a registration
//! failed, and its counters.

use super::FlowKind;
use crate::{Address, ApplicationName, N1Port, PortId};

/// Why a flow could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No application is registered under the destination name.
    #[error("no application registered under that name")]
    NoSuchApplication,
    /// The destination (or the DIF itself) cannot be reached.
    #[error("destination unreachable")]
    Unreachable,
    /// No answer in time.
    #[error("timed out")]
    TimedOut,
    /// The destination denied access.
    #[error("access denied")]
    Denied,
    /// The destination has no resources for another flow.
    #[error("no resources")]
    NoResources,
}

/// Why a registration failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// This IPC process already registered the name for every kind asked for.
    #[error("already registered")]
    AlreadyRegistered,
    /// This member's key may not register the name (a secured DIF's rules).
    #[error("this member's key may not register the name")]
    NotAllowed,
}

/// Something the driver must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This member has joined the DIF.
    Enrolled {
        /// The address it was given.
        address: Address,
    },
    /// Joining through a neighbour failed.
    EnrollmentFailed {
        /// The N-1 port of the enroller.
        port: N1Port,
        /// What went wrong.
        reason: String,
    },
    /// An adjacency is up.
    NeighborUp {
        /// Its N-1 port.
        port: N1Port,
        /// The neighbour's name.
        name: ApplicationName,
    },
    /// A neighbour was lost (keepalives missed, or it said goodbye).
    NeighborLost {
        /// Its N-1 port (the driver should release it).
        port: N1Port,
    },
    /// An N-1 port whose peer has not said who it is was dropped, to keep what such
    /// peers cost this member within a small bound: the driver releases its flow
    /// without a word to the peer (no reply for what proved nothing).
    NeighborRefused {
        /// Its N-1 port (gone).
        port: N1Port,
    },
    /// A flow this member asked for is up.
    FlowAllocated {
        /// The flow.
        port: PortId,
    },
    /// A flow this member asked for could not be made.
    FlowAllocationFailed {
        /// The flow (now gone).
        port: PortId,
        /// Why.
        error: AllocError,
    },
    /// A flow to a registered application arrived.
    IncomingFlow {
        /// The new flow.
        port: PortId,
        /// The registered application it is for.
        local_app: ApplicationName,
        /// The application at the other end.
        remote_app: ApplicationName,
        /// Reliable (a byte stream) or unreliable (datagrams).
        kind: FlowKind,
        /// What the requester says about the flow (opaque to the DIF; may be empty).
        info: Vec<u8>,
        /// The first bytes of a reliable flow's stream, which rode on the request (may
        /// be empty): the application reads them before anything the flow delivers.
        first_data: Vec<u8>,
    },
    /// The flow has data (or end of stream) to read.
    Readable {
        /// The flow.
        port: PortId,
    },
    /// The flow can take more data after a write was refused.
    Writable {
        /// The flow.
        port: PortId,
    },
    /// The flow is gone.
    FlowClosed {
        /// The flow.
        port: PortId,
        /// True if it broke (peer vanished or deallocated before finishing).
        reset: bool,
    },
    /// A secured DIF refused a neighbour's claim (a member name or address held by
    /// another key, a name its key may not register): why, with the key's fingerprint.
    /// Also: a neighbour speaks another PCI version (said once).
    AccessRefused {
        /// Why.
        why: String,
    },
}

/// Counters for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// PDUs received on N-1 ports.
    pub pdus_in: u64,
    /// PDUs handed to N-1 ports.
    pub pdus_out: u64,
    /// PDUs relayed to another member.
    pub pdus_relayed: u64,
    /// PDUs that could not be parsed.
    pub pdus_malformed: u64,
    /// PDUs dropped: no route, TTL exhausted, or no such connection.
    pub pdus_dropped: u64,
    /// Claims refused in a secured DIF: a member name or address held by another key,
    /// a registration the key may not make.
    pub refused_claims: u64,
    /// Route computations (one per burst of advertisements, see `route_hold`).
    pub route_computations: u64,
    /// PDUs sent to full-member neighbours (leaves' N-1 ports left out).
    pub pdus_to_members: u64,
    /// Management messages sent to full-member neighbours, keepalives left out:
    /// enrollment, directory, link state, goodbyes (what joins and leaves cost).
    pub control_to_members: u64,
    /// Flows this member asked for that went up with first data on their request.
    pub flows_with_first_data: u64,
    /// Bytes of first data that came with flow requests and went to applications.
    pub first_data_received: u64,
}

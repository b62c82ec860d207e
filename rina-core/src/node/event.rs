//! What a node tells its driver ([`NodeEvent`]), and why a DIF cannot be added to it
//! ([`NodeError`]).

use std::time::Duration;

use crate::ipcp::Event;
use crate::node::{DifId, Layer};
use crate::{Address, ApplicationName, N1Port};

/// What a node tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// An event of a DIF's IPC process about the applications' flows and names (what
    /// concerns N-1 flows and enrollment the node handles itself).
    Flow(DifId, Event),
    /// This member joined the DIF.
    Joined {
        /// The DIF.
        dif: DifId,
        /// Its address there.
        address: Address,
    },
    /// An attempt to join the DIF failed; the next one after `retry_in`. Calls that
    /// wait for it may fail now (see [`Dif::joining`](crate::node::Dif::joining)).
    JoinFailed {
        /// The DIF.
        dif: DifId,
        /// Why.
        why: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A kept adjacency is down (lost, or it could not be set up): it is tried again
    /// after `retry_in`, which grows while it keeps failing.
    AdjacencyDown {
        /// The DIF.
        dif: DifId,
        /// The neighbour, as the plan names it.
        peer: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A neighbour is up.
    NeighborUp {
        /// The DIF.
        dif: DifId,
        /// Its N-1 port.
        port: N1Port,
        /// Its name.
        name: ApplicationName,
    },
    /// A neighbour of a secured DIF was refused, or its handshake failed or ended.
    NeighborRefused {
        /// The DIF.
        dif: DifId,
        /// Why (with the key's fingerprint when it is the key).
        why: String,
    },
    /// A neighbour was lost.
    NeighborLost {
        /// The DIF.
        dif: DifId,
        /// Its N-1 port (gone).
        port: N1Port,
    },
}

/// Why a DIF cannot be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeError {
    /// It refers to a layer the node does not have (yet).
    #[error("DIF {dif:?}: no layer {layer:?} below it")]
    NoSuchLayer {
        /// The DIF added.
        dif: String,
        /// What it refers to.
        layer: Layer,
    },
    /// A secured DIF on a node with no seed for its handshakes
    /// ([`Node::seed_security`](crate::node::Node::seed_security)).
    #[error("DIF {dif:?} is secured but the node has no seed for handshakes")]
    Unseeded {
        /// The DIF added.
        dif: String,
    },
    /// A neighbour is named in a way its layer cannot reach.
    #[error("DIF {dif:?}: neighbour {peer} cannot be reached over {layer:?}")]
    PeerKind {
        /// The DIF added.
        dif: String,
        /// The neighbour.
        peer: String,
        /// Its layer.
        layer: Layer,
    },
}

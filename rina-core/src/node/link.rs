//! A node's shim layers: the shim DIF protocol over each link the node has, one type
//! over both kinds (a UDP tunnel with peers named in the rules, raw Ethernet with
//! peers found by broadcast). Flows, PDUs and events go up; how a peer is addressed (a
//! UDP endpoint, or a MAC address and demultiplexing id) stays in here.

use core::fmt;
use core::net::SocketAddr;

use crate::shim::eth::{EthConfig, EthEvent, EthPeer, EthShim, Mac};
use crate::shim::{ShimConfig, ShimEvent, ShimFlowId, ShimProcess};
use crate::{ApplicationName, Instant};

/// Where a datagram or frame on a link comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkAddr {
    /// A UDP endpoint.
    Udp(SocketAddr),
    /// An Ethernet MAC address.
    Eth(Mac),
}

/// The headers sent before a PDU on a link (at most 32 bytes): the shim's, and a
/// secured DIF's seal header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; 32],
    len: u8,
}

impl Header {
    /// No header (a management datagram is whole by itself).
    pub const EMPTY: Self = Self {
        bytes: [0; 32],
        len: 0,
    };

    fn new(h: &[u8]) -> Self {
        let mut me = Self::EMPTY;
        me.push(h);
        me
    }

    /// Appends `h` (what does not fit in 32 bytes is cut: no header here is that long).
    pub(crate) fn push(&mut self, h: &[u8]) {
        let at = usize::from(self.len);
        let n = h.len().min(self.bytes.len() - at);
        self.bytes[at..at + n].copy_from_slice(&h[..n]);
        self.len = (at + n) as u8;
    }

    /// The header's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// How a neighbour is reached through a shim layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A UDP endpoint.
    Udp(SocketAddr),
    /// An application name: resolved on the Ethernet; over a normal DIF, the name
    /// the flow is asked for.
    Name(ApplicationName),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Udp(a) => write!(f, "{a}"),
            Self::Name(n) => write!(f, "{n}"),
        }
    }
}

/// What asking a shim for a flow gave.
pub(crate) enum Allocation<T> {
    /// The allocation started.
    Started(T),
    /// The peer is not reachable yet (its name being resolved, the DIF below not
    /// joined): ask again once it is.
    Waiting,
}

/// What a shim layer tells the node.
pub(crate) enum Notice {
    /// A flow event.
    Flow(ShimEvent),
    /// A name was resolved.
    Resolved(ApplicationName),
    /// Nobody answered for a name.
    Unresolved(ApplicationName),
}

/// One shim layer: its name and protocol state.
#[derive(Debug)]
pub(crate) struct ShimLayer {
    pub(crate) name: String,
    /// Where the link is, for messages ("UDP 10.0.0.1:7000", "interface eth0").
    pub(crate) place: String,
    proto: Proto,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a node has a handful of links; boxing buys nothing"
)]
enum Proto {
    Udp(ShimProcess<SocketAddr>),
    Eth(EthShim),
}

impl ShimLayer {
    pub(crate) fn udp(name: String, place: String, cfg: ShimConfig, seed: u64) -> Self {
        Self {
            name,
            place,
            proto: Proto::Udp(ShimProcess::new(cfg, seed)),
        }
    }

    pub(crate) fn eth(name: String, place: String, cfg: EthConfig, me: EthPeer, seed: u64) -> Self {
        Self {
            name,
            place,
            proto: Proto::Eth(EthShim::new(cfg, me, seed)),
        }
    }

    pub(crate) fn is_ethernet(&self) -> bool {
        matches!(self.proto, Proto::Eth(_))
    }

    pub(crate) fn max_sdu(&self) -> usize {
        match &self.proto {
            Proto::Udp(proto) => proto.max_sdu(),
            Proto::Eth(p) => p.max_sdu(),
        }
    }

    pub(crate) fn register(&mut self, name: ApplicationName) {
        match &mut self.proto {
            Proto::Udp(proto) => proto.register(name),
            Proto::Eth(p) => p.register(name),
        }
    }

    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        peer: &Peer,
        local: ApplicationName,
        remote: ApplicationName,
    ) -> Allocation<ShimFlowId> {
        match (&mut self.proto, peer) {
            (Proto::Udp(proto), Peer::Udp(a)) => {
                Allocation::Started(proto.allocate(now, *a, local, remote))
            }
            (Proto::Eth(p), Peer::Name(n)) => match p.resolve(now, n) {
                Some(at) => Allocation::Started(p.shim().allocate(now, at, local, remote)),
                None => Allocation::Waiting,
            },
            // A plan names a peer the way its shim does (checked when it is added).
            _ => Allocation::Waiting,
        }
    }

    /// Forgets a flow without a word to the peer.
    pub(crate) fn forget(&mut self, id: ShimFlowId) {
        match &mut self.proto {
            Proto::Udp(proto) => proto.forget(id),
            Proto::Eth(p) => p.shim().forget(id),
        }
    }

    /// Protects a flow of a secured DIF (see [`crate::shim::ShimProcess::protect`]).
    pub(crate) fn protect(&mut self, id: ShimFlowId) {
        match &mut self.proto {
            Proto::Udp(proto) => proto.protect(id),
            Proto::Eth(p) => p.shim().protect(id),
        }
    }

    /// The flows this layer holds.
    pub(crate) fn flow_count(&self) -> usize {
        match &self.proto {
            Proto::Udp(proto) => proto.flow_count(),
            Proto::Eth(p) => p.shim_flow_count(),
        }
    }

    pub(crate) fn deallocate(&mut self, id: ShimFlowId) {
        match &mut self.proto {
            Proto::Udp(proto) => proto.deallocate(id),
            Proto::Eth(p) => p.shim().deallocate(id),
        }
    }

    /// Handles what arrived from `from`: the flow and PDU if it carries data.
    pub(crate) fn handle_input<'b>(
        &mut self,
        now: Instant,
        from: LinkAddr,
        bytes: &'b [u8],
    ) -> Option<(ShimFlowId, &'b [u8])> {
        match (&mut self.proto, from) {
            (Proto::Udp(proto), LinkAddr::Udp(a)) => proto.handle_datagram(now, a, bytes),
            (Proto::Eth(p), LinkAddr::Eth(mac)) => p.handle_frame(now, mac, bytes),
            _ => None,
        }
    }

    /// Where to send a PDU of flow `id`, and its header (`None`: not up).
    pub(crate) fn data_header(&self, id: ShimFlowId) -> Option<(LinkAddr, Header)> {
        match &self.proto {
            Proto::Udp(proto) => proto
                .data_header(id)
                .map(|(a, h)| (LinkAddr::Udp(a), Header::new(&h))),
            Proto::Eth(p) => p
                .data_header(id)
                .map(|(mac, h)| (LinkAddr::Eth(mac), Header::new(&h))),
        }
    }

    /// The next management datagram or frame.
    pub(crate) fn poll_transmit(&mut self) -> Option<(LinkAddr, Vec<u8>)> {
        match &mut self.proto {
            Proto::Udp(proto) => proto.poll_transmit().map(|(a, d)| (LinkAddr::Udp(a), d)),
            Proto::Eth(p) => p.poll_transmit().map(|(m, f)| (LinkAddr::Eth(m), f)),
        }
    }

    /// Nothing listens at `peer` (the link said so): flows being made to it fail.
    pub(crate) fn peer_unreachable(&mut self, peer: LinkAddr) {
        if let (Proto::Udp(proto), LinkAddr::Udp(a)) = (&mut self.proto, peer) {
            proto.peer_unreachable(a);
        }
    }

    pub(crate) fn has_pending_output(&self) -> bool {
        match &self.proto {
            Proto::Udp(proto) => proto.has_pending_output(),
            Proto::Eth(p) => p.has_pending_output(),
        }
    }

    pub(crate) fn poll_notice(&mut self) -> Option<Notice> {
        match &mut self.proto {
            Proto::Udp(proto) => proto.poll_event().map(Notice::Flow),
            Proto::Eth(p) => match p.poll_event() {
                Some(EthEvent::Resolved { name, .. }) => Some(Notice::Resolved(name)),
                Some(EthEvent::Unresolved { name }) => Some(Notice::Unresolved(name)),
                None => p.poll_shim_event().map(Notice::Flow),
            },
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.proto {
            Proto::Udp(proto) => proto.poll_timeout(),
            Proto::Eth(p) => p.poll_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match &mut self.proto {
            Proto::Udp(proto) => proto.handle_timeout(now),
            Proto::Eth(p) => p.handle_timeout(now),
        }
    }

    /// Datagrams or frames the protocol dropped (malformed, unknown flow, wrong
    /// sender, not ours).
    /// Releases of protected flows ignored.
    pub(crate) fn releases_ignored(&self) -> u64 {
        match &self.proto {
            Proto::Udp(proto) => proto.counters().releases_ignored,
            Proto::Eth(p) => p.shim_counters().releases_ignored,
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        match &self.proto {
            Proto::Udp(proto) => proto.counters().dropped,
            Proto::Eth(p) => {
                let c = p.counters();
                c.malformed + c.unknown + c.not_ours + p.shim_counters().dropped
            }
        }
    }
}

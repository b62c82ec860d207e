//! One member's whole stack, without I/O: its shim layers and normal DIFs, the N-1
//! port table that joins them (DIFs over shims and over DIFs), the adjacency plans
//! with their back-off, and joining (and failing) the DIFs above one below.
//!
//! A [`Node`] is driven as an IPC process is, in the style of smoltcp's interface:
//!
//! - inputs: [`Node::handle_link`] (a datagram or frame that arrived on a link),
//!   [`Node::handle_timeout`], and commands ([`Node::allocate`], [`Node::register`],
//!   [`Node::join_now`], [`Node::leave`]; the applications' flows read and write
//!   through [`Node::ipcp_mut`]);
//! - outputs: [`Node::poll_transmit`] (a datagram or frame for a link),
//!   [`Node::poll_timeout`] and [`Node::poll_event`] (the applications' flow events,
//!   joins and their failures, neighbours).
//!
//! A driver owns the links (sockets) and the clock; the `sim` feature's `net`
//! simulator drives nodes over in-memory links.

mod adjacency;
mod backoff;
mod dif;
mod event;
mod guard;
mod link;
mod n1;
mod poll;
#[cfg(test)]
mod tests;
mod throttle;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use core::fmt;

pub use backoff::Backoff;
pub use dif::{Dif, Plan};
pub use event::{NodeError, NodeEvent};
pub use guard::MAX_UNPROVEN;
pub use link::{Header, LinkAddr, Peer};

use crate::efcp::EfcpConfig;
use crate::ipcp::{FlowKind, FlowKinds, IpcProcess, IpcpConfig, RegisterError};
use crate::shim::eth::{EthConfig, EthPeer};
use crate::shim::{ShimConfig, ShimFlowId};
use crate::wire::PCI_LEN;
use crate::{ApplicationName, Instant, N1Port, PortId};
use dif::Keep;
use link::ShimLayer;

/// A normal DIF of a node, by its place in the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DifId(pub usize);

/// A shim layer (a link) of a node, by its place in the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub usize);

impl fmt::Display for DifId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DIF #{}", self.0)
    }
}

/// What carries a normal DIF's N-1 flows: a shim layer, or a normal DIF below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// A shim layer.
    Link(LinkId),
    /// A normal DIF.
    Dif(DifId),
}

/// One N-1 flow, in the layer that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LowerFlow {
    Shim(LinkId, ShimFlowId),
    Dif(DifId, PortId),
}

impl LowerFlow {
    fn layer(self) -> Layer {
        match self {
            Self::Shim(l, _) => Layer::Link(l),
            Self::Dif(d, _) => Layer::Dif(d),
        }
    }
}

/// A datagram or frame for a link: its header, then the payload at `payload` in the
/// buffer it came with (see [`Node::poll_transmit`], [`Node::handle_link`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The link.
    pub link: LinkId,
    /// Where on the link.
    pub to: LinkAddr,
    /// The shim header, sent first.
    pub header: Header,
    /// Where the payload is in the buffer.
    pub payload: Range<usize>,
}

/// A normal DIF to add to a node.
#[derive(Clone, Debug)]
pub struct DifConfig {
    /// Its IPC process (its EFCP settings for data flows are the node's: sized to the
    /// layers below).
    pub ipcp: IpcpConfig,
    /// The layers below it.
    pub over: Vec<Layer>,
    /// How it enrolls (`None`: it bootstraps, `ipcp.bootstrap` set).
    pub enroll: Option<Plan>,
    /// More adjacencies to keep once it is a member.
    pub neighbors: Vec<Plan>,
    /// Its security (`None`: an open DIF).
    pub security: Option<crate::secure::Security>,
    /// Whether it joins as a leaf or as a full member.
    pub role: Role,
}

/// How a member joins a normal DIF (see `ipcp::leaves`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// A leaf if it enrolls in a short-lived node (a program's own stack), a full
    /// member in a long-lived one (`rina node`) or when it bootstraps.
    #[default]
    Auto,
    /// A leaf: it relays for no one and costs the DIF nothing when it comes and goes.
    Leaf,
    /// A full member: it relays, takes newcomers and is in the link-state database.
    Full,
}

/// One member's stack: shim layers, normal DIFs and the N-1 ports between them.
#[derive(Debug, Default)]
pub struct Node {
    shims: Vec<ShimLayer>,
    difs: Vec<Dif>,
    /// N-1 port -> (DIF, the flow below that carries it).
    n1: BTreeMap<N1Port, (DifId, LowerFlow)>,
    /// The flow below -> N-1 port.
    by_lower: BTreeMap<LowerFlow, N1Port>,
    next_n1: u32,
    /// N-1 flows of normal DIFs with SDUs to hand to the DIF above.
    lower_readable: BTreeSet<LowerFlow>,
    events: VecDeque<NodeEvent>,
    /// Every member here takes newcomers once it is one (a node that stays up), not
    /// only those that bootstrapped or serve names.
    long_lived: bool,
    /// The channels of secured DIFs' N-1 ports.
    channels: BTreeMap<N1Port, crate::secure::Channel>,
    /// Channels' messages for shim flows, with where they go.
    guard_out: VecDeque<(LinkId, LinkAddr, Header, Vec<u8>)>,
    secure_rng: Option<crate::secure::SecureRng>,
    /// Handshakes started per peer address, under load.
    throttle: throttle::Throttle,
}

impl Node {
    /// An empty node; `long_lived`: its members take newcomers as soon as they are
    /// members (`rina node`).
    pub fn new(long_lived: bool) -> Self {
        Self {
            long_lived,
            ..Self::default()
        }
    }

    /// Adds a UDP shim layer at `place` (for messages: "UDP 10.0.0.1:7000").
    pub fn add_udp_link(
        &mut self,
        name: String,
        place: String,
        cfg: ShimConfig,
        seed: u64,
    ) -> LinkId {
        self.shims.push(ShimLayer::udp(name, place, cfg, seed));
        LinkId(self.shims.len() - 1)
    }

    /// Adds an Ethernet shim layer at `place` (for messages: "interface eth0"): this
    /// process is `me` on the interface.
    pub fn add_eth_link(
        &mut self,
        name: String,
        place: String,
        cfg: EthConfig,
        me: EthPeer,
        seed: u64,
    ) -> LinkId {
        self.shims.push(ShimLayer::eth(name, place, cfg, me, seed));
        LinkId(self.shims.len() - 1)
    }

    /// Checks that every layer a new DIF refers to is there, and that each neighbour
    /// is named in a way its layer can reach.
    fn check_plans<'a>(
        &self,
        name: &str,
        over: &[Layer],
        plans: impl Iterator<Item = &'a Plan> + Clone,
    ) -> Result<(), NodeError> {
        for &layer in over.iter().chain(plans.clone().map(|p| &p.lower)) {
            if !self.has_layer(layer) {
                return Err(NodeError::NoSuchLayer {
                    dif: name.to_owned(),
                    layer,
                });
            }
        }
        for p in plans {
            let fits = match (p.lower, &p.peer) {
                (Layer::Link(l), Peer::Udp(_)) => !self.shims[l.0].is_ethernet(),
                (Layer::Link(l), Peer::Name(_)) => self.shims[l.0].is_ethernet(),
                (Layer::Dif(_), peer) => matches!(peer, Peer::Name(_)),
            };
            if !fits {
                let (peer, layer) = (p.peer.to_string(), p.lower);
                return Err(NodeError::PeerKind {
                    dif: name.to_owned(),
                    peer,
                    layer,
                });
            }
        }
        Ok(())
    }

    /// Adds a normal DIF over layers already added.
    ///
    /// # Errors
    /// A layer it refers to is not there, or a neighbour is named in a way its layer
    /// cannot reach.
    pub fn add_dif(&mut self, now: Instant, cfg: DifConfig) -> Result<DifId, NodeError> {
        let DifConfig {
            mut ipcp,
            over,
            enroll,
            neighbors,
            security,
            role,
        } = cfg;
        let name = ipcp.dif.clone();
        if security.is_some() && self.secure_rng.is_none() {
            return Err(NodeError::Unseeded { dif: name });
        }
        self.check_plans(&name, &over, enroll.iter().chain(&neighbors))?;
        let mtu = self.first_mtu(&over, security.is_some());
        let security = security.map(|mut s| {
            s.creds = s.creds.for_dif(&name);
            s
        });
        if let Some(s) = &security {
            ipcp.key = Some(s.creds.public());
            ipcp.access = Some(s.access.clone());
        }
        ipcp.data_efcp = data_efcp(mtu);
        ipcp.leaf = enroll.is_some()
            && match role {
                Role::Auto => !self.long_lived,
                Role::Leaf => true,
                Role::Full => false,
            };
        // Peers reach this member through each shim by its own name and by the DIF's
        // name; on Ethernet, where any member answering for the DIF's name may be
        // picked to enroll through, only once it can take newcomers (see
        // `offer_enrollment`). In a normal DIF below, the names are registered once
        // that DIF is joined.
        for l in &over {
            if let Layer::Link(s) = *l {
                let shim = &mut self.shims[s.0];
                shim.register(ipcp.name.clone());
                if !shim.is_ethernet() {
                    shim.register(ApplicationName::new(name.clone()));
                }
            }
        }
        let keep = enroll
            .iter()
            .chain(&neighbors)
            .map(|p| Keep::new(p.clone(), now))
            .collect();
        let payload = mtu.saturating_sub(PCI_LEN).max(1);
        self.difs.push(Dif {
            name,
            ipcp: IpcProcess::new(ipcp, now),
            retry_at: enroll.as_ref().map(|_| now),
            enroll,
            enrolling: None,
            waiting: false,
            over,
            keep,
            backoff: Backoff::STANDARD,
            last_failure: None,
            chunk: payload * (65536 / payload).max(1),
            payload,
            guard: security.map(|sec| {
                Box::new(guard::Guard {
                    sec,
                    counters: Default::default(),
                })
            }),
        });
        Ok(DifId(self.difs.len() - 1))
    }

    /// The largest PDU of a new DIF over `over` (less what sealing adds if `secured`).
    /// Over a normal DIF it is known once that DIF is joined (flows then use the
    /// DIF-wide figure); until then, a guess.
    fn first_mtu(&self, over: &[Layer], secured: bool) -> usize {
        let seal = if secured {
            crate::secure::wire::OVERHEAD
        } else {
            0
        };
        over.iter()
            .map(|&l| match l {
                Layer::Link(s) => self.shims[s.0].max_sdu(),
                Layer::Dif(_) => 1400,
            })
            .min()
            .unwrap_or(1400)
            .saturating_sub(seal)
    }

    fn has_layer(&self, layer: Layer) -> bool {
        match layer {
            Layer::Link(l) => l.0 < self.shims.len(),
            Layer::Dif(d) => d.0 < self.difs.len(),
        }
    }

    /// The DIF `dif`.
    ///
    /// # Panics
    /// If the node has no such DIF (ids come from [`Node::add_dif`]).
    pub fn dif(&self, dif: DifId) -> &Dif {
        &self.difs[dif.0]
    }

    /// The DIF `dif`, if the node has it.
    pub fn get_dif(&self, dif: DifId) -> Option<&Dif> {
        self.difs.get(dif.0)
    }

    /// Every DIF, lowest first.
    pub fn difs(&self) -> impl DoubleEndedIterator<Item = (DifId, &Dif)> {
        self.difs.iter().enumerate().map(|(i, d)| (DifId(i), d))
    }

    /// The IPC process of `dif`, for the applications' flows (read, write, answer,
    /// deallocate) and reports.
    ///
    /// # Panics
    /// If the node has no such DIF.
    pub fn ipcp_mut(&mut self, dif: DifId) -> &mut IpcProcess {
        &mut self.difs[dif.0].ipcp
    }

    /// The number of shim layers.
    pub fn link_count(&self) -> usize {
        self.shims.len()
    }

    /// A shim layer's name.
    pub fn link_name(&self, link: LinkId) -> &str {
        &self.shims[link.0].name
    }

    /// Where a shim layer's link is (as given when it was added).
    pub fn link_place(&self, link: LinkId) -> &str {
        &self.shims[link.0].place
    }

    /// The largest SDU a flow of `link` carries.
    pub fn link_max_sdu(&self, link: LinkId) -> usize {
        self.shims[link.0].max_sdu()
    }

    /// What the shim protocol of `link` dropped (malformed, unknown flow, wrong
    /// sender, not ours).
    pub fn link_dropped(&self, link: LinkId) -> u64 {
        self.shims[link.0].dropped()
    }

    /// Releases of secured flows on `link` ignored (unauthenticated).
    pub fn link_releases_ignored(&self, link: LinkId) -> u64 {
        self.shims[link.0].releases_ignored()
    }

    /// The flows shim layer `link` holds (up or being made).
    pub fn link_flow_count(&self, link: LinkId) -> usize {
        self.shims[link.0].flow_count()
    }

    /// The N-1 ports of every DIF.
    pub fn n1_count(&self) -> usize {
        self.n1.len()
    }

    /// Asks DIF `dif` for a flow whose request carries as much of `first_data` as fits
    /// (see [`IpcProcess::allocate_flow_with_first_data`]; empty: none); a DIF waiting
    /// to try joining again tries at once, as a TCP connect tries whenever it is
    /// called. Returns the flow and how many bytes of `first_data` its request took.
    #[allow(clippy::too_many_arguments)]
    pub fn allocate(
        &mut self,
        now: Instant,
        dif: DifId,
        local: ApplicationName,
        remote: ApplicationName,
        kind: FlowKind,
        deadline: Instant,
        info: Vec<u8>,
        first_data: &[u8],
    ) -> (PortId, usize) {
        self.join_now(now, dif);
        self.difs[dif.0]
            .ipcp
            .allocate_flow_with_first_data(now, local, remote, kind, deadline, info, first_data)
    }

    /// Registers `app` in the (joined) DIF `dif`; its member then takes newcomers.
    ///
    /// # Errors
    /// As [`IpcProcess::register_with`].
    pub fn register(
        &mut self,
        now: Instant,
        dif: DifId,
        app: ApplicationName,
        kinds: FlowKinds,
        pool: bool,
    ) -> Result<(), RegisterError> {
        let r = self.difs[dif.0].ipcp.register_with(now, app, kinds, pool);
        self.offer_enrollment(now, dif);
        r
    }

    /// Says goodbye in DIF `dif` (its neighbours forget this member at once). A
    /// driver leaves the DIFs from the top, sending what each says before the next.
    pub fn leave(&mut self, now: Instant, dif: DifId) {
        self.difs[dif.0].ipcp.leave(now);
    }
}

/// EFCP settings for data flows over a path whose largest PDU is `mtu`: a window of
/// about 4 MiB (at least 32 PDUs), far above any path's bandwidth-delay product here,
/// and a send queue of about 256 KiB: what the application wrote beyond that waits in
/// its own socket, whose buffer it sizes (`SO_SNDBUF`), as over TCP.
fn data_efcp(mtu: usize) -> EfcpConfig {
    let mtu = mtu.max(1);
    EfcpConfig {
        max_pdu_size: mtu,
        initial_credit: ((4usize << 20) / mtu).clamp(32, 4096) as u64,
        send_queue_pdus: ((256usize << 10) / mtu).clamp(8, 1024),
        ..EfcpConfig::default()
    }
}

//! The stack of one process, built from the rules: the node ([`rina_core::node`]) with
//! its shim layers and normal DIFs, and the sockets under its links. The protocol is
//! the node's; this file opens the links and says what the rules mean in its terms.

use std::collections::BTreeSet;

use rina_core::ipcp::IpcpConfig;
use rina_core::node::{DifConfig, DifId, Layer, LinkId, Node, Peer, Plan};
use rina_core::shim::eth::{EthConfig, EthPeer};
use rina_core::shim::ShimConfig;
use rina_core::{Address, Instant};
use shims::eth::{EthError, EthLink};
use shims::udp::UdpLink;

use crate::api::FlowError;
use crate::config::{Config, DifIndex, DifKind, Join, Neighbor, NormalDifConfig};
use crate::keys::PublicKey;
use crate::link::Link;

/// Why a stack could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// A shim's configured endpoint is taken (by another member with the same rules,
    /// such as the parent of a fork child).
    EndpointInUse(FlowError),
    /// Anything else.
    Other(FlowError),
}

impl From<FlowError> for BuildError {
    fn from(e: FlowError) -> Self {
        Self::Other(e)
    }
}

impl From<BuildError> for FlowError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::EndpointInUse(e) | BuildError::Other(e) => e,
        }
    }
}

/// The node and the sockets of its links (by [`LinkId`]).
#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) node: Node,
    /// Shared with application threads that send on a flow themselves, outside the
    /// stack's lock (`driver/inline.rs`).
    pub(crate) links: std::sync::Arc<Vec<Link>>,
    /// Frames each link's socket dropped (not ours, truncated).
    pub(crate) dropped: Vec<u64>,
    /// The node's layer for each DIF of the rules, by [`DifIndex`].
    layers: Vec<Layer>,
    /// The secured DIFs with a trust directory, read again while the stack runs.
    pub(crate) trust: Vec<Trust>,
}

/// A secured DIF whose trust directory is read again while the stack runs.
#[derive(Debug)]
pub(crate) struct Trust {
    pub(crate) dif: DifId,
    pub(crate) name: String,
    pub(crate) config: crate::config::SecurityConfig,
    /// The keys trusted now.
    pub(crate) current: BTreeSet<PublicKey>,
}

impl Stack {
    /// Opens every link and creates every IPC process of `config`; `long_lived` for a
    /// node (`rina node`), whose members take newcomers from the start.
    pub(crate) fn build(
        config: &Config,
        program: &str,
        now: Instant,
        seed: u64,
        long_lived: bool,
    ) -> Result<Self, BuildError> {
        let mut stack = Self {
            node: Node::new(long_lived),
            links: std::sync::Arc::default(),
            dropped: Vec::new(),
            layers: Vec::new(),
            trust: Vec::new(),
        };
        // The ephemeral keys of secured DIFs' handshakes: from the OS.
        let mut seed32 = zeroize::Zeroizing::new([0u8; 32]);
        rustix::rand::getrandom(&mut seed32[..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| FlowError::RuntimeDown(format!("no randomness from the system: {e}")))?;
        stack.node.seed_security(*seed32);
        for (i, dif) in config.difs.iter().enumerate() {
            let seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let layer = match &dif.kind {
                DifKind::Udp(u) => {
                    let link = UdpLink::bind(u.bind).map_err(|e| {
                        let err = FlowError::RuntimeDown(format!(
                            "DIF {}: UDP {}: cannot bind: {e}",
                            dif.name, u.bind
                        ));
                        if e.kind() == std::io::ErrorKind::AddrInUse {
                            BuildError::EndpointInUse(err)
                        } else {
                            BuildError::Other(err)
                        }
                    })?;
                    let cfg = ShimConfig {
                        mtu: u.mtu,
                        ..ShimConfig::default()
                    };
                    let place = format!("UDP {}", link.local_addr());
                    let id = stack.node.add_udp_link(dif.name.clone(), place, cfg, seed);
                    stack.push_link(Link::Udp(link));
                    Layer::Link(id)
                }
                DifKind::Ethernet(e) => {
                    let link = EthLink::open(&e.interface).map_err(|err| {
                        if let EthError::Permission { .. } = &err {
                            tracing::error!("{err}");
                        }
                        FlowError::RuntimeDown(format!("DIF {}: {err}", dif.name))
                    })?;
                    // Any id but the broadcast one; random, so that processes sharing
                    // the interface differ (a collision needs two of 2^32).
                    let demux = (seed ^ (seed >> 32)) as u32 % (u32::MAX - 1) + 1;
                    let cfg = EthConfig {
                        mtu: link.mtu(),
                        ..EthConfig::default()
                    };
                    let me = EthPeer {
                        mac: link.mac(),
                        demux,
                    };
                    let place = format!("interface {}", link.interface());
                    let id = stack
                        .node
                        .add_eth_link(dif.name.clone(), place, cfg, me, seed);
                    stack.push_link(Link::Eth(link));
                    Layer::Link(id)
                }
                DifKind::Normal(n) => stack.add_normal(now, &dif.name, n, program, seed)?,
                DifKind::Host => {
                    return Err(BuildError::Other(FlowError::RuntimeDown(format!(
                        "DIF {} is the host member's: a program served by it runs no stack",
                        dif.name
                    ))))
                }
            };
            stack.layers.push(layer);
        }
        Ok(stack)
    }

    /// Adds the normal DIF `name` to the node (with its security, if any).
    fn add_normal(
        &mut self,
        now: Instant,
        name: &str,
        n: &NormalDifConfig,
        program: &str,
        seed: u64,
    ) -> Result<Layer, FlowError> {
        let cfg = Self::dif_config(name, n, &self.layers, program, seed)?;
        // The keys trusted, as the key files were just read (once).
        let trusted: Option<BTreeSet<PublicKey>> = cfg
            .security
            .as_ref()
            .map(|s| s.trusted.iter().map(|&k| PublicKey::from(k)).collect());
        match (&n.security, &trusted) {
            (Some(s), Some(t)) => tracing::info!("{}", s.describe_trusting(name, Ok(t.clone()))),
            _ => tracing::info!("{}", crate::config::open_dif(name)),
        }
        let id = self
            .node
            .add_dif(now, cfg)
            .map_err(|e| FlowError::RuntimeDown(e.to_string()))?;
        if let (Some(s), Some(current)) = (
            n.security.as_ref().filter(|s| s.trust_dir.is_some()),
            trusted,
        ) {
            self.trust.push(Trust {
                dif: id,
                name: name.to_owned(),
                config: s.clone(),
                current,
            });
        }
        Ok(Layer::Dif(id))
    }

    fn push_link(&mut self, link: Link) {
        // Links are all opened while the stack is built, before anything shares them.
        match std::sync::Arc::get_mut(&mut self.links) {
            Some(links) => {
                links.push(link);
                self.dropped.push(0);
            }
            None => tracing::error!("a link opened after the stack started is not used"),
        }
    }

    /// What the rules say of the normal DIF `name`, in the node's terms: the parser
    /// checked every name and neighbour, so this only maps them.
    fn dif_config(
        name: &str,
        n: &NormalDifConfig,
        layers: &[Layer],
        program: &str,
        seed: u64,
    ) -> Result<DifConfig, FlowError> {
        // Indices into the DIFs declared before this one (the parser's guarantee).
        let layer = |i: DifIndex| {
            layers.get(i.0).copied().ok_or_else(|| {
                FlowError::RuntimeDown(format!("DIF {name:?}: no DIF #{} below it", i.0))
            })
        };
        let over = n.over.iter().map(|&i| layer(i)).collect::<Result<_, _>>()?;
        let member = n.ipcp_name.clone().unwrap_or_else(|| {
            crate::config::default_member_name(program, name, std::process::id())
        });
        let mut ipcp = IpcpConfig::new(name, member, seed);
        ipcp.enrollment_timeout = n.enrollment_timeout;
        ipcp.keepalive_interval = n.keepalive_interval;
        ipcp.keepalive_misses = n.keepalive_misses;
        // Incoming flows are answered once their listener took them (incoming.rs).
        ipcp.ask_before_accepting = true;
        let plan = |via: DifIndex, neighbor: &Neighbor| -> Result<Plan, FlowError> {
            let peer = match neighbor {
                Neighbor::Endpoint(at) | Neighbor::Peer { at, .. } => Peer::Udp(*at),
                Neighbor::Name(n) => Peer::Name(n.clone()),
            };
            Ok(Plan {
                lower: layer(via)?,
                peer,
            })
        };
        let enroll = match &n.join {
            Join::Bootstrap { address } => {
                ipcp.bootstrap = Some(Address(*address));
                None
            }
            Join::Enroll { via, neighbor } => Some(plan(*via, neighbor)?),
        };
        let neighbors = n
            .neighbors
            .iter()
            .map(|(via, nb)| plan(*via, nb))
            .collect::<Result<_, _>>()?;
        Ok(DifConfig {
            ipcp,
            over,
            enroll,
            neighbors,
            role: n.role,
            security: n
                .security
                .as_ref()
                .map(|s| s.load())
                .transpose()
                .map_err(|e| FlowError::RuntimeDown(format!("DIF {name}: {e}")))?,
        })
    }

    /// The node's DIF for the rules' DIF `i` (a normal DIF).
    pub(crate) fn dif_of(&self, i: DifIndex) -> Option<DifId> {
        match self.layers.get(i.0) {
            Some(Layer::Dif(d)) => Some(*d),
            _ => None,
        }
    }

    /// The link `link`'s socket.
    pub(crate) fn link(&self, link: LinkId) -> Option<&Link> {
        self.links.get(link.0)
    }
}

//! The shim DIFs of a process, one type over both kinds of link: a UDP tunnel
//! (`shims::udp` with `rina_core::shim`) and raw Ethernet (`shims::eth` with
//! `rina_core::shim::eth`). The driver sees flows, PDUs and events; how a peer is
//! named (a UDP endpoint, or a MAC and demultiplexing id found by broadcast) stays in
//! here.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use rina_core::shim::eth::{EthConfig, EthEvent, EthPeer, EthShim};
use rina_core::shim::{ShimConfig, ShimEvent, ShimFlowId, ShimProcess};
use rina_core::{ApplicationName, Instant};
use shims::eth::EthLink;
use shims::udp::UdpLink;

/// One shim DIF: its link and protocol state.
#[derive(Debug)]
pub(crate) struct Shim {
    pub(crate) name: String,
    pub(crate) link: Link,
    /// Frames or datagrams dropped by the link (not ours, truncated).
    pub(crate) dropped: u64,
}

/// The kinds of shim.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a process has a handful of shims; boxing buys nothing"
)]
pub(crate) enum Link {
    /// A UDP tunnel with statically named peers.
    Udp {
        link: UdpLink,
        proto: ShimProcess<SocketAddr>,
        peers: Vec<(String, SocketAddr)>,
    },
    /// Raw Ethernet; peers found by broadcast.
    Eth { link: EthLink, proto: EthShim },
}

/// How a neighbour to enroll through is reached.
#[derive(Clone, Debug)]
pub(crate) enum PeerRef {
    /// A UDP endpoint.
    Udp(SocketAddr),
    /// A name to resolve on the Ethernet.
    Name(ApplicationName),
}

impl std::fmt::Display for PeerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Udp(a) => write!(f, "{a}"),
            Self::Name(n) => write!(f, "{n}"),
        }
    }
}

/// What asking for an N-1 flow to a peer gave.
#[derive(Debug)]
pub(crate) enum Allocation<T = ShimFlowId> {
    /// The allocation started.
    Started(T),
    /// The peer's name is being resolved: ask again after [`ShimNotice::Resolved`].
    Resolving,
}

/// What a shim tells the driver, beyond the flow protocol's events.
#[derive(Debug)]
pub(crate) enum ShimNotice {
    /// A flow event.
    Flow(ShimEvent),
    /// A name was resolved.
    Resolved(ApplicationName),
    /// Nobody answered for a name.
    Unresolved(ApplicationName),
}

impl Shim {
    /// A UDP shim.
    pub(crate) fn udp(
        name: String,
        link: UdpLink,
        cfg: ShimConfig,
        peers: Vec<(String, SocketAddr)>,
        seed: u64,
    ) -> Self {
        Self {
            name,
            link: Link::Udp {
                link,
                proto: ShimProcess::new(cfg, seed),
                peers,
            },
            dropped: 0,
        }
    }

    /// An Ethernet shim on `link`, with a demultiplexing id from `seed`.
    pub(crate) fn eth(name: String, link: EthLink, seed: u64) -> Self {
        // Any id but the broadcast one; random, so that processes sharing the
        // interface differ (a collision needs two of 2^32).
        let demux = (seed ^ (seed >> 32)) as u32 % (u32::MAX - 1) + 1;
        let cfg = EthConfig {
            mtu: link.mtu(),
            ..EthConfig::default()
        };
        let me = EthPeer {
            mac: link.mac(),
            demux,
        };
        Self {
            name,
            link: Link::Eth {
                proto: EthShim::new(cfg, me, seed),
                link,
            },
            dropped: 0,
        }
    }

    /// True for an Ethernet shim.
    pub(crate) fn is_ethernet(&self) -> bool {
        matches!(self.link, Link::Eth { .. })
    }

    /// The socket, for readiness.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.link {
            Link::Udp { link, .. } => link.fd(),
            Link::Eth { link, .. } => link.fd(),
        }
    }

    /// The largest SDU a flow carries.
    pub(crate) fn max_sdu(&self) -> usize {
        match &self.link {
            Link::Udp { proto, .. } => proto.max_sdu(),
            Link::Eth { proto, .. } => proto.max_sdu(),
        }
    }

    /// Accepts flows to `name` (and, on Ethernet, answers for it).
    pub(crate) fn register(&mut self, name: ApplicationName) {
        match &mut self.link {
            Link::Udp { proto, .. } => proto.register(name),
            Link::Eth { proto, .. } => proto.register(name),
        }
    }

    /// A UDP peer's endpoint by its name in the rules.
    pub(crate) fn udp_peer(&self, name: &str) -> Option<SocketAddr> {
        match &self.link {
            Link::Udp { peers, .. } => peers.iter().find(|(n, _)| n == name).map(|(_, a)| *a),
            Link::Eth { .. } => None,
        }
    }

    /// Asks for a flow from `local` to `remote` at the neighbour `peer`.
    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        peer: &PeerRef,
        local: ApplicationName,
        remote: ApplicationName,
    ) -> Allocation {
        match (&mut self.link, peer) {
            (Link::Udp { proto, .. }, PeerRef::Udp(a)) => {
                Allocation::Started(proto.allocate(now, *a, local, remote))
            }
            (Link::Eth { proto, .. }, PeerRef::Name(n)) => match proto.resolve(now, n) {
                Some(p) => Allocation::Started(proto.shim().allocate(now, p, local, remote)),
                None => Allocation::Resolving,
            },
            // The rules are validated: a neighbour is named the way its shim names peers.
            _ => Allocation::Resolving,
        }
    }

    /// Releases a flow.
    pub(crate) fn deallocate(&mut self, id: ShimFlowId) {
        match &mut self.link {
            Link::Udp { proto, .. } => proto.deallocate(id),
            Link::Eth { proto, .. } => proto.shim().deallocate(id),
        }
    }

    /// Receives one datagram or frame into `buf`: `Ok(Some(Some((flow, range))))` when
    /// it carries a PDU (at `buf[range]`), `Ok(Some(None))` when it was handled here
    /// (management) or dropped, `Ok(None)` when nothing is waiting.
    ///
    /// # Errors
    /// A receive error of the link.
    #[expect(
        clippy::type_complexity,
        reason = "three outcomes of one receive, each meaningful to the loop"
    )]
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> std::io::Result<Option<Option<(ShimFlowId, std::ops::Range<usize>)>>> {
        let base = buf.as_ptr() as usize;
        let offset = |pdu: &[u8]| {
            let start = pdu.as_ptr() as usize - base;
            start..start + pdu.len()
        };
        match &mut self.link {
            Link::Udp { link, proto, .. } => {
                let Some((n, from)) = link.recv(buf)? else {
                    return Ok(None);
                };
                Ok(Some(
                    proto
                        .handle_datagram(now, from, &buf[..n])
                        .map(|(id, pdu)| (id, offset(pdu))),
                ))
            }
            Link::Eth { link, proto } => {
                let Some(r) = link.recv(buf, &mut self.dropped)? else {
                    return Ok(None);
                };
                Ok(Some(
                    proto
                        .handle_frame(now, r.src, &buf[r.start..r.end])
                        .map(|(id, pdu)| (id, offset(pdu))),
                ))
            }
        }
    }

    /// Sends a PDU on flow `id` (nothing if the flow is not up: lost, as on a link).
    pub(crate) fn send_pdu(&self, id: ShimFlowId, pdu: &[u8]) {
        let r = match &self.link {
            Link::Udp { link, proto, .. } => {
                let Some((peer, hdr)) = proto.data_header(id) else {
                    return;
                };
                link.send(peer, &hdr, pdu)
            }
            Link::Eth { link, proto } => {
                let Some((mac, hdr)) = proto.data_header(id) else {
                    return;
                };
                link.send(mac, &hdr, pdu)
            }
        };
        if let Err(e) = r {
            tracing::debug!("shim {}: send failed: {e}", self.name);
        }
    }

    /// Sends every management datagram or frame that is ready; true if any.
    pub(crate) fn flush(&mut self) -> bool {
        let mut sent = false;
        match &mut self.link {
            Link::Udp { link, proto, .. } => {
                while let Some((peer, dgram)) = proto.poll_transmit() {
                    sent = true;
                    let _ = link.send(peer, &[], &dgram);
                }
            }
            Link::Eth { link, proto } => {
                while let Some((mac, frame)) = proto.poll_transmit() {
                    sent = true;
                    let _ = link.send(mac, &[], &frame);
                }
            }
        }
        sent
    }

    /// Reads what the link reported about peers nothing listens at (its error queue,
    /// after `EPOLLERR`): the flows being allocated to them fail at once.
    pub(crate) fn take_unreachable(&mut self) {
        if let Link::Udp { link, proto, .. } = &mut self.link {
            for peer in link.unreachable_peers() {
                tracing::debug!("shim {}: nothing listens at {peer}", self.name);
                proto.peer_unreachable(peer);
            }
        }
    }

    /// True while events or management datagrams wait to be polled.
    pub(crate) fn has_pending_output(&self) -> bool {
        match &self.link {
            Link::Udp { proto, .. } => proto.has_pending_output(),
            Link::Eth { proto, .. } => proto.has_pending_output(),
        }
    }

    /// The next event.
    pub(crate) fn poll_notice(&mut self) -> Option<ShimNotice> {
        match &mut self.link {
            Link::Udp { proto, .. } => proto.poll_event().map(ShimNotice::Flow),
            Link::Eth { proto, .. } => match proto.poll_event() {
                Some(EthEvent::Resolved { name, peer }) => {
                    tracing::debug!("shim {}: {name} is at {peer}", self.name);
                    Some(ShimNotice::Resolved(name))
                }
                Some(EthEvent::Unresolved { name }) => Some(ShimNotice::Unresolved(name)),
                None => proto.poll_shim_event().map(ShimNotice::Flow),
            },
        }
    }

    /// When [`Shim::handle_timeout`] must run.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.link {
            Link::Udp { proto, .. } => proto.poll_timeout(),
            Link::Eth { proto, .. } => proto.poll_timeout(),
        }
    }

    /// Runs due timers.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match &mut self.link {
            Link::Udp { proto, .. } => proto.handle_timeout(now),
            Link::Eth { proto, .. } => proto.handle_timeout(now),
        }
    }

    /// Datagrams or frames the shim protocol dropped (malformed, unknown flow, wrong
    /// sender, not ours).
    pub(crate) fn protocol_dropped(&self) -> u64 {
        match &self.link {
            Link::Udp { proto, .. } => proto.counters().dropped,
            Link::Eth { proto, .. } => {
                let c = proto.counters();
                c.malformed + c.unknown + c.not_ours + proto.shim_counters().dropped
            }
        }
    }

    /// Where the link is, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.link {
            Link::Udp { link, .. } => format!("UDP {}", link.local_addr()),
            Link::Eth { link, .. } => format!("interface {}", link.interface()),
        }
    }
}

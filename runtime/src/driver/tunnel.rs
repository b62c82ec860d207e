//! IP over RINA in the runtime thread (`rina tun`, [`crate::api::TunnelRequest`]): the
//! packets a TUN device gives go, by their destination's longest route, over one
//! unreliable flow per peer tunnel, allocated on the first packet (at most
//! [`MAX_QUEUED`] wait for it; a refused peer is not asked again for
//! [`REFUSED_HOLD`], its packets dropped as a router without a route drops them); the
//! SDUs of every flow of the tunnel (its own, and the peers' flows to its name) are
//! written to the device. Here, not in a thread of the command's, so that a packet
//! costs no hand-off and no copy through a loopback socket.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rina_core::ipcp::{FlowKind, ReadResult};
use rina_core::node::DifId;
use rina_core::{Instant, PortId};
use rustix::event::epoll;

use super::{Driver, TOKEN_TUNNEL};
use crate::api::{FlowError, ListenRequest, ListenTarget, Reply, TunnelRequest};
use crate::config::tun::TunConfig;

/// Packets held per peer while its flow is being made.
const MAX_QUEUED: usize = 64;
/// How long a peer whose flow was refused is not asked for again.
const REFUSED_HOLD: Duration = Duration::from_secs(1);
/// Packets read from the device per loop turn (the other flows get turns too).
const READ_BURST: usize = 64;

/// The destination address of an IPv4 or IPv6 packet.
pub fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

enum Peer {
    Idle,
    /// Its flow is being made: packets wait.
    Asking(PortId, Vec<Vec<u8>>),
    Up(PortId),
    /// Its flow was refused at this time.
    Refused(Instant),
}

/// The tunnel of this runtime.
pub(super) struct Tunnel {
    dif: DifId,
    config: TunConfig,
    device: OwnedFd,
    /// Bytes before the IP header in each packet (a `virtio_net_hdr`).
    header: usize,
    readable: bool,
    peers: Vec<Peer>,
    /// The flows whose SDUs go to the device.
    ports: BTreeSet<PortId>,
    /// Flows being made, by port-id: the peer's index.
    asking: BTreeMap<PortId, usize>,
    timeout: Duration,
    buf: Vec<u8>,
}

impl Driver {
    /// Serves `req`'s device, once its name is registered.
    pub(super) fn start_tunnel(
        &mut self,
        now: Instant,
        req: TunnelRequest,
        reply: Reply<Result<(), FlowError>>,
    ) {
        let TunnelRequest {
            dif: index,
            config,
            device,
            header,
            timeout,
        } = req;
        let Some(dif) = self.stack.dif_of(index) else {
            reply.send(Err(FlowError::NoSuchDif(format!("#{}", index.0))));
            return;
        };
        if self.tunnel.is_some() {
            reply.send(Err(FlowError::NotAllowed(
                "a tunnel runs here already".into(),
            )));
            return;
        }
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ET;
        let data = epoll::EventData::new_u64(TOKEN_TUNNEL);
        if let Err(e) = epoll::add(&self.epoll, &device, data, flags) {
            reply.send(Err(FlowError::RuntimeDown(format!(
                "cannot watch the device: {e}"
            ))));
            return;
        }
        let listen = ListenRequest {
            dif: index,
            app: config.app.clone(),
            target: ListenTarget::Tunnel,
            pool: false,
            timeout,
        };
        self.tunnel = Some(Tunnel {
            dif,
            peers: config.peers.iter().map(|_| Peer::Idle).collect(),
            config,
            device,
            header,
            readable: true,
            ports: BTreeSet::new(),
            asking: BTreeMap::new(),
            timeout,
            buf: vec![0; 65536 + header],
        });
        self.listen(now, listen, reply);
    }

    /// The device has packets.
    pub(super) fn tunnel_readable(&mut self) {
        if let Some(t) = &mut self.tunnel {
            t.readable = true;
        }
    }

    /// A peer tunnel's flow came in: its SDUs go to the device.
    pub(super) fn tunnel_incoming(&mut self, now: Instant, dif: DifId, port: PortId) {
        let accepted = self
            .tunnel
            .as_mut()
            .is_some_and(|t| t.dif == dif && t.ports.insert(port));
        self.stack
            .node
            .ipcp_mut(dif)
            .answer_flow(now, port, accepted);
    }

    /// Moves packets both ways: true if any moved.
    pub(super) fn pump_tunnel(&mut self, now: Instant) -> bool {
        let Some(mut t) = self.tunnel.take() else {
            return false;
        };
        let mut progress = self.device_to_flows(now, &mut t);
        let ipcp = self.stack.node.ipcp_mut(t.dif);
        for &port in &t.ports {
            while let ReadResult::Sdu(sdu) = ipcp.read(now, port) {
                progress = true;
                // Only what looks like an IP packet goes in (the kernel checks the
                // rest); a full device queue drops it, as a router's would.
                let ip = sdu.get(t.header..).unwrap_or_default();
                if destination(ip).is_some() {
                    let _ = rustix::io::write(&t.device, &sdu);
                }
            }
        }
        self.tunnel = Some(t);
        progress
    }

    /// Packets from the device into their peers' flows (a burst at most).
    fn device_to_flows(&mut self, now: Instant, t: &mut Tunnel) -> bool {
        let mut progress = false;
        for _ in 0..READ_BURST {
            if !t.readable {
                break;
            }
            let n = match rustix::io::read(&t.device, &mut t.buf) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    t.readable = false;
                    break;
                }
            };
            progress = true;
            let packet = &t.buf[..n];
            let ip = packet.get(t.header..).unwrap_or_default();
            let Some(i) = destination(ip).and_then(|d| t.config.peer_for(d)) else {
                continue;
            };
            match &mut t.peers[i] {
                Peer::Up(port) => {
                    let _ = self.stack.node.ipcp_mut(t.dif).write(now, *port, packet);
                }
                Peer::Asking(_, q) if q.len() < MAX_QUEUED => q.push(packet.to_vec()),
                Peer::Asking(..) => {}
                Peer::Refused(at) if now < *at + REFUSED_HOLD => {}
                Peer::Idle | Peer::Refused(_) => {
                    let first = packet.to_vec();
                    let (port, _) = self.stack.node.allocate(
                        now,
                        t.dif,
                        t.config.app.clone(),
                        t.config.peers[i].app.clone(),
                        FlowKind::Unreliable,
                        now + t.timeout,
                        Vec::new(),
                        &[],
                    );
                    t.peers[i] = Peer::Asking(port, vec![first]);
                    t.asking.insert(port, i);
                }
            }
        }
        progress
    }

    /// A flow asked for is up, or was refused: true if it was the tunnel's.
    pub(super) fn tunnel_allocated(
        &mut self,
        now: Instant,
        dif: DifId,
        port: PortId,
        up: bool,
    ) -> bool {
        let Some(t) = self.tunnel.as_mut().filter(|t| t.dif == dif) else {
            return false;
        };
        let Some(i) = t.asking.remove(&port) else {
            return false;
        };
        let queued = match std::mem::replace(&mut t.peers[i], Peer::Idle) {
            Peer::Asking(p, q) if p == port => q,
            other => {
                t.peers[i] = other;
                return true;
            }
        };
        if !up {
            tracing::info!("tunnel: no flow to {}", t.config.peers[i].app);
            t.peers[i] = Peer::Refused(now);
            return true;
        }
        t.peers[i] = Peer::Up(port);
        t.ports.insert(port);
        let ipcp = self.stack.node.ipcp_mut(dif);
        for p in queued {
            let _ = ipcp.write(now, port, &p);
        }
        true
    }

    /// A flow closed: true if it was the tunnel's (its peer is asked for again on its
    /// next packet).
    pub(super) fn tunnel_closed(&mut self, dif: DifId, port: PortId) -> bool {
        let Some(t) = self.tunnel.as_mut().filter(|t| t.dif == dif) else {
            return false;
        };
        let mine = t.ports.remove(&port);
        for p in &mut t.peers {
            if matches!(p, Peer::Up(q) if *q == port) {
                *p = Peer::Idle;
            }
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::destination;

    #[test]
    fn destinations_of_both_families() {
        let mut v4 = vec![0x45u8; 20];
        v4[16..20].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(destination(&v4), Some("10.77.0.2".parse().unwrap()));
        let mut v6 = vec![0x60u8; 40];
        v6[24..40].copy_from_slice(&"fd77::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(destination(&v6), Some("fd77::2".parse().unwrap()));
        assert_eq!(destination(&v4[..19]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(destination(&[]), None);
    }
}

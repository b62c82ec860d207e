//! IP over RINA in the runtime thread (`rina tun`, [`crate::api::TunnelRequest`]): the
//! packets a TUN device gives go, by their destination's longest route, over one
//! unreliable flow per peer tunnel, allocated on the first packet (at most
//! [`MAX_QUEUED`] wait for it; a refused peer is not asked again for
//! [`REFUSED_HOLD`], its packets dropped as a router without a route drops them); the
//! SDUs of every flow of the tunnel (its own, and the peers' flows to its name) are
//! written to the device. A flow without room holds the device back (its packet
//! waits, and the device is not read meanwhile) rather than dropping: each packet's
//! fate is counted ([`TunnelReport`], `rina ctl`). Here, not in a thread of the
//! command's, so that a packet costs no hand-off and no copy through a loopback
//! socket.
//!
//! What reaches the host's IP stack is checked, as WireGuard checks its peers'
//! allowed addresses: only the tunnels the rules name as peers may open flows to this
//! one ([`MAX_FLOWS_PER_PEER`] each), a packet must come from an address of its peer's
//! routes, and its offload header must describe it ([`admit`]).

mod packet;
mod segment;

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rina_core::ipcp::{FlowKind, ReadResult, WriteError};
use rina_core::node::DifId;
use rina_core::{Instant, PortId};
use rustix::event::epoll;

use super::{Driver, TOKEN_TUNNEL};
use crate::api::{FlowError, ListenRequest, ListenTarget, Reply, TunnelRequest};
use crate::config::tun::TunConfig;
use crate::report::TunnelReport;
use packet::{admit, destination};
use segment::Joiner;

/// Packets held per peer while its flow is being made.
const MAX_QUEUED: usize = 64;
/// How long a peer whose flow was refused is not asked for again.
const REFUSED_HOLD: Duration = Duration::from_secs(1);
/// Packets read from the device per loop turn (the other flows get turns too).
const READ_BURST: usize = 64;
/// Flows a peer tunnel may have open to this one at a time.
pub const MAX_FLOWS_PER_PEER: usize = 4;

enum Peer {
    Idle,
    /// Its flow is being made: packets wait (as the SDUs they leave as).
    Asking(PortId, Vec<Vec<u8>>),
    /// Its flow is up; the SDUs that waited for it go first, in order.
    Up(PortId, VecDeque<Vec<u8>>),
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
    /// The flows whose SDUs go to the device, and the peer each is with.
    ports: BTreeMap<PortId, usize>,
    timeout: Duration,
    buf: Vec<u8>,
    /// A packet read into `buf` (its length) that its peer's flow (the index) had no
    /// room for: it goes first, and the device is not read until it has gone. So a
    /// full flow holds the packets back in the device's queue, as a full link holds a
    /// router's, instead of dropping them: the TCP inside would take every drop for
    /// congestion (5.6% of a bulk transfer's packets were lost so).
    /// With the index of its first segment not sent yet.
    held: Option<(usize, usize, usize)>,
    /// A segment being made.
    scratch: Vec<u8>,
    /// Joins the segments that arrive together for the device.
    joiner: Joiner,
    /// What it carried and dropped (`rina ctl`).
    counts: TunnelReport,
}

/// What became of a packet given to a peer's flow.
enum Forwarded {
    /// Sent, or queued while the flow is made.
    Taken,
    /// Dropped: the flow was refused or is closed, or too many wait for it.
    Dropped,
    /// The flow has no room now: nothing was done.
    NoRoom,
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
        let counts = TunnelReport {
            device: config.name.clone(),
            ..TunnelReport::default()
        };
        self.tunnel = Some(Tunnel {
            counts,
            dif,
            peers: config.peers.iter().map(|_| Peer::Idle).collect(),
            config,
            device,
            header,
            readable: true,
            ports: BTreeMap::new(),
            timeout,
            buf: vec![0; 65536 + header],
            held: None,
            scratch: Vec::new(),
            joiner: Joiner::default(),
        });
        self.listen(now, listen, reply);
    }

    /// The device has packets.
    pub(super) fn tunnel_readable(&mut self) {
        if let Some(t) = &mut self.tunnel {
            t.readable = true;
        }
    }

    /// A flow came in for the tunnel's name: accepted (its SDUs go to the device) if
    /// it is from a peer the rules name, with fewer than [`MAX_FLOWS_PER_PEER`] open.
    pub(super) fn tunnel_incoming(
        &mut self,
        now: Instant,
        dif: DifId,
        port: PortId,
        remote: &rina_core::ApplicationName,
    ) {
        let peer = self.tunnel.as_mut().filter(|t| t.dif == dif).and_then(|t| {
            let i = t.config.peers.iter().position(|p| p.app == *remote)?;
            let open = t.ports.values().filter(|&&p| p == i).count();
            (open < MAX_FLOWS_PER_PEER)
                .then(|| t.ports.insert(port, i))
                .map(|_| i)
        });
        if peer.is_none() {
            tracing::info!("tunnel: a flow from {remote} refused (not a peer, or too many)");
        }
        self.stack
            .node
            .ipcp_mut(dif)
            .answer_flow(now, port, peer.is_some());
    }

    /// Moves packets both ways: true if any moved.
    pub(super) fn pump_tunnel(&mut self, now: Instant) -> bool {
        let Some(mut t) = self.tunnel.take() else {
            return false;
        };
        let mut progress = self.device_to_flows(now, &mut t);
        let ipcp = self.stack.node.ipcp_mut(t.dif);
        let (mut received, mut not_admitted) = (0, 0);
        let (device, counts) = (&t.device, &mut t.counts);
        // A full device queue drops the packet, as a router's would.
        let mut write = |p: &[u8]| match rustix::io::write(device, p) {
            Ok(_) => counts.to_device += 1,
            Err(_) => counts.device_refused += 1,
        };
        for (&port, &i) in &t.ports {
            let routes = &t.config.peers[i].routes;
            while let ReadResult::Sdu(sdu) = ipcp.read(now, port) {
                progress = true;
                received += 1;
                if admit(&sdu, t.header, routes) {
                    t.joiner.add(&sdu, &mut write);
                } else {
                    not_admitted += 1;
                }
            }
            t.joiner.flush(&mut write);
        }
        t.counts.sdus_received += received;
        t.counts.not_admitted += not_admitted;
        self.tunnel = Some(t);
        progress
    }

    /// Packets from the device into their peers' flows (a burst at most), after those
    /// that waited for a flow and the held packet; stops at a packet its flow has no
    /// room for (it is held).
    fn device_to_flows(&mut self, now: Instant, t: &mut Tunnel) -> bool {
        let (mut progress, clear) = self.send_waiting(now, t);
        if !clear {
            return progress;
        }
        if let Some((i, n, mut k)) = t.held {
            if matches!(self.forward(now, t, i, n, &mut k), Forwarded::NoRoom) {
                t.held = Some((i, n, k));
                return false;
            }
            t.held = None;
            progress = true;
        }
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
            t.counts.from_device += 1;
            let ip = t.buf[..n].get(t.header..).unwrap_or_default();
            let Some(i) = destination(ip).and_then(|d| t.config.peer_for(d)) else {
                t.counts.no_peer += 1;
                continue;
            };
            let mut k = 0;
            if matches!(self.forward(now, t, i, n, &mut k), Forwarded::NoRoom) {
                t.counts.waited_for_room += 1;
                t.held = Some((i, n, k));
                break;
            }
        }
        progress
    }

    /// Sends what waited for the peers' flows while they were made, in order: (any
    /// sent, all sent). The device is not read until all are, so that nothing read
    /// later overtakes them.
    fn send_waiting(&mut self, now: Instant, t: &mut Tunnel) -> (bool, bool) {
        let mut progress = false;
        for p in &mut t.peers {
            let Peer::Up(port, waiting) = p else { continue };
            while let Some(sdu) = waiting.front() {
                match self.stack.node.ipcp_mut(t.dif).write(now, *port, sdu) {
                    Ok(()) => t.counts.sdus_sent += 1,
                    Err(WriteError::WouldBlock) => return (progress, false),
                    Err(_) => t.counts.sdus_dropped += 1,
                }
                waiting.pop_front();
                progress = true;
            }
        }
        (progress, true)
    }

    /// Gives the packet in `t.buf[..n]` to peer `i`'s flow, as its segments from the
    /// `k`th on (a TSO batch leaves as one SDU per segment, `segment.rs`), asking for
    /// the flow on its first packet. A flow without room takes no more (`k` says how
    /// far it got; the turn's next flush makes room: an unreliable flow's queue never
    /// waits for its peer). A refused peer's packets, too many while its flow is made,
    /// or a flow that refuses the packet (closed), are dropped, as a router drops what
    /// it has no route for.
    fn forward(
        &mut self,
        now: Instant,
        t: &mut Tunnel,
        i: usize,
        n: usize,
        k: &mut usize,
    ) -> Forwarded {
        let (packet, header) = (&t.buf[..n], t.header);
        let segments = segment::count(packet, header);
        let split = |k: usize, out: &mut Vec<u8>| segment::segment(packet, header, k, out);
        // Every segment, for a flow not up yet.
        let all = || {
            (0..segments).map(|k| {
                let mut v = Vec::new();
                split(k, &mut v);
                v
            })
        };
        let fate = match &mut t.peers[i] {
            Peer::Up(port, _) => {
                let ipcp = self.stack.node.ipcp_mut(t.dif);
                let mut fate = Forwarded::Taken;
                while *k < segments {
                    split(*k, &mut t.scratch);
                    match ipcp.write(now, *port, &t.scratch) {
                        Ok(()) => t.counts.sdus_sent += 1,
                        Err(WriteError::WouldBlock) => return Forwarded::NoRoom,
                        Err(_) => {
                            fate = Forwarded::Dropped;
                            break;
                        }
                    }
                    *k += 1;
                }
                fate
            }
            Peer::Asking(_, q) if q.len() + segments <= MAX_QUEUED => {
                q.extend(all());
                Forwarded::Taken
            }
            Peer::Asking(..) => Forwarded::Dropped,
            Peer::Refused(at) if now < *at + REFUSED_HOLD => Forwarded::Dropped,
            Peer::Idle | Peer::Refused(_) => {
                let first = all().collect();
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
                t.peers[i] = Peer::Asking(port, first);
                Forwarded::Taken
            }
        };
        match fate {
            Forwarded::Taken => t.counts.to_flows += 1,
            _ => t.counts.no_flow += 1,
        }
        fate
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
        let Some(i) = t
            .peers
            .iter()
            .position(|p| matches!(p, Peer::Asking(q, _) if *q == port))
        else {
            return false;
        };
        let Peer::Asking(_, queued) = std::mem::replace(&mut t.peers[i], Peer::Idle) else {
            return false;
        };
        if !up {
            tracing::info!("tunnel: no flow to {}", t.config.peers[i].app);
            t.peers[i] = Peer::Refused(now);
            t.counts.sdus_dropped += queued.len() as u64;
            return true;
        }
        // They go at the next pump, before anything read after them.
        t.peers[i] = Peer::Up(port, queued.into());
        t.ports.insert(port, i);
        true
    }

    /// What the tunnel carried, if one runs here.
    pub(super) fn tunnel_report(&self) -> Option<TunnelReport> {
        self.tunnel.as_ref().map(|t| t.counts.clone())
    }

    /// A flow closed: true if it was the tunnel's (its peer is asked for again on its
    /// next packet).
    pub(super) fn tunnel_closed(&mut self, dif: DifId, port: PortId) -> bool {
        let Some(t) = self.tunnel.as_mut().filter(|t| t.dif == dif) else {
            return false;
        };
        let mine = t.ports.remove(&port).is_some();
        for p in &mut t.peers {
            if let Peer::Up(q, waiting) = p {
                if *q != port {
                    continue;
                }
                t.counts.sdus_dropped += waiting.len() as u64;
                *p = Peer::Idle;
            }
        }
        mine
    }
}

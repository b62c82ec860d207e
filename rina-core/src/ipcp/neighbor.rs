//! Neighbours: the per-N-1-port management connection, adjacencies, flooding of
//! directory and link state, keepalives and goodbyes (enrollment, over the same
//! connection, is in `enrollment.rs`).
//!
//! Each N-1 port carries one reliable EFCP connection (CEP-id 0 at both ends, address
//! 0) whose SDUs are management messages, so enrollment state, directory snapshots and
//! link-state advertisements are delivered in order, retransmitted, and fragmented to
//! the N-1 MTU (IRATI#841 was a management message larger than the MTU).

use std::time::Duration;

use crate::efcp::{Connection, Delivery, Endpoint};
use crate::time::Instant;
use crate::wire::mgmt::{Lsa, MgmtMessage};
use crate::wire::{Pci, PduType};
use crate::{Address, ApplicationName, CepId, N1Port};

use super::{Event, IpcProcess, IpcpConfig};

/// Where an adjacency stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// We asked to enroll and wait for the enroller (deadline).
    Enrolling(Instant),
    /// We said hello (already a member) and wait for the answer.
    Greeting,
    /// The other side opened the N-1 flow; we wait for its request or hello.
    Awaiting,
    /// The adjacency is up.
    Up,
}

/// One neighbour on one N-1 port.
#[derive(Debug)]
pub(super) struct Neighbor {
    pub(super) port: N1Port,
    /// The largest PDU the N-1 port carries.
    pub(super) mtu: usize,
    pub(super) mgmt: Connection,
    pub(super) stage: Stage,
    pub(super) name: Option<ApplicationName>,
    pub(super) address: Option<Address>,
    pub(super) last_heard: Instant,
    pub(super) last_keepalive: Instant,
    /// When to ask again after the enroller said it is not a member yet.
    pub(super) enroll_retry: Option<Instant>,
    /// The address the enroller gave us, held until its state has arrived.
    pub(super) assigned: Option<Address>,
    /// The peer opened the N-1 flow (not this member).
    pub(super) opened_by_peer: bool,
    /// Its key, proved by the handshake of a secured DIF.
    pub(super) key: Option<crate::secure::PublicKey>,
}

/// N-1 ports whose peer has not said who it is (no enrollment request or hello yet)
/// that a member keeps at once; a new one beyond drops the oldest.
pub(super) const MAX_UNIDENTIFIED: usize = 64;

impl Neighbor {
    /// The peer opened the flow and has not said who it is.
    fn unidentified(&self) -> bool {
        self.opened_by_peer && self.stage == Stage::Awaiting && self.name.is_none()
    }

    pub(super) fn poll_timeout(&self, cfg: &IpcpConfig) -> Option<Instant> {
        let mut t = self.mgmt.poll_timeout();
        t = crate::time::earliest(t, Some(self.last_keepalive + cfg.keepalive_interval));
        t = crate::time::earliest(t, Some(self.lost_at(cfg)));
        if let Stage::Enrolling(deadline) = self.stage {
            t = crate::time::earliest(t, Some(deadline));
            t = crate::time::earliest(t, self.enroll_retry);
        }
        t
    }

    fn lost_at(&self, cfg: &IpcpConfig) -> Instant {
        self.last_heard + cfg.keepalive_interval * cfg.keepalive_misses.max(1)
    }
}

impl IpcProcess {
    /// A new N-1 port (an N-1 flow to a neighbour) with the given MTU (largest PDU).
    /// `initiate`: this side asked for the N-1 flow, so it speaks first (enrolls if it
    /// is not yet a member, else says hello).
    pub fn add_n1_port(&mut self, now: Instant, port: N1Port, mtu: usize, initiate: bool) {
        let ep = Endpoint {
            addr: Address::NONE,
            cep: CepId(0),
        };
        let mut efcp = self.cfg.mgmt_efcp.clone();
        efcp.max_pdu_size = mtu;
        let mut n = Neighbor {
            port,
            mtu,
            mgmt: Connection::new(efcp, ep, ep, now),
            stage: Stage::Awaiting,
            name: None,
            address: None,
            last_heard: now,
            last_keepalive: now,
            enroll_retry: None,
            assigned: None,
            opened_by_peer: !initiate,
            key: None,
        };
        if initiate {
            let msg = match self.address {
                None => {
                    n.stage = Stage::Enrolling(now + self.cfg.enrollment_timeout);
                    MgmtMessage::EnrollRequest {
                        ipcp: self.cfg.name.clone(),
                        dif: self.cfg.dif.clone(),
                        address: 0,
                        leaf: false,
                    }
                }
                Some(a) => {
                    n.stage = Stage::Greeting;
                    self.hello(a)
                }
            };
            let _ = n.mgmt.send(now, &msg.encode());
        }
        if !initiate {
            self.bound_unidentified();
        }
        self.neighbors.insert(port, n);
        // The first PDU on this port has no route to wait for: flush at once.
    }

    /// Keeps at most [`MAX_UNIDENTIFIED`] N-1 ports whose peer has not said who it is,
    /// room made for one more: the oldest goes (a flood of flows that never speak costs
    /// a bounded amount of state and no reply).
    fn bound_unidentified(&mut self) {
        let waiting: Vec<(Instant, N1Port)> = self
            .neighbors
            .values()
            .filter(|n| n.unidentified())
            .map(|n| (n.last_heard, n.port))
            .collect();
        if waiting.len() < MAX_UNIDENTIFIED {
            return;
        }
        if let Some(&(_, port)) = waiting.iter().min() {
            self.neighbors.remove(&port);
            self.events.push_back(Event::NeighborRefused { port });
        }
    }

    /// The N-1 port is gone (released by the layer below).
    pub fn remove_n1_port(&mut self, now: Instant, port: N1Port) {
        if let Some(n) = self.neighbors.remove(&port) {
            self.neighbor_gone(now, n);
        }
    }

    /// Leaves the DIF: says goodbye to every neighbour (best effort: the messages are
    /// queued for the next `poll_transmit`).
    pub fn leave(&mut self, now: Instant) {
        if let Some(a) = self.address {
            let msg = MgmtMessage::Goodbye { address: a.0 };
            self.send_to_neighbors(now, &msg, None);
        }
    }

    /// Re-advertises this member's adjacencies and recomputes routes.
    pub(super) fn advertise(&mut self, now: Instant) {
        let Some(me) = self.address else { return };
        self.lsa_seq = self.lsa_seq.max(self.lsdb.get(me).map_or(0, |l| l.seq)) + 1;
        let lsa = Lsa {
            origin: me.0,
            seq: self.lsa_seq,
            max_pdu: self
                .local_max_pdu()
                .map_or(0, |m| u32::try_from(m).unwrap_or(u32::MAX)),
            neighbors: self
                .neighbors
                .values()
                .filter(|n| n.stage == Stage::Up)
                .filter_map(|n| n.address.map(|a| a.0))
                .collect(),
        };
        self.lsdb.apply(&lsa);
        self.recompute_routes();
        self.send_to_neighbors(now, &MgmtMessage::LinkState(vec![lsa]), None);
    }

    pub(super) fn recompute_routes(&mut self) {
        let Some(me) = self.address else { return };
        let hops = self.lsdb.next_hops(me);
        let by_addr: std::collections::BTreeMap<Address, N1Port> = self
            .neighbors
            .values()
            .filter(|n| n.stage == Stage::Up)
            .filter_map(|n| Some((n.address?, n.port)))
            .collect();
        let pft: std::collections::BTreeMap<Address, N1Port> = hops
            .into_iter()
            .filter_map(|(dst, hop)| Some((dst, *by_addr.get(&hop)?)))
            .collect();
        // A member that was reachable and is no more (it vanished, or the last link to
        // it failed): its registrations go, so new flows go to the other registrants of
        // a name. Existing flows are left to EFCP, as a route may come back.
        let lost: Vec<Address> = self
            .pft
            .keys()
            .filter(|a| !pft.contains_key(a))
            .copied()
            .collect();
        for a in lost {
            self.directory.purge_address(a);
        }
        self.pft = pft;
        // A member with a smaller PDU limit may have joined: SDUs queued from now on
        // are cut to fit the DIF's (PDUs already queued keep their size).
        if let Some(m) = self.path_mtu() {
            self.limit_pdu_size(m);
        }
    }

    /// Queues `msg` on the management connection of every neighbour that is up,
    /// except `except`.
    pub(super) fn send_to_neighbors(
        &mut self,
        now: Instant,
        msg: &MgmtMessage,
        except: Option<N1Port>,
    ) {
        let bytes = msg.encode();
        for n in self.neighbors.values_mut() {
            if n.stage == Stage::Up && Some(n.port) != except {
                let _ = n.mgmt.send(now, &bytes);
            }
        }
    }

    pub(super) fn send_to(&mut self, now: Instant, port: N1Port, msg: &MgmtMessage) {
        if let Some(n) = self.neighbors.get_mut(&port) {
            let _ = n.mgmt.send(now, &msg.encode());
        }
    }

    /// A PDU with destination address 0: for the management connection of `port`.
    pub(super) fn on_neighbor_pdu(
        &mut self,
        now: Instant,
        port: N1Port,
        pci: &Pci,
        payload: &[u8],
    ) {
        if pci.pdu_type == PduType::Management || pci.dst_cep != CepId(0) {
            self.counters.pdus_dropped += 1;
            return;
        }
        let Some(n) = self.neighbors.get_mut(&port) else {
            self.counters.pdus_dropped += 1;
            return;
        };
        n.mgmt.handle_pdu(now, pci, payload);
        while let Some(d) = self.neighbors.get_mut(&port).and_then(|n| n.mgmt.recv(now)) {
            match d {
                Delivery::Sdu(bytes) => match MgmtMessage::decode(&bytes) {
                    Ok(m) => self.on_neighbor_msg(now, port, m),
                    Err(_) => self.counters.pdus_malformed += 1,
                },
                Delivery::Eof => {}
            }
        }
    }

    fn on_neighbor_msg(&mut self, now: Instant, port: N1Port, msg: MgmtMessage) {
        // State is taken only from a neighbour that said who it is (an adjacency up,
        // or the enroller while we enroll): not from one still unidentified or
        // refused.
        let identified = self
            .neighbors
            .get(&port)
            .is_some_and(|n| matches!(n.stage, Stage::Up | Stage::Enrolling(_)));
        let state = matches!(
            msg,
            MgmtMessage::Directory(_) | MgmtMessage::LinkState(_) | MgmtMessage::Goodbye { .. }
        );
        if state && !identified {
            self.counters.pdus_dropped += 1;
            return;
        }
        match msg {
            MgmtMessage::EnrollRequest {
                ipcp, dif, address, ..
            } => {
                self.on_enroll_request(now, port, ipcp, &dif, address);
            }
            MgmtMessage::EnrollResponse {
                result,
                address,
                enroller,
                enroller_address,
            } => self.on_enroll_response(now, port, result, address, enroller, enroller_address),
            MgmtMessage::EnrollDone => self.on_enroll_done(now, port),
            MgmtMessage::Hello { ipcp, dif, address } => {
                self.on_hello(now, port, ipcp, &dif, address)
            }
            MgmtMessage::Directory(entries) => {
                let mut fresh = Vec::new();
                for e in entries {
                    if self.entry_allowed(&e) && self.directory.apply(&e) {
                        fresh.push(e);
                    }
                }
                if !fresh.is_empty() {
                    self.send_to_neighbors(now, &MgmtMessage::Directory(fresh), Some(port));
                }
            }
            MgmtMessage::LinkState(lsas) => {
                let me = self.address;
                let fresh: Vec<_> = lsas
                    .into_iter()
                    .filter(|l| Some(Address(l.origin)) != me && self.lsdb.apply(l))
                    .collect();
                if !fresh.is_empty() {
                    self.recompute_routes();
                    self.send_to_neighbors(now, &MgmtMessage::LinkState(fresh), Some(port));
                }
            }
            MgmtMessage::Keepalive => {}
            MgmtMessage::Goodbye { address } => {
                // A neighbour says goodbye for itself only.
                let own =
                    self.neighbors.get(&port).and_then(|n| n.address) == Some(Address(address));
                if let Some(n) = self.neighbors.remove(&port) {
                    self.neighbor_gone(now, n);
                }
                if own {
                    self.forget_member(Address(address));
                }
            }
            // Routed messages never travel on the neighbour connection.
            MgmtMessage::FlowRequest { .. }
            | MgmtMessage::FlowResponse { .. }
            | MgmtMessage::FlowDeallocate { .. } => self.counters.pdus_dropped += 1,
        }
    }

    pub(super) fn neighbor_gone(&mut self, now: Instant, n: Neighbor) {
        self.events.push_back(Event::NeighborLost { port: n.port });
        if let Stage::Enrolling(_) = n.stage {
            self.events.push_back(Event::EnrollmentFailed {
                port: n.port,
                reason: "the enroller went away".into(),
            });
        }
        if n.stage == Stage::Up {
            self.advertise(now);
        }
    }

    /// A member left for good: its advertisement and registrations go.
    fn forget_member(&mut self, a: Address) {
        self.lsdb.remove(a);
        self.directory.purge_address(a);
        self.recompute_routes();
        self.reset_flows_to(a);
    }

    pub(super) fn neighbors_timeout(&mut self, now: Instant) {
        let ports: Vec<N1Port> = self.neighbors.keys().copied().collect();
        for port in ports {
            let cfg = &self.cfg;
            let Some(n) = self.neighbors.get_mut(&port) else {
                continue;
            };
            n.mgmt.handle_timeout(now);
            let lost = now >= n.lost_at(cfg) || n.mgmt.failure().is_some();
            if let Stage::Enrolling(deadline) = n.stage {
                if n.enroll_retry.is_some_and(|t| now >= t) {
                    n.enroll_retry = None;
                    let msg = MgmtMessage::EnrollRequest {
                        ipcp: self.cfg.name.clone(),
                        dif: self.cfg.dif.clone(),
                        address: self.address.map_or(0, |a| a.0),
                        leaf: false,
                    };
                    let _ = n.mgmt.send(now, &msg.encode());
                }
                if now >= deadline {
                    n.stage = Stage::Awaiting;
                    self.events.push_back(Event::EnrollmentFailed {
                        port,
                        reason: "no answer from the enroller".into(),
                    });
                    continue;
                }
            }
            if lost {
                if let Some(n) = self.neighbors.remove(&port) {
                    if n.unidentified() {
                        self.events.push_back(Event::NeighborRefused { port });
                    } else {
                        self.neighbor_gone(now, n);
                    }
                }
                continue;
            }
            if now >= n.last_keepalive + cfg.keepalive_interval {
                n.last_keepalive = now;
                let _ = n.mgmt.send(now, &MgmtMessage::Keepalive.encode());
            }
        }
    }

    pub(super) fn poll_neighbors_transmit(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<N1Port> {
        for n in self.neighbors.values_mut() {
            if n.mgmt.poll_transmit(now, buf) {
                return Some(n.port);
            }
        }
        None
    }

    /// How long before a lost neighbour is noticed.
    pub fn liveness_bound(&self) -> Duration {
        self.cfg.keepalive_interval * self.cfg.keepalive_misses.max(1)
    }
}

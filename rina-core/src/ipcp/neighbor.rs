//! Neighbours: the per-N-1-port management connection, adjacencies, flooding of
//! directory and link state, keepalives and goodbyes (enrollment, over the same
//! connection, is in `enrollment.rs`; what link state says and when routes are
//! computed, in `link_state.rs`).
//!
//! Each N-1 port carries one reliable EFCP connection (CEP-id 0 at both ends, address
//! 0) whose SDUs are management messages, so enrollment state, directory snapshots and
//! link-state advertisements are delivered in order, retransmitted, and fragmented to
//! the N-1 MTU (IRATI#841 was a management message larger than the MTU).

use std::time::Duration;

use crate::efcp::{Connection, Delivery, Endpoint};
use crate::time::Instant;
use crate::wire::mgmt::MgmtMessage;
use crate::wire::{Pci, PduType};
use crate::{Address, ApplicationName, CepId, N1Port};

use super::enrollment::enroll_request;
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
    /// A leaf enrolled through this member.
    pub(super) leaf: bool,
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
        self.last_heard
            + cfg
                .keepalive_interval
                .saturating_mul(cfg.keepalive_misses.max(1))
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
            leaf: false,
        };
        // A leaf whose enroller is up has nothing to say on another N-1 port.
        if initiate && !(self.cfg.leaf && self.uplink.is_some()) {
            let msg = match self.address {
                Some(a) if !self.cfg.leaf => {
                    n.stage = Stage::Greeting;
                    self.hello(a)
                }
                // Not a member yet, or a leaf that lost its enroller (it asks for its
                // address).
                _ => {
                    n.stage = Stage::Enrolling(now + self.cfg.enrollment_timeout);
                    enroll_request(&self.cfg, self.address)
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

    /// Queues `msg` on the management connection of every neighbour that is up,
    /// except `except` (and leaves, for link state: they have no database).
    pub(super) fn send_to_neighbors(
        &mut self,
        now: Instant,
        msg: &MgmtMessage,
        except: Option<N1Port>,
    ) {
        let bytes = msg.encode();
        let to_leaves = !matches!(msg, MgmtMessage::LinkState(_));
        for n in self.neighbors.values_mut() {
            if n.stage == Stage::Up && Some(n.port) != except && (to_leaves || !n.leaf) {
                self.counters.control_to_members += u64::from(!n.leaf);
                let _ = n.mgmt.send(now, &bytes);
            }
        }
    }

    pub(super) fn send_to(&mut self, now: Instant, port: N1Port, msg: &MgmtMessage) {
        if let Some(n) = self.neighbors.get_mut(&port) {
            self.counters.control_to_members += u64::from(!n.leaf && n.stage == Stage::Up);
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
                ipcp,
                dif,
                address,
                leaf,
            } => {
                self.on_enroll_request(now, port, ipcp, &dif, address, leaf);
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
                // A leaf speaks for its own address only.
                let leaf = self
                    .neighbors
                    .get(&port)
                    .filter(|n| n.leaf)
                    .and_then(|n| n.address);
                let mut fresh = Vec::new();
                for e in entries {
                    if leaf.is_some_and(|a| a.0 != e.address) {
                        self.counters.refused_claims += 1;
                        continue;
                    }
                    if self.entry_allowed(&e) && self.directory.apply(&e, now) {
                        fresh.push(e);
                    }
                }
                if !fresh.is_empty() {
                    self.send_to_neighbors(now, &MgmtMessage::Directory(fresh), Some(port));
                }
            }
            MgmtMessage::LinkState(lsas) => self.on_link_state(now, port, lsas),
            MgmtMessage::Keepalive => {}
            MgmtMessage::Goodbye { address } => {
                // A neighbour says goodbye for itself only; a leaf's goodbye stays
                // with its enroller.
                let (own, leaf) = self.neighbors.get(&port).map_or((false, false), |n| {
                    (n.address == Some(Address(address)), n.leaf)
                });
                if let Some(n) = self.neighbors.remove(&port) {
                    self.neighbor_gone(now, n);
                }
                if own && self.cfg.leaf {
                    // A leaf's enroller left: what it had with it is over.
                    self.reset_flows_to(Address(address));
                } else if own && !leaf {
                    self.withdraw_member(now, Address(address));
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
        if n.leaf {
            self.leaf_gone(now, &n);
        } else if self.uplink == Some(n.port) {
            // A leaf's enroller: it enrolls again through another adjacency it made,
            // or the next one made.
            self.uplink = None;
            self.enroll_elsewhere(now);
        } else if n.stage == Stage::Up {
            self.advertise(now);
        }
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
                    let msg = enroll_request(cfg, self.address);
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
        self.cfg
            .keepalive_interval
            .saturating_mul(self.cfg.keepalive_misses.max(1))
    }
}

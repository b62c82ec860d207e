//! The IPC process: one member of one normal DIF.
//!
//! [`IpcProcess`] is the facade the driver talks to. It owns the per-neighbour
//! management connections and enrollment (`neighbor`), the replicated directory
//! ([`directory`]), the link-state database and forwarding table ([`routing`]; this
//! member's advertisements, their flooding and the route hold-down in `link_state`),
//! the leaves enrolled through it or, for a leaf, its enroller ([`leaves`]), and the
//! flows with their EFCP connections (`flows`).
//!
//! ## How to drive it
//!
//! 1. Give it N-1 ports as the DIFs below provide them: [`IpcProcess::add_n1_port`]
//!    (with `initiate = true` on the side that asked for the N-1 flow, which then
//!    enrolls or says hello), and [`IpcProcess::remove_n1_port`] when one goes away.
//! 2. Feed every PDU that arrives on an N-1 port to [`IpcProcess::handle_pdu`] and
//!    call [`IpcProcess::handle_timeout`] when [`IpcProcess::poll_timeout`] is due.
//! 3. After any input, drain [`IpcProcess::poll_transmit`] (PDUs to send, each with
//!    its N-1 port) and then [`IpcProcess::poll_event`].
//! 4. Commands: [`IpcProcess::register`], [`IpcProcess::allocate_flow`],
//!    [`IpcProcess::write`], [`IpcProcess::read`], [`IpcProcess::close_write`],
//!    [`IpcProcess::deallocate`].

mod access;
mod allocation;
mod config;
pub mod directory;
mod enrollment;
mod event;
mod flows;
mod kind;
pub mod leaves;
mod link_state;
mod neighbor;
mod registration;
mod relay;
mod responder;
pub mod routing;
mod schedule;

use std::collections::{BTreeMap, VecDeque};

use crate::rand::Rng;
use crate::time::{earliest, Instant};
use crate::wire::mgmt::MgmtMessage;
use crate::wire::{Pci, PduType};
use crate::{Address, ApplicationName, CepId, N1Port, PortId};

pub use access::{Access, NamePattern, NameRule};
pub use config::IpcpConfig;
use directory::Directory;
pub use event::{AllocError, Counters, Event, RegisterError};
use flows::Flow;
pub use flows::{FlowSummary, ReadResult, WriteError};
pub use kind::{FlowKind, FlowKinds};
use neighbor::Neighbor;
use routing::Lsdb;
use schedule::FlowSchedule;

/// One member of one normal DIF. See the [module docs](self).
#[derive(Debug)]
pub struct IpcProcess {
    cfg: IpcpConfig,
    rng: Rng,
    address: Option<Address>,
    neighbors: BTreeMap<N1Port, Neighbor>,
    directory: Directory,
    lsdb: Lsdb,
    lsa_seq: u64,
    /// Destination -> N-1 port of the next hop.
    pft: BTreeMap<Address, N1Port>,
    /// Leaf block -> N-1 port of the next hop toward its owner.
    blocks: BTreeMap<u16, N1Port>,
    /// When routes were last computed, and when they must be next (hold-down).
    routes_at: Option<Instant>,
    routes_due: Option<Instant>,
    /// The latest time the driver gave (for a computation a lookup cannot wait for).
    clock: Instant,
    /// When this member's advertisement is refreshed, and the database swept next.
    refresh_at: Option<Instant>,
    sweep_at: Option<Instant>,
    /// This member's block of leaf addresses (0: none yet), and the last index given.
    block: u16,
    next_leaf: u16,
    /// Leaves enrolled through this member: address -> N-1 port.
    leaves: BTreeMap<Address, N1Port>,
    /// A leaf's enroller: where everything goes.
    uplink: Option<N1Port>,
    /// The DIF's largest PDU as last told to the leaves.
    leaves_mtu: usize,
    /// Names registered at this member, with the kinds of flow each accepts.
    registered: BTreeMap<ApplicationName, FlowKinds>,
    /// Names registered here as one of a pool.
    pooled: std::collections::BTreeSet<ApplicationName>,
    flows: BTreeMap<PortId, Flow>,
    cep_to_port: BTreeMap<CepId, PortId>,
    /// Flows' deadlines and readiness to send.
    schedule: FlowSchedule,
    /// Incoming flows by the requester's (address, CEP-id): a repeated request gets
    /// the same answer.
    incoming: BTreeMap<(Address, CepId), PortId>,
    /// Requests whose flows came and went (`responder.rs`).
    spent: responder::Spent,
    next_port: u32,
    /// Round-robin cursor over flows in `poll_transmit`.
    tx_cursor: u32,
    /// PDUs ready to go out (routed management, relayed PDUs).
    out: VecDeque<(N1Port, Vec<u8>)>,
    /// Buffers of PDUs sent from `out`, for the next relayed PDUs: a relay copies each
    /// PDU once, and allocates nothing in the steady state.
    spare: Vec<Vec<u8>>,
    /// PDUs addressed to this member by itself.
    loopback: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    counters: Counters,
    /// A PDU of another PCI version was reported (once: it is a deployment mistake,
    /// and every PDU of that peer would repeat it).
    version_reported: bool,
}

/// Buffers kept for relayed PDUs (see `IpcProcess::spare`).
pub(super) const SPARE_PDUS: usize = 16;

impl IpcProcess {
    /// A new member; with `cfg.bootstrap` set it is enrolled at once.
    pub fn new(cfg: IpcpConfig, now: Instant) -> Self {
        let rng = Rng::new(cfg.seed);
        let mut me = Self {
            rng,
            address: None,
            neighbors: BTreeMap::new(),
            directory: Directory::default(),
            lsdb: Lsdb::default(),
            lsa_seq: 0,
            pft: BTreeMap::new(),
            blocks: BTreeMap::new(),
            routes_at: None,
            routes_due: None,
            clock: now,
            refresh_at: None,
            sweep_at: None,
            block: 0,
            next_leaf: 0,
            leaves: BTreeMap::new(),
            uplink: None,
            leaves_mtu: 0,
            registered: BTreeMap::new(),
            pooled: std::collections::BTreeSet::new(),
            flows: BTreeMap::new(),
            cep_to_port: BTreeMap::new(),
            schedule: FlowSchedule::default(),
            incoming: BTreeMap::new(),
            spent: responder::Spent::default(),
            next_port: 1,
            tx_cursor: 0,
            out: VecDeque::new(),
            spare: Vec::new(),
            loopback: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            version_reported: false,
            cfg,
        };
        if let Some(a) = me.cfg.bootstrap {
            me.become_enrolled(now, a);
        }
        me
    }

    /// The configuration.
    pub fn config(&self) -> &IpcpConfig {
        &self.cfg
    }

    /// A neighbour speaks another PCI version: said once, since nothing it sends can
    /// be read (the releases on both ends must match).
    fn report_version(&mut self, port: N1Port, e: crate::wire::Error) {
        let crate::wire::Error::Version(v) = e else {
            return;
        };
        if !std::mem::replace(&mut self.version_reported, true) {
            let ours = crate::wire::pci::PCI_VERSION;
            self.events.push_back(Event::AccessRefused {
                why: format!(
                    "the neighbour on N-1 port {} speaks PCI version {v} and this member \
                     version {ours}: nothing it sends can be read (run the same release \
                     on both)",
                    port.0
                ),
            });
        }
    }

    /// This member's address, once enrolled.
    pub fn address(&self) -> Option<Address> {
        self.address
    }

    /// True once this member has joined the DIF.
    pub fn is_enrolled(&self) -> bool {
        self.address.is_some()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The forwarding table: destination -> N-1 port.
    pub fn forwarding_table(&self) -> &BTreeMap<Address, N1Port> {
        &self.pft
    }

    /// The full members this member can reach, itself included (a leaf knows of its
    /// enroller only).
    pub fn members(&self) -> Vec<Address> {
        let uplink = self
            .uplink
            .and_then(|p| self.neighbors.get(&p)?.address)
            .filter(|_| self.cfg.leaf);
        self.address
            .into_iter()
            .chain(uplink)
            .chain(
                self.pft
                    .keys()
                    .copied()
                    .filter(|&a| leaves::block_of(a).is_none()),
            )
            .collect()
    }

    /// The largest PDU every path of the DIF carries, as far as this member knows (the
    /// smallest of what its N-1 ports carry and what the other members advertise);
    /// `None` before it has a neighbour. A DIF above this one fits its PDUs in SDUs of
    /// this size less the PCI.
    pub fn max_pdu(&self) -> Option<usize> {
        self.path_mtu()
    }

    /// The names registered at this member.
    pub fn registrations(&self) -> Vec<ApplicationName> {
        self.registered.keys().cloned().collect()
    }

    /// Enrolled neighbours: N-1 port, name and address.
    pub fn neighbors(&self) -> Vec<(N1Port, ApplicationName, Address)> {
        self.neighbors
            .values()
            .filter_map(|n| Some((n.port, n.name.clone()?, n.address?)))
            .collect()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next time [`IpcProcess::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = None;
        for n in self.neighbors.values() {
            t = earliest(t, n.poll_timeout(&self.cfg));
        }
        t = earliest(t, self.link_state_deadline());
        earliest(t, self.schedule.next())
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        self.neighbors_timeout(now);
        self.link_state_timeout(now);
        self.flows_timeout(now);
    }

    /// Handles a PDU that arrived on N-1 port `port`.
    pub fn handle_pdu(&mut self, now: Instant, port: N1Port, pdu: &[u8]) {
        self.clock = now;
        self.counters.pdus_in += 1;
        let (pci, payload) = match Pci::parse(pdu) {
            Ok(p) => p,
            Err(e) => {
                self.counters.pdus_malformed += 1;
                self.report_version(port, e);
                return;
            }
        };
        if let Some(n) = self.neighbors.get_mut(&port) {
            n.last_heard = now;
        }
        // In a secured DIF, only an adjacency that is up carries routed PDUs.
        if pci.dst_addr != Address::NONE && self.cfg.access.is_some() && !self.adjacency_up(port) {
            self.counters.pdus_dropped += 1;
            return;
        }
        if pci.dst_addr == Address::NONE {
            self.on_neighbor_pdu(now, port, &pci, payload);
        } else if Some(pci.dst_addr) == self.address {
            self.on_local_pdu(now, &pci, payload);
        } else if self.cfg.leaf {
            // A leaf relays for no one (sending it back up would loop until the TTL).
            self.counters.pdus_dropped += 1;
        } else {
            self.relay(pdu);
        }
    }

    fn on_local_pdu(&mut self, now: Instant, pci: &Pci, payload: &[u8]) {
        match pci.pdu_type {
            PduType::Management => match MgmtMessage::decode(payload) {
                Ok(m) => self.on_routed_mgmt(now, pci.src_addr, m),
                Err(_) => self.counters.pdus_malformed += 1,
            },
            PduType::Data | PduType::Control => self.on_flow_pdu(now, pci, payload),
        }
    }

    /// Forwards a PDU for another member (TTL decremented).
    /// The next PDU to send: clears `buf`, writes the PDU into it and returns the N-1
    /// port to send it on; `None` when nothing is ready.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<N1Port> {
        self.clock = now;
        loop {
            // PDUs this member sent to itself are handled first (no N-1 port involved).
            while let Some(pdu) = self.loopback.pop_front() {
                if let Ok((pci, payload)) = Pci::parse(&pdu) {
                    self.on_local_pdu(now, &pci, payload);
                }
            }
            // Neighbour management first: a new adjacency's advertisement must reach
            // the neighbour before routed messages that need it for the way back.
            if let Some(p) = self.poll_neighbors_transmit(now, buf) {
                self.count_out(p);
                return Some(p);
            }
            if let Some((p, mut pdu)) = self.out.pop_front() {
                // The PDU's buffer becomes the caller's; the caller's is kept for reuse.
                core::mem::swap(buf, &mut pdu);
                if self.spare.len() < SPARE_PDUS {
                    self.spare.push(pdu);
                }
                self.count_out(p);
                return Some(p);
            }
            let Some((_, dst)) = self.poll_flows_transmit(now, buf) else {
                // Handling a PDU sent to this member may have queued more.
                if self.loopback.is_empty() {
                    return None;
                }
                continue;
            };
            if Some(dst) == self.address {
                // A flow between two applications of this member: delivered here.
                if let Ok((pci, payload)) = Pci::parse(buf) {
                    self.on_local_pdu(now, &pci, payload);
                }
                continue;
            }
            if let Some(p) = self.port_toward(dst) {
                self.count_out(p);
                return Some(p);
            }
            // No route right now: EFCP will retransmit once there is one.
            self.counters.pdus_dropped += 1;
        }
    }

    /// True while the driver has more to take from this IPC process before it may
    /// sleep: events to poll, or PDUs to handle or send (what
    /// [`IpcProcess::poll_transmit`] returns until `None`). A driver that sleeps while
    /// this holds misses a wake-up: nothing from outside will come to end the wait.
    pub fn has_pending_output(&self) -> bool {
        !self.events.is_empty() || !self.loopback.is_empty() || !self.out.is_empty()
    }

    fn fresh_cep(&mut self) -> CepId {
        loop {
            let c = CepId(self.rng.next_u32());
            if c.0 != 0 && !self.cep_to_port.contains_key(&c) {
                return c;
            }
        }
    }

    fn fresh_port(&mut self) -> PortId {
        loop {
            let p = PortId(self.next_port);
            self.next_port = self.next_port.wrapping_add(1).max(1);
            if !self.flows.contains_key(&p) {
                return p;
            }
        }
    }
}

//! The IPC process: one member of one normal DIF.
//!
//! [`IpcProcess`] is the facade the driver talks to. It owns the per-neighbour
//! management connections and enrollment (`neighbor`), the replicated directory
//! ([`directory`]), the link-state database and forwarding table ([`routing`]), and the
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

mod allocation;
pub mod directory;
mod flows;
mod neighbor;
mod registration;
pub mod routing;
mod schedule;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::efcp::EfcpConfig;
use crate::rand::Rng;
use crate::time::{earliest, Instant};
use crate::wire::mgmt::MgmtMessage;
use crate::wire::{Pci, PduType};
use crate::{Address, ApplicationName, CepId, N1Port, PortId};

use directory::Directory;
use flows::Flow;
pub use flows::{FlowSummary, ReadResult, WriteError};
use neighbor::Neighbor;
use routing::Lsdb;
use schedule::FlowSchedule;

/// Configuration of one IPC process.
#[derive(Clone, Debug)]
pub struct IpcpConfig {
    /// The DIF's name.
    pub dif: String,
    /// This IPC process's name.
    pub name: ApplicationName,
    /// `Some(address)`: this member bootstraps the DIF with that address.
    pub bootstrap: Option<Address>,
    /// Seed for CEP-ids, addresses and jitter.
    pub seed: u64,
    /// EFCP settings of reliable data flows (`max_pdu_size` is set per path).
    pub data_efcp: EfcpConfig,
    /// EFCP settings of the per-neighbour management connections.
    pub mgmt_efcp: EfcpConfig,
    /// How long an enrollee waits for its enroller.
    pub enrollment_timeout: Duration,
    /// Interval between keepalives on each N-1 port.
    pub keepalive_interval: Duration,
    /// Keepalive intervals without any traffic before a neighbour is declared lost.
    pub keepalive_misses: u32,
    /// Interval between retries of an unanswered flow request.
    pub flow_request_retry: Duration,
    /// How long a gracefully closed connection lingers to answer retransmissions.
    pub close_linger: Duration,
    /// False (the default): a flow request for a registered name is accepted at once.
    /// True: [`Event::IncomingFlow`] asks first, and the requester gets its answer when
    /// the driver calls [`IpcProcess::answer_flow`] (a closed listener then refuses).
    pub ask_before_accepting: bool,
}

impl IpcpConfig {
    /// Defaults for a member of `dif` named `name`.
    pub fn new(dif: impl Into<String>, name: ApplicationName, seed: u64) -> Self {
        Self {
            dif: dif.into(),
            name,
            bootstrap: None,
            seed,
            data_efcp: EfcpConfig::default(),
            mgmt_efcp: EfcpConfig {
                initial_credit: 64,
                ..EfcpConfig::default()
            },
            enrollment_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
            keepalive_misses: 3,
            flow_request_retry: Duration::from_millis(500),
            close_linger: Duration::from_secs(2),
            ask_before_accepting: false,
        }
    }
}

/// Why a flow could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// No application is registered under the destination name.
    #[error("no application registered under that name")]
    NoSuchApplication,
    /// The destination (or the DIF itself) cannot be reached.
    #[error("destination unreachable")]
    Unreachable,
    /// No answer in time.
    #[error("timed out")]
    TimedOut,
    /// The destination denied access.
    #[error("access denied")]
    Denied,
    /// The destination has no resources for another flow.
    #[error("no resources")]
    NoResources,
}

/// The kinds of flow a registered application accepts: reliable (byte streams) and
/// unreliable (datagrams). A flow request of a kind the destination does not accept
/// is refused as if the name were not registered, the way a TCP port and a UDP port
/// of the same number are separate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKinds {
    /// Reliable flows.
    pub reliable: bool,
    /// Unreliable flows.
    pub unreliable: bool,
}

impl FlowKinds {
    /// Both kinds.
    pub const ALL: Self = Self {
        reliable: true,
        unreliable: true,
    };
    /// Reliable flows only.
    pub const RELIABLE: Self = Self {
        reliable: true,
        unreliable: false,
    };
    /// Unreliable flows only.
    pub const UNRELIABLE: Self = Self {
        reliable: false,
        unreliable: true,
    };

    /// The one kind a flow with this QoS is.
    pub fn of(reliable: bool) -> Self {
        if reliable {
            Self::RELIABLE
        } else {
            Self::UNRELIABLE
        }
    }

    /// True if a flow of this QoS is accepted.
    pub fn accepts(self, reliable: bool) -> bool {
        if reliable {
            self.reliable
        } else {
            self.unreliable
        }
    }

    /// Both sets together.
    pub fn union(self, other: Self) -> Self {
        Self {
            reliable: self.reliable || other.reliable,
            unreliable: self.unreliable || other.unreliable,
        }
    }

    /// What is in `self` and not in `other`.
    pub fn minus(self, other: Self) -> Self {
        Self {
            reliable: self.reliable && !other.reliable,
            unreliable: self.unreliable && !other.unreliable,
        }
    }

    /// True if no kind is in the set.
    pub fn is_empty(self) -> bool {
        !self.reliable && !self.unreliable
    }
}

/// Why a registration failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// This IPC process already registered the name for every kind asked for.
    #[error("already registered")]
    AlreadyRegistered,
}

/// Something the driver must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This member has joined the DIF.
    Enrolled {
        /// The address it was given.
        address: Address,
    },
    /// Joining through a neighbour failed.
    EnrollmentFailed {
        /// The N-1 port of the enroller.
        port: N1Port,
        /// What went wrong.
        reason: String,
    },
    /// An adjacency is up.
    NeighborUp {
        /// Its N-1 port.
        port: N1Port,
        /// The neighbour's name.
        name: ApplicationName,
    },
    /// A neighbour was lost (keepalives missed, or it said goodbye).
    NeighborLost {
        /// Its N-1 port (the driver should release it).
        port: N1Port,
    },
    /// A flow this member asked for is up.
    FlowAllocated {
        /// The flow.
        port: PortId,
    },
    /// A flow this member asked for could not be made.
    FlowAllocationFailed {
        /// The flow (now gone).
        port: PortId,
        /// Why.
        error: AllocError,
    },
    /// A flow to a registered application arrived.
    IncomingFlow {
        /// The new flow.
        port: PortId,
        /// The registered application it is for.
        local_app: ApplicationName,
        /// The application at the other end.
        remote_app: ApplicationName,
        /// True for a reliable flow (a byte stream), false for datagrams.
        reliable: bool,
        /// What the requester says about the flow (opaque to the DIF; may be empty).
        info: Vec<u8>,
    },
    /// The flow has data (or end of stream) to read.
    Readable {
        /// The flow.
        port: PortId,
    },
    /// The flow can take more data after a write was refused.
    Writable {
        /// The flow.
        port: PortId,
    },
    /// The flow is gone.
    FlowClosed {
        /// The flow.
        port: PortId,
        /// True if it broke (peer vanished or deallocated before finishing).
        reset: bool,
    },
}

/// Counters for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// PDUs received on N-1 ports.
    pub pdus_in: u64,
    /// PDUs handed to N-1 ports.
    pub pdus_out: u64,
    /// PDUs relayed to another member.
    pub pdus_relayed: u64,
    /// PDUs that could not be parsed.
    pub pdus_malformed: u64,
    /// PDUs dropped: no route, TTL exhausted, or no such connection.
    pub pdus_dropped: u64,
}

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
}

/// Buffers kept for relayed PDUs (see `IpcProcess::spare`).
const SPARE_PDUS: usize = 16;

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
            registered: BTreeMap::new(),
            pooled: std::collections::BTreeSet::new(),
            flows: BTreeMap::new(),
            cep_to_port: BTreeMap::new(),
            schedule: FlowSchedule::default(),
            incoming: BTreeMap::new(),
            next_port: 1,
            tx_cursor: 0,
            out: VecDeque::new(),
            spare: Vec::new(),
            loopback: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
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

    /// The members this member can reach, itself included (the link-state database
    /// may still hold advertisements of members that left without a goodbye to it).
    pub fn members(&self) -> Vec<Address> {
        self.address
            .into_iter()
            .chain(self.pft.keys().copied())
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
        earliest(t, self.schedule.next())
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.neighbors_timeout(now);
        self.flows_timeout(now);
    }

    /// Handles a PDU that arrived on N-1 port `port`.
    pub fn handle_pdu(&mut self, now: Instant, port: N1Port, pdu: &[u8]) {
        self.counters.pdus_in += 1;
        let Ok((pci, payload)) = Pci::parse(pdu) else {
            self.counters.pdus_malformed += 1;
            return;
        };
        if let Some(n) = self.neighbors.get_mut(&port) {
            n.last_heard = now;
        }
        if pci.dst_addr == Address::NONE {
            self.on_neighbor_pdu(now, port, &pci, payload);
        } else if Some(pci.dst_addr) == self.address {
            self.on_local_pdu(now, &pci, payload);
        } else {
            self.relay(pdu);
        }
    }

    /// Handles a PDU that arrived on N-1 port `port`, in a buffer the caller owns. A
    /// flow's PDU for another member is relayed without a copy: its TTL is decremented
    /// in place and the N-1 port to send it on is returned, for the caller to send
    /// `pdu` as it is now, before anything else. Anything else is handled as by
    /// [`IpcProcess::handle_pdu`] (`None`).
    pub fn handle_pdu_in_place(
        &mut self,
        now: Instant,
        port: N1Port,
        pdu: &mut [u8],
    ) -> Option<N1Port> {
        // Only flows' PDUs, and only when nothing waits in the queue: a relayed
        // management message (a flow request, say) must not overtake this member's own
        // advertisements that give the way back, nor a PDU relayed before it.
        let dst = match Pci::parse(pdu) {
            Ok((pci, _))
                if pci.dst_addr != Address::NONE
                    && Some(pci.dst_addr) != self.address
                    && pci.pdu_type != PduType::Management
                    && self.out.is_empty() =>
            {
                pci.dst_addr
            }
            _ => {
                self.handle_pdu(now, port, pdu);
                return None;
            }
        };
        self.counters.pdus_in += 1;
        if let Some(n) = self.neighbors.get_mut(&port) {
            n.last_heard = now;
        }
        match (self.pft.get(&dst), crate::wire::pci::decrement_ttl(pdu)) {
            (Some(&out), Some(_)) => {
                self.counters.pdus_relayed += 1;
                self.counters.pdus_out += 1;
                Some(out)
            }
            _ => {
                self.counters.pdus_dropped += 1;
                None
            }
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
    fn relay(&mut self, pdu: &[u8]) {
        let Ok((pci, _)) = Pci::parse(pdu) else {
            return;
        };
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(pdu);
        match (
            self.pft.get(&pci.dst_addr),
            crate::wire::pci::decrement_ttl(&mut v),
        ) {
            (Some(&p), Some(_)) => {
                self.counters.pdus_relayed += 1;
                self.out.push_back((p, v));
            }
            _ => {
                self.counters.pdus_dropped += 1;
                if self.spare.len() < SPARE_PDUS {
                    self.spare.push(v);
                }
            }
        }
    }

    /// Sends a whole PDU toward its destination address (or to this member itself).
    fn route(&mut self, pdu: Vec<u8>, dst: Address) -> bool {
        if Some(dst) == self.address {
            self.loopback.push_back(pdu);
            return true;
        }
        match self.pft.get(&dst) {
            Some(&p) => {
                self.out.push_back((p, pdu));
                true
            }
            None => {
                self.counters.pdus_dropped += 1;
                false
            }
        }
    }

    /// Sends a routed management message to `dst`.
    fn send_routed(&mut self, dst: Address, msg: &MgmtMessage) -> bool {
        let Some(src) = self.address else {
            return false;
        };
        let pci = Pci {
            pdu_type: PduType::Management,
            flags: 0,
            ttl: crate::wire::pci::DEFAULT_TTL,
            dst_addr: dst,
            src_addr: src,
            dst_cep: CepId(0),
            src_cep: CepId(0),
            seq: 0,
        };
        let pdu = pci.to_pdu(&msg.encode());
        self.route(pdu, dst)
    }

    /// The next PDU to send: clears `buf`, writes the PDU into it and returns the N-1
    /// port to send it on; `None` when nothing is ready.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<N1Port> {
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
                self.counters.pdus_out += 1;
                return Some(p);
            }
            if let Some((p, mut pdu)) = self.out.pop_front() {
                // The PDU's buffer becomes the caller's; the caller's is kept for reuse.
                core::mem::swap(buf, &mut pdu);
                if self.spare.len() < SPARE_PDUS {
                    self.spare.push(pdu);
                }
                self.counters.pdus_out += 1;
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
            if let Some(&p) = self.pft.get(&dst) {
                self.counters.pdus_out += 1;
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

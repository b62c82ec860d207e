//! Enrollment: joining a DIF through a member (I = enrollee, S = enroller):
//! I -> S `EnrollRequest{name, dif, old address}`; S assigns an address and answers
//! `EnrollResponse`, then sends its link-state database and directory and
//! `EnrollDone`. Both then advertise the new adjacency. A member that enrolled
//! before opens further adjacencies with `Hello`. An `EnrollRequest` or `Hello`
//! from a name that already has an adjacency replaces the stale one (IRATI#462).

use std::time::Duration;

use crate::time::Instant;
use crate::wire::mgmt::{Lsa, MgmtMessage, ResultCode};
use crate::{Address, ApplicationName, N1Port};

use super::neighbor::Stage;
use super::{Event, IpcProcess, IpcpConfig};

/// Pause before asking an enroller that is not yet a member again.
const ENROLL_RETRY: Duration = Duration::from_millis(200);

/// Entries per directory or link-state message in a snapshot.
const SNAPSHOT_CHUNK: usize = 64;

/// The request to join the DIF of `cfg`, asking for `address` (held before, as a
/// leaf that enrolls again keeps its address), as a leaf if `cfg` says so.
pub(super) fn enroll_request(cfg: &IpcpConfig, address: Option<Address>) -> MgmtMessage {
    MgmtMessage::EnrollRequest {
        ipcp: cfg.name.clone(),
        dif: cfg.dif.clone(),
        address: address.map_or(0, |a| a.0),
        leaf: cfg.leaf,
    }
}

impl IpcProcess {
    pub(super) fn hello(&self, a: Address) -> MgmtMessage {
        MgmtMessage::Hello {
            ipcp: self.cfg.name.clone(),
            dif: self.cfg.dif.clone(),
            address: a.0,
        }
    }

    pub(super) fn become_enrolled(&mut self, now: Instant, a: Address) {
        self.address = Some(a);
        self.events.push_back(Event::Enrolled { address: a });
        self.claim_block();
        self.sweep_at.get_or_insert(now + self.sweep_interval());
        let apps: Vec<_> = self.registered.keys().cloned().collect();
        for app in apps {
            self.publish_registration(now, &app, a, true);
        }
        self.advertise(now);
        // Routes exist now: send the flow requests that waited for enrollment.
        self.kick_flow_requests(now);
    }

    /// The enroller answered: the address it gives, held until its state arrived.
    pub(super) fn on_enroll_response(
        &mut self,
        now: Instant,
        port: N1Port,
        result: ResultCode,
        address: u32,
        enroller: ApplicationName,
        enroller_address: u32,
    ) {
        let Some(n) = self.neighbors.get_mut(&port) else {
            return;
        };
        if !matches!(n.stage, Stage::Enrolling(_)) {
            return;
        }
        if result == ResultCode::NoResources {
            // The enroller is not a member yet (it is enrolling itself): ask
            // again shortly, until the enrollment deadline.
            n.enroll_retry = Some(now + ENROLL_RETRY);
            return;
        }
        if result != ResultCode::Ok || address == 0 {
            n.stage = Stage::Awaiting;
            self.events.push_back(Event::EnrollmentFailed {
                port,
                reason: format!("the enroller refused: {result:?}"),
            });
            return;
        }
        n.name = Some(enroller);
        n.address = Some(Address(enroller_address));
        // Not a member until the enroller's state has arrived (EnrollDone): a
        // flow asked for in between would see a partial directory.
        n.assigned = Some(Address(address));
    }

    /// The enroller's state has arrived: this member is one.
    pub(super) fn on_enroll_done(&mut self, now: Instant, port: N1Port) {
        let Some(n) = self.neighbors.get_mut(&port) else {
            return;
        };
        if !matches!(n.stage, Stage::Enrolling(_)) {
            return;
        }
        let Some(a) = n.assigned.take() else { return };
        if self.cfg.leaf && self.uplink.is_some_and(|u| u != port) {
            // Enrolled elsewhere meanwhile: a leaf has one enroller.
            self.neighbors.remove(&port);
            self.events.push_back(Event::NeighborRefused { port });
            return;
        }
        n.stage = Stage::Up;
        let name = n.name.clone().unwrap_or_default();
        self.events.push_back(Event::NeighborUp { port, name });
        if self.cfg.leaf {
            self.uplink = Some(port);
        }
        self.become_enrolled(now, a);
    }

    pub(super) fn on_enroll_request(
        &mut self,
        now: Instant,
        port: N1Port,
        ipcp: ApplicationName,
        dif: &str,
        old: u32,
        leaf: bool,
    ) {
        if self.cfg.leaf {
            // A leaf takes no one.
            return self.send_to(now, port, &self.enroll_refusal(ResultCode::Denied));
        }
        if self.neighbors.get(&port).is_some_and(|n| n.leaf) {
            // A leaf enrolled here already: it does not change its address or kind.
            return;
        }
        let Some(me) = self.address else {
            // Not a member ourselves: cannot enroll anyone.
            self.send_to(now, port, &self.enroll_refusal(ResultCode::NoResources));
            return;
        };
        if dif != self.cfg.dif {
            self.send_to(now, port, &self.enroll_refusal(ResultCode::WrongDif));
            return;
        }
        if let Some(why) = self.claim_refused(port, &ipcp, None) {
            // No adjacency: the neighbour is dropped without a word (an answer would
            // leave it a way in until it went).
            self.neighbors.remove(&port);
            self.events.push_back(Event::NeighborRefused { port });
            return self.refuse_claim(why);
        }
        self.replace_stale(now, port, &ipcp);
        let address = if leaf {
            match self.assign_leaf_address(old) {
                Some(a) => a,
                None => {
                    let no = self.enroll_refusal(ResultCode::NoResources);
                    return self.send_to(now, port, &no);
                }
            }
        } else {
            self.assign_address(port, old)
        };
        let Some(n) = self.neighbors.get_mut(&port) else {
            return;
        };
        n.name = Some(ipcp.clone());
        n.address = Some(address);
        n.stage = Stage::Up;
        n.leaf = leaf;
        if leaf {
            self.leaves.insert(address, port);
        }
        let resp = MgmtMessage::EnrollResponse {
            result: ResultCode::Ok,
            address: address.0,
            enroller: self.cfg.name.clone(),
            enroller_address: me.0,
        };
        self.send_to(now, port, &resp);
        // Advertise the new adjacency first, so the snapshot already holds it and the
        // new member has a two-way route to us the moment it is enrolled (a leaf's
        // changes nothing: it is reached through this member's block).
        if leaf && super::leaves::block_of(address) == Some(self.block) {
            self.tell_leaves_mtu(now);
        } else {
            // A member, or a leaf that kept its address from a block whose owner
            // went: its host route is advertised.
            self.advertise(now);
            self.tell_leaves_mtu(now);
        }
        self.send_snapshot(now, port);
        self.send_to(now, port, &MgmtMessage::EnrollDone);
        self.events
            .push_back(Event::NeighborUp { port, name: ipcp });
    }

    pub(super) fn on_hello(
        &mut self,
        now: Instant,
        port: N1Port,
        ipcp: ApplicationName,
        dif: &str,
        address: u32,
    ) {
        let Some(me) = self.address.filter(|_| !self.cfg.leaf) else {
            return;
        };
        if self.neighbors.get(&port).is_some_and(|n| n.leaf) {
            // A leaf does not become a full neighbour by saying hello.
            return;
        }
        if dif != self.cfg.dif || address == 0 {
            return;
        }
        if let Some(why) = self.claim_refused(port, &ipcp, Some(Address(address))) {
            // No adjacency: the neighbour is dropped without a word.
            self.neighbors.remove(&port);
            self.events.push_back(Event::NeighborRefused { port });
            return self.refuse_claim(why);
        }
        self.replace_stale(now, port, &ipcp);
        let Some(n) = self.neighbors.get_mut(&port) else {
            return;
        };
        let answer = n.stage == Stage::Awaiting;
        n.name = Some(ipcp.clone());
        n.address = Some(Address(address));
        n.stage = Stage::Up;
        if answer {
            let h = self.hello(me);
            self.send_to(now, port, &h);
        }
        self.advertise(now);
        self.send_snapshot(now, port);
        self.events
            .push_back(Event::NeighborUp { port, name: ipcp });
    }

    fn enroll_refusal(&self, result: ResultCode) -> MgmtMessage {
        MgmtMessage::EnrollResponse {
            result,
            address: 0,
            enroller: self.cfg.name.clone(),
            enroller_address: self.address.map_or(0, |a| a.0),
        }
    }

    /// A new enrollment or hello from `name` replaces any adjacency it had elsewhere.
    pub(super) fn replace_stale(&mut self, now: Instant, port: N1Port, name: &ApplicationName) {
        let stale: Vec<N1Port> = self
            .neighbors
            .values()
            .filter(|n| n.port != port && n.name.as_ref() == Some(name))
            .map(|n| n.port)
            .collect();
        for p in stale {
            if let Some(n) = self.neighbors.remove(&p) {
                self.neighbor_gone(now, n);
            }
        }
    }

    /// An address for the enrollee on `port`: the one it asks for if free, else a new
    /// one; never one pinned to another key.
    fn assign_address(&mut self, port: N1Port, wanted: u32) -> Address {
        let key = self.neighbors.get(&port).and_then(|n| n.key);
        let taken = |s: &Self, a: u32| {
            a >= super::leaves::LEAF_BIT
                || Some(Address(a)) == s.address
                || s.lsdb.get(Address(a)).is_some()
                || s.neighbors.values().any(|n| n.address == Some(Address(a)))
                || s.pinned_to_other(Address(a), key)
        };
        if wanted != 0 && !taken(self, wanted) {
            return Address(wanted);
        }
        loop {
            let a = 2 + self.rng.below(0x7fff_fff0) as u32;
            if !taken(self, a) {
                return Address(a);
            }
        }
    }

    /// Sends the link-state database (not to a leaf) and the directory to a new
    /// neighbour.
    pub(super) fn send_snapshot(&mut self, now: Instant, port: N1Port) {
        let leaf = self.neighbors.get(&port).is_some_and(|n| n.leaf);
        // A leaf gets a summary: this member's advertisement, carrying the DIF's
        // largest PDU (what its PDUs must fit in, whatever path they take).
        let lsas: Vec<Lsa> = match leaf {
            true => self.leaf_summary().into_iter().collect(),
            false => self.lsdb.all().cloned().collect(),
        };
        for chunk in lsas.chunks(SNAPSHOT_CHUNK) {
            self.send_to(now, port, &MgmtMessage::LinkState(chunk.to_vec()));
        }
        let dir = self.directory.snapshot();
        for chunk in dir.chunks(SNAPSHOT_CHUNK) {
            self.send_to(now, port, &MgmtMessage::Directory(chunk.to_vec()));
        }
    }
}

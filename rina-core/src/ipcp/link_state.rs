//! This member's part in link-state routing: its own advertisement (sent on every
//! change of its adjacencies and refreshed before it ages out), advertisements from
//! neighbours (flooded on before routes are recomputed), withdrawals of members that
//! said goodbye, the sweep that forgets members no longer live, and route computation
//! held down so that a burst of advertisements costs one computation.
//!
//! Leaves take no part: they advertise nothing and receive no advertisement (their
//! enroller is their default route, `leaves.rs`).

use std::collections::BTreeMap;

use crate::time::Instant;
use crate::wire::mgmt::{Lsa, MgmtMessage};
use crate::{Address, N1Port};

use super::leaves::block_of;
use super::neighbor::Stage;
use super::routing::Ageing;
use super::IpcProcess;

impl IpcProcess {
    /// Re-advertises this member's adjacencies and its leaf block, and recomputes
    /// routes.
    pub(super) fn advertise(&mut self, now: Instant) {
        let Some(me) = self.address else { return };
        if self.cfg.leaf {
            return;
        }
        self.lsa_seq = self.lsa_seq.max(self.lsdb.get(me).map_or(0, |l| l.seq)) + 1;
        let lsa = Lsa {
            origin: me.0,
            seq: self.lsa_seq,
            max_pdu: self
                .local_max_pdu()
                .map_or(0, |m| u32::try_from(m).unwrap_or(u32::MAX)),
            block: self.block,
            withdrawn: false,
            neighbors: self
                .neighbors
                .values()
                .filter(|n| n.stage == Stage::Up && !n.leaf)
                .filter_map(|n| n.address.map(|a| a.0))
                .collect(),
            hosts: self.foreign_leaves().map(|a| a.0).collect(),
        };
        self.lsdb.apply(&lsa, now);
        self.refresh_at = Some(now + self.cfg.lsa_refresh);
        self.send_to_neighbors(now, &MgmtMessage::LinkState(vec![lsa]), None);
        // This member's own adjacencies changed: routes at once (a new neighbour's
        // traffic must not wait for a hold-down).
        self.recompute_routes(now);
    }

    /// Advertisements from the neighbour on `port`: the new ones are flooded on
    /// first, then routes are recomputed (held down in a burst).
    pub(super) fn on_link_state(&mut self, now: Instant, port: N1Port, lsas: Vec<Lsa>) {
        if self.cfg.leaf {
            // A leaf keeps its enroller's latest summary only (the DIF's largest
            // PDU), and floods nothing.
            self.lsdb = super::routing::Lsdb::default();
            for l in &lsas {
                self.lsdb.apply(l, now);
            }
            if let Some(m) = self.path_mtu() {
                self.limit_pdu_size(m);
            }
            return;
        }
        if self.neighbors.get(&port).is_some_and(|n| n.leaf) {
            // A leaf's advertisement is not taken.
            self.counters.pdus_dropped += 1;
            return;
        }
        let me = self.address;
        let mut mine = false;
        let mut changed = false;
        let mut fresh = Vec::new();
        for l in lsas {
            if Some(Address(l.origin)) == me {
                // Our own from before a restart: outbid it with a newer one.
                if l.seq > self.lsa_seq {
                    self.lsa_seq = l.seq;
                    mine = true;
                }
            } else if let Some(change) = self.lsdb.update(&l, now) {
                changed |= change;
                fresh.push(l);
            }
        }
        if !fresh.is_empty() {
            self.send_to_neighbors(now, &MgmtMessage::LinkState(fresh), Some(port));
        }
        if changed {
            self.routes_changed(now);
        }
        if mine {
            self.advertise(now);
        }
    }

    /// The neighbour `a` said goodbye: its withdrawal goes to every member, so that no
    /// older advertisement of it can bring it back.
    pub(super) fn withdraw_member(&mut self, now: Instant, a: Address) {
        if let Some(w) = self.lsdb.withdraw(a, now) {
            self.send_to_neighbors(now, &MgmtMessage::LinkState(vec![w]), None);
        }
        self.routes_changed(now);
        self.purge_directory(now, |x| x == a);
        self.reset_flows_to(a);
    }

    /// The directory entries of the members for which `gone` holds become tombstones
    /// here; the leaves of this member, which hear of no routing change, get them too.
    pub(super) fn purge_directory(&mut self, now: Instant, gone: impl FnMut(Address) -> bool) {
        let removed = self.directory.purge(now, gone);
        if removed.is_empty() || self.leaves.is_empty() {
            return;
        }
        let ports: Vec<N1Port> = self.leaves.values().copied().collect();
        let msg = MgmtMessage::Directory(removed);
        for p in ports {
            self.send_to(now, p, &msg);
        }
    }

    /// The link-state database changed: routes are recomputed now, unless one was
    /// computed less than a hold-down ago; then when the hold-down ends, once for the
    /// whole burst.
    pub(super) fn routes_changed(&mut self, now: Instant) {
        if self.routes_due.is_some() {
            return;
        }
        let at = self
            .routes_at
            .map_or(now, |t| now.max(t + self.cfg.route_hold));
        if at <= now {
            self.recompute_routes(now);
        } else {
            self.routes_due = Some(at);
        }
    }

    pub(super) fn recompute_routes(&mut self, now: Instant) {
        self.routes_due = None;
        let Some(me) = self.address else { return };
        if self.cfg.leaf {
            return;
        }
        self.routes_at = Some(now);
        self.counters.route_computations += 1;
        let routes = self.lsdb.routes(me, now);
        let by_addr: BTreeMap<Address, N1Port> = self
            .neighbors
            .values()
            .filter(|n| n.stage == Stage::Up && !n.leaf)
            .filter_map(|n| Some((n.address?, n.port)))
            .collect();
        let pft = via_ports(routes.hops, &by_addr);
        let blocks = via_ports(routes.blocks, &by_addr);
        // A member that was reachable and is no more (it vanished, or the last link to
        // it failed): its registrations go, and its leaves', so new flows go to the
        // other registrants of a name. Existing flows are left to EFCP, as a route may
        // come back.
        let (lost, lost_blocks) = (gone(&self.pft, &pft), gone(&self.blocks, &blocks));
        // (A leaf of a lost block that enrolled elsewhere, a host route, stays.)
        self.purge_directory(now, |a| {
            lost.contains(&a)
                || block_of(a).is_some_and(|b| lost_blocks.contains(&b)) && !pft.contains_key(&a)
        });
        self.pft = pft;
        self.blocks = blocks;
        self.check_own_block(now);
        // A member with a smaller PDU limit may have joined: SDUs queued from now on
        // are cut to fit the DIF's (PDUs already queued keep their size).
        if let Some(m) = self.path_mtu() {
            self.limit_pdu_size(m);
        }
        self.tell_leaves_mtu(now);
    }

    /// Held-down route computation, refresh of this member's advertisement, and the
    /// sweep of what is no longer live, when due.
    pub(super) fn link_state_timeout(&mut self, now: Instant) {
        if self.routes_due.is_some_and(|t| t <= now) {
            self.recompute_routes(now);
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.advertise(now);
        }
        if self.sweep_at.is_some_and(|t| t <= now) {
            self.sweep_at = Some(now + self.sweep_interval());
            let Some(me) = self.address else { return };
            let ageing = Ageing {
                max_age: self.cfg.lsa_max_age,
                hold: self.liveness_bound(),
            };
            // A leaf's database is its enroller's summary, kept until the next one.
            let gone = match self.cfg.leaf {
                true => Vec::new(),
                false => self.lsdb.expire(me, now, ageing),
            };
            if !gone.is_empty() {
                self.routes_changed(now);
            }
            for a in gone {
                self.purge_directory(now, |x| x == a);
            }
            // Entries of members no route leads to (copies that arrived after their
            // member was lost) go too; a leaf cannot tell, and keeps them.
            if !self.cfg.leaf {
                let stale: Vec<Address> = self
                    .directory
                    .live()
                    .map(|(_, a)| a)
                    .filter(|&a| !self.reaches(a))
                    .collect();
                self.purge_directory(now, |x| stale.contains(&x));
            }
            self.directory.sweep(now, ageing.hold);
        }
    }

    /// How often the database is swept: a quarter of the hold time, so a member
    /// unreachable for the hold time is forgotten within 1.25 of it.
    pub(super) fn sweep_interval(&self) -> std::time::Duration {
        (self.liveness_bound() / 4).max(std::time::Duration::from_millis(1))
    }

    /// The link-state timers' next deadline.
    pub(super) fn link_state_deadline(&self) -> Option<Instant> {
        let t = crate::time::earliest(self.routes_due, self.refresh_at);
        crate::time::earliest(t, self.sweep_at)
    }

    /// How many entries the link-state database holds (withdrawals included).
    pub fn lsdb_len(&self) -> usize {
        self.lsdb.len()
    }

    /// The live members in the link-state database, this one included.
    pub fn lsdb_members(&self) -> Vec<Address> {
        self.lsdb.members().into_iter().map(Address).collect()
    }
}

/// Each destination's next hop (a neighbour's address) as the N-1 port to it; those
/// whose neighbour is not up are left out.
fn via_ports<K: Ord>(
    hops: BTreeMap<K, Address>,
    by_addr: &BTreeMap<Address, N1Port>,
) -> BTreeMap<K, N1Port> {
    hops.into_iter()
        .filter_map(|(k, hop)| Some((k, *by_addr.get(&hop)?)))
        .collect()
}

/// The keys of `old` that `new` no longer has.
fn gone<K: Ord + Copy, V, W>(old: &BTreeMap<K, V>, new: &BTreeMap<K, W>) -> Vec<K> {
    old.keys()
        .filter(|k| !new.contains_key(k))
        .copied()
        .collect()
}

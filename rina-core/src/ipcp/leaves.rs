//! Leaf members: members that relay for no one (a program's own stack, say) and cost
//! the DIF nothing when they come and go.
//!
//! A full member owns a block of leaf addresses, advertised once in its own
//! advertisement: `LEAF_BIT | block << 16 | index`, with a block in `1..=0x7fff` and an
//! index in `1..=0xffff` (full members' addresses are below `LEAF_BIT`). A leaf enrolls
//! through a full member with `leaf = true` and gets an address of its enroller's
//! block; nothing is flooded for it, since every member reaches the block through its
//! owner. The leaf gets the directory but no link-state database: its enroller is its
//! default route. When it leaves, only its enroller notices (and withdraws the names
//! it had registered).
//!
//! Two members that pick the same block at once: the lower address keeps it, the
//! other picks another and lets its leaves enroll again.

use crate::time::Instant;
use crate::wire::mgmt::{DirEntry, Lsa, MgmtMessage};
use crate::{Address, N1Port};

use super::neighbor::{Neighbor, Stage};
use super::IpcProcess;

/// Leaf addresses have this bit set; full members' never do.
pub const LEAF_BIT: u32 = 0x8000_0000;

/// The block of a leaf address, if it is one.
pub fn block_of(a: Address) -> Option<u16> {
    (a.0 & LEAF_BIT != 0).then_some(((a.0 >> 16) & 0x7fff) as u16)
}

/// The leaf address `index` of `block`.
fn leaf_address(block: u16, index: u16) -> Address {
    Address(LEAF_BIT | u32::from(block & 0x7fff) << 16 | u32::from(index))
}

impl IpcProcess {
    /// A full member that has just joined (or lost its block) picks a block of leaf
    /// addresses no other member is known to hold.
    pub(super) fn claim_block(&mut self) {
        if self.cfg.leaf || self.block != 0 {
            return;
        }
        loop {
            let b = 1 + self.rng.below(0x7fff) as u16;
            if self.lsdb.block_holder(b).is_none() {
                self.block = b;
                return;
            }
        }
    }

    /// If a lower address holds this member's block too, it picks another one and
    /// its leaves enroll again (their addresses are the other member's now).
    pub(super) fn check_own_block(&mut self, now: Instant) {
        let (Some(me), b) = (self.address, self.block) else {
            return;
        };
        if b == 0 || self.lsdb.block_holder(b).is_none_or(|h| h == me) {
            return;
        }
        // The leaves of the block go first (their names withdrawn), then the block.
        let ports: Vec<N1Port> = self
            .leaves
            .iter()
            .filter(|(&a, _)| block_of(a) == Some(b))
            .map(|(_, &p)| p)
            .collect();
        for p in ports {
            if let Some(n) = self.neighbors.remove(&p) {
                self.neighbor_gone(now, n);
            }
        }
        self.block = 0;
        self.claim_block();
        self.advertise(now);
    }

    /// A leaf lost its enroller: it enrolls again through an N-1 port it opened and
    /// kept idle (a kept adjacency), asking for its address.
    pub(super) fn enroll_elsewhere(&mut self, now: Instant) {
        let Some(a) = self.address else { return };
        let Some(n) = self
            .neighbors
            .values_mut()
            .find(|n| !n.opened_by_peer && n.stage == Stage::Awaiting)
        else {
            return;
        };
        n.stage = Stage::Enrolling(now + self.cfg.enrollment_timeout);
        let msg = super::enrollment::enroll_request(&self.cfg, Some(a));
        let _ = n.mgmt.send(now, &msg.encode());
    }

    /// An address for a leaf enrolling here: the one it asks for if it is of this
    /// member's block and free, or of a block whose owner this member cannot reach
    /// any more (the leaf's enroller died: it keeps its address, and its flows, by a
    /// host route this member advertises); else the next free one of this member's
    /// block; `None` when the block is full.
    pub(super) fn assign_leaf_address(&mut self, wanted: u32) -> Option<Address> {
        if self.block == 0 {
            return None;
        }
        // Not a leaf here, nor one another member carries a host route to.
        let free = |s: &Self, a: Address| {
            !s.leaves.contains_key(&a) && s.lsdb.host_holder(a).is_none_or(|h| Some(h) == s.address)
        };
        let w = Address(wanted);
        if block_of(w) == Some(self.block) && w.0 & 0xffff != 0 && free(self, w) {
            return Some(w);
        }
        if self.may_adopt(w) && free(self, w) {
            return Some(w);
        }
        for _ in 0..=u16::MAX {
            self.next_leaf = self.next_leaf.wrapping_add(1).max(1);
            let a = leaf_address(self.block, self.next_leaf);
            if free(self, a) {
                return Some(a);
            }
        }
        None
    }

    /// What a leaf gets instead of the database: this member's advertisement,
    /// carrying the DIF's largest PDU.
    pub(super) fn leaf_summary(&self) -> Option<Lsa> {
        let l = self.lsdb.get(self.address?)?;
        Some(Lsa {
            max_pdu: self
                .path_mtu()
                .map_or(l.max_pdu, |m| u32::try_from(m).unwrap_or(u32::MAX)),
            ..l.clone()
        })
    }

    /// The DIF's largest PDU changed (a member or a leaf with a smaller N-1 MTU came):
    /// the leaves learn it from a new summary, as their PDUs must fit too.
    pub(super) fn tell_leaves_mtu(&mut self, now: Instant) {
        let Some(m) = self.path_mtu() else { return };
        if m == self.leaves_mtu || self.cfg.leaf {
            return;
        }
        self.leaves_mtu = m;
        let ports: Vec<N1Port> = self.leaves.values().copied().collect();
        if let Some(summary) = self.leaf_summary() {
            for p in ports {
                self.send_to(now, p, &MgmtMessage::LinkState(vec![summary.clone()]));
            }
        }
    }

    /// True if leaf address `a` of another member's block may be given to a leaf
    /// enrolling here: the block's owner is known and this member reaches it no more
    /// (the leaf's enroller is gone), and no member it reaches carries a host route to
    /// `a`. A peer cannot take an address of a live block, nor of a block nobody held.
    fn may_adopt(&self, a: Address) -> bool {
        let Some(b) = block_of(a).filter(|&b| b != 0 && b != self.block && a.0 & 0xffff != 0)
        else {
            return false;
        };
        let unreachable = |h: Address| !self.pft.contains_key(&h);
        self.lsdb.block_holder(b).is_some_and(unreachable)
            && self.lsdb.host_holder(a).is_none_or(unreachable)
    }

    /// Leaves of other members' blocks enrolled here (advertised as host routes).
    pub(super) fn foreign_leaves(&self) -> impl Iterator<Item = Address> + '_ {
        let mine = self.block;
        self.leaves
            .keys()
            .copied()
            .filter(move |&a| block_of(a) != Some(mine))
    }

    /// A leaf of this member is gone: the names it had registered are withdrawn
    /// everywhere (nothing else about it was ever flooded, but the host route to a
    /// leaf of another's block).
    pub(super) fn leaf_gone(&mut self, now: Instant, n: &Neighbor) {
        let Some(a) = n.address else { return };
        if self.leaves.get(&a) != Some(&n.port) {
            return;
        }
        self.leaves.remove(&a);
        if block_of(a) != Some(self.block) {
            self.advertise(now);
        }
        let removals: Vec<DirEntry> = self
            .directory
            .live()
            .filter(|&(_, at)| at == a)
            .map(|(app, _)| DirEntry {
                app: app.clone(),
                address: a.0,
                seq: self.directory.seq(app, a) + 1,
                present: false,
                pool: false,
            })
            .collect();
        for e in &removals {
            self.directory.apply(e, now);
        }
        if !removals.is_empty() {
            self.send_to_neighbors(now, &MgmtMessage::Directory(removals), None);
        }
        self.reset_flows_to(a);
    }

    /// The N-1 port toward `dst`: a leaf of this member, a member by the forwarding
    /// table, a leaf by its block's owner; for a leaf, its enroller for everything.
    pub(super) fn next_port(&self, dst: Address) -> Option<N1Port> {
        if self.cfg.leaf {
            return self.uplink;
        }
        if let Some(&p) = self.leaves.get(&dst) {
            return Some(p);
        }
        if let Some(&p) = self.pft.get(&dst) {
            return Some(p);
        }
        block_of(dst).and_then(|b| self.blocks.get(&b).copied())
    }

    /// The N-1 port toward `dst`, as [`IpcProcess::next_port`]; when there is none
    /// and routes wait for their hold-down to end, they are computed now (a PDU is
    /// not dropped for want of a computation).
    pub(super) fn port_toward(&mut self, dst: Address) -> Option<N1Port> {
        match self.next_port(dst) {
            None if self.routes_due.is_some() => {
                self.recompute_routes(self.clock);
                self.next_port(dst)
            }
            p => p,
        }
    }

    /// True if PDUs for `a` have somewhere to go (or `a` is this member; a leaf sends
    /// everything to its enroller).
    pub fn reaches(&self, a: Address) -> bool {
        Some(a) == self.address || self.next_port(a).is_some()
    }

    /// Leaves enrolled through this member, with their N-1 ports.
    pub fn leaves(&self) -> Vec<(Address, N1Port)> {
        self.leaves.iter().map(|(&a, &p)| (a, p)).collect()
    }

    /// True for a leaf with its enroller up.
    pub fn has_uplink(&self) -> bool {
        self.uplink.is_some()
    }

    /// True for a leaf member.
    pub fn is_leaf(&self) -> bool {
        self.cfg.leaf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_addresses_carry_their_block() {
        let a = leaf_address(0x1234, 7);
        assert_eq!(a, Address(0x9234_0007));
        assert_eq!(block_of(a), Some(0x1234));
        assert_eq!(block_of(Address(0x7fff_fff1)), None);
        assert_eq!(block_of(leaf_address(0x7fff, 0xffff)), Some(0x7fff));
    }
}

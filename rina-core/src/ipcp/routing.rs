//! Link-state routing: the link-state database and shortest paths.
//!
//! Each full member advertises its enrolled neighbours (and the block of leaf
//! addresses it owns) in an [`Lsa`]; advertisements are flooded to every full member
//! and the higher `seq` wins. A link is used only if both ends advertise it (two-way
//! check), so a member that vanished stops attracting traffic as soon as one neighbour
//! withdraws it. [`Lsdb::routes`] runs a breadth-first search (unit link costs) and
//! gives, for each reachable destination and leaf block, the neighbour to forward to;
//! ties go to the lowest neighbour address, so the result is deterministic.
//!
//! The database holds live members only: a withdrawal (a member said goodbye) beats
//! every older advertisement of its origin and is itself forgotten after a while; an
//! advertisement its owner stopped refreshing ages out; and one whose origin nobody
//! can reach any more is forgotten once it has been unreachable for a hold time
//! ([`Lsdb::expire`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::time::Instant;
use crate::wire::mgmt::Lsa;
use crate::Address;

/// One advertisement with what this member knows about it.
#[derive(Clone, Debug)]
struct Entry {
    lsa: Lsa,
    /// When it was last replaced by a newer one.
    updated: Instant,
    /// Since when its origin has been unreachable from this member.
    unreachable_since: Option<Instant>,
}

/// The link-state database of one member.
#[derive(Clone, Debug, Default)]
pub struct Lsdb {
    lsas: BTreeMap<u32, Entry>,
}

/// What a route computation gives: the first hop toward each reachable member, and
/// toward the owner of each leaf block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// Destination member -> neighbour to forward to.
    pub hops: BTreeMap<Address, Address>,
    /// Leaf block -> neighbour to forward to (toward the block's owner).
    pub blocks: BTreeMap<u16, Address>,
}

/// How long entries are kept (see [`Lsdb::expire`]).
#[derive(Clone, Copy, Debug)]
pub struct Ageing {
    /// An advertisement its owner has not refreshed for this long is forgotten.
    pub max_age: Duration,
    /// A member unreachable for this long is forgotten; so is a withdrawal this old.
    pub hold: Duration,
}

impl Lsdb {
    /// Applies an advertisement received at `now`; true if it is new (and must be
    /// flooded on).
    pub fn apply(&mut self, lsa: &Lsa, now: Instant) -> bool {
        self.update(lsa, now).is_some()
    }

    /// Applies an advertisement received at `now`: `None` if it is not new; else
    /// whether routes may change (a refresh that says what the last one said does
    /// not change them).
    pub fn update(&mut self, lsa: &Lsa, now: Instant) -> Option<bool> {
        match self.lsas.get(&lsa.origin) {
            // A withdrawal beats an advertisement of the same version.
            Some(old)
                if old.lsa.seq > lsa.seq
                    || old.lsa.seq == lsa.seq && (old.lsa.withdrawn || !lsa.withdrawn) =>
            {
                None
            }
            old => {
                let mut l = lsa.clone();
                if l.withdrawn {
                    l.neighbors.clear();
                    l.hosts.clear();
                    l.block = 0;
                }
                for v in [&mut l.neighbors, &mut l.hosts] {
                    v.sort_unstable();
                    v.dedup();
                }
                // What routes depend on; a refresh that says the same changes nothing.
                let key = |x: &Lsa| {
                    (
                        x.withdrawn,
                        x.block,
                        x.max_pdu,
                        x.neighbors.clone(),
                        x.hosts.clone(),
                    )
                };
                let same = old.is_some_and(|o| key(&o.lsa) == key(&l));
                let since = self.lsas.get(&lsa.origin).and_then(|e| e.unreachable_since);
                self.lsas.insert(
                    lsa.origin,
                    Entry {
                        lsa: l,
                        updated: now,
                        unreachable_since: since,
                    },
                );
                Some(!same)
            }
        }
    }

    /// Withdraws `origin` (it said goodbye): a withdrawal newer than its newest
    /// advertisement, to flood; `None` if there is nothing live to withdraw.
    pub fn withdraw(&mut self, origin: Address, now: Instant) -> Option<Lsa> {
        let old = self.live(origin)?;
        let w = Lsa {
            origin: origin.0,
            seq: old.seq.saturating_add(1),
            max_pdu: 0,
            block: 0,
            withdrawn: true,
            neighbors: Vec::new(),
            hosts: Vec::new(),
        };
        self.apply(&w, now);
        Some(w)
    }

    /// The entry of `origin`, a withdrawal included.
    pub fn get(&self, origin: Address) -> Option<&Lsa> {
        self.lsas.get(&origin.0).map(|e| &e.lsa)
    }

    /// The advertisement of `origin` unless it was withdrawn.
    pub fn live(&self, origin: Address) -> Option<&Lsa> {
        self.get(origin).filter(|l| !l.withdrawn)
    }

    /// Every entry, withdrawals included (for a snapshot to a new neighbour).
    pub fn all(&self) -> impl Iterator<Item = &Lsa> {
        self.lsas.values().map(|e| &e.lsa)
    }

    /// Addresses of every live member (withdrawals left out).
    pub fn members(&self) -> BTreeSet<u32> {
        self.lsas
            .values()
            .filter(|e| !e.lsa.withdrawn)
            .map(|e| e.lsa.origin)
            .collect()
    }

    /// How many entries it holds, withdrawals included.
    pub fn len(&self) -> usize {
        self.lsas.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.lsas.is_empty()
    }

    /// The live member that holds leaf block `block`: when two claim it, the lower
    /// address does.
    pub fn block_holder(&self, block: u16) -> Option<Address> {
        self.lsas
            .values()
            .find(|e| !e.lsa.withdrawn && e.lsa.block == block)
            .map(|e| Address(e.lsa.origin))
    }

    /// The live member that carries a host route to leaf `a` (the lowest address if
    /// several do).
    pub fn host_holder(&self, a: Address) -> Option<Address> {
        self.lsas
            .values()
            .find(|e| e.lsa.hosts.binary_search(&a.0).is_ok())
            .map(|e| Address(e.lsa.origin))
    }

    fn two_way(&self, a: u32, b: u32) -> bool {
        let has = |x: u32, y: u32| {
            self.lsas
                .get(&x)
                .is_some_and(|e| e.lsa.neighbors.binary_search(&y).is_ok())
        };
        has(a, b) && has(b, a)
    }

    /// For each destination reachable from `me`, the first hop (a direct neighbour of
    /// `me`) on a shortest path; the same for each leaf block of a reachable member
    /// (not `me`'s own) and each leaf it carries a host route to. Notes, for
    /// [`Lsdb::expire`], which members are unreachable since `now`.
    pub fn routes(&mut self, me: Address, now: Instant) -> Routes {
        let mut hops = self.next_hops(me);
        let hosts: Vec<(Address, Address)> = self
            .lsas
            .values()
            .filter_map(|e| Some((e, *hops.get(&Address(e.lsa.origin))?)))
            .flat_map(|(e, hop)| e.lsa.hosts.iter().map(move |&h| (Address(h), hop)))
            .collect();
        for (h, hop) in hosts {
            hops.entry(h).or_insert(hop);
        }
        let mut blocks = BTreeMap::new();
        let mut claimed = BTreeSet::new();
        for (&origin, e) in self.lsas.iter_mut() {
            let reachable = origin == me.0 || hops.contains_key(&Address(origin));
            if reachable || e.lsa.withdrawn {
                e.unreachable_since = None;
            } else {
                e.unreachable_since.get_or_insert(now);
            }
            if e.lsa.withdrawn || e.lsa.block == 0 || !claimed.insert(e.lsa.block) {
                continue;
            }
            // The lowest address claiming a block holds it (`me` included).
            if let Some(&hop) = hops.get(&Address(origin)) {
                blocks.insert(e.lsa.block, hop);
            }
        }
        Routes { hops, blocks }
    }

    /// Forgets what is no longer live: withdrawals, and members unreachable, for
    /// longer than `ageing.hold`; advertisements their owners have not refreshed
    /// within `ageing.max_age`. `me`'s own is kept. Returns the members forgotten
    /// (withdrawn ones left out: they were forgotten when withdrawn).
    pub fn expire(&mut self, me: Address, now: Instant, ageing: Ageing) -> Vec<Address> {
        let mut gone = Vec::new();
        self.lsas.retain(|&origin, e| {
            let old = |t: Instant, d: Duration| now.saturating_duration_since(t) >= d;
            let expired = origin != me.0
                && (e.lsa.withdrawn && old(e.updated, ageing.hold)
                    || e.unreachable_since.is_some_and(|t| old(t, ageing.hold))
                    || old(e.updated, ageing.max_age));
            if expired && !e.lsa.withdrawn {
                gone.push(Address(origin));
            }
            !expired
        });
        gone
    }

    /// For each destination reachable from `me`, the first hop (a direct neighbour of
    /// `me`) on a shortest path.
    pub fn next_hops(&self, me: Address) -> BTreeMap<Address, Address> {
        let mut first: BTreeMap<u32, u32> = BTreeMap::new();
        let mut seen: BTreeSet<u32> = BTreeSet::from([me.0]);
        let mut queue = VecDeque::new();
        if let Some(e) = self.lsas.get(&me.0) {
            for &n in &e.lsa.neighbors {
                if self.two_way(me.0, n) && seen.insert(n) {
                    first.insert(n, n);
                    queue.push_back(n);
                }
            }
        }
        while let Some(u) = queue.pop_front() {
            let hop = first[&u];
            let Some(e) = self.lsas.get(&u) else { continue };
            for &v in &e.lsa.neighbors {
                if self.two_way(u, v) && seen.insert(v) {
                    first.insert(v, hop);
                    queue.push_back(v);
                }
            }
        }
        first
            .into_iter()
            .map(|(d, h)| (Address(d), Address(h)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    fn lsa(origin: u32, seq: u64, n: &[u32]) -> Lsa {
        Lsa {
            origin,
            seq,
            max_pdu: 0,
            block: 0,
            withdrawn: false,
            neighbors: n.to_vec(),
            hosts: Vec::new(),
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn chain_and_two_way_check() {
        let mut db = Lsdb::default();
        db.apply(&lsa(1, 1, &[2]), at(0));
        db.apply(&lsa(2, 1, &[1, 3]), at(0));
        db.apply(&lsa(3, 1, &[2]), at(0));
        let hops = db.next_hops(Address(1));
        assert_eq!(hops[&Address(3)], Address(2));
        assert_eq!(hops[&Address(2)], Address(2));
        // 3 withdraws the link: 1 can no longer reach 3.
        assert!(db.apply(&lsa(3, 2, &[]), at(0)));
        assert!(!db.next_hops(Address(1)).contains_key(&Address(3)));
        assert!(!db.apply(&lsa(3, 1, &[2]), at(0)), "stale LSA ignored");
    }

    const AGEING: Ageing = Ageing {
        max_age: Duration::from_secs(60),
        hold: Duration::from_secs(1),
    };

    /// A withdrawal beats every older advertisement of its origin, and goes after
    /// the hold time; so does a member that nobody reaches any more.
    #[test]
    fn withdrawals_and_unreachable_members_are_forgotten() {
        let mut db = Lsdb::default();
        db.apply(&lsa(1, 1, &[2]), at(0));
        db.apply(&lsa(2, 4, &[1, 3]), at(0));
        db.apply(&lsa(3, 1, &[2]), at(0));
        let w = db.withdraw(Address(2), at(10)).expect("live");
        assert_eq!((w.seq, w.withdrawn), (5, true));
        assert!(
            !db.apply(&lsa(2, 4, &[1, 3]), at(20)),
            "an old one cannot undo it"
        );
        assert_eq!(db.members(), BTreeSet::from([1, 3]));
        let r = db.routes(Address(1), at(20));
        assert!(r.hops.is_empty());
        // 3 is unreachable from 1 since 20 ms; the withdrawal is 10 ms old.
        assert!(db.expire(Address(1), at(900), AGEING).is_empty());
        assert_eq!(db.expire(Address(1), at(1020), AGEING), vec![Address(3)]);
        assert_eq!(db.len(), 1, "only 1's own is left");
        // Ageing: an advertisement nobody refreshed goes after max_age, even if
        // reachable; 1's own never does.
        let mut db = Lsdb::default();
        db.apply(&lsa(1, 1, &[2]), at(0));
        db.apply(&lsa(2, 1, &[1]), at(0));
        assert_eq!(db.routes(Address(1), at(0)).hops.len(), 1);
        assert!(db.expire(Address(1), at(59_999), AGEING).is_empty());
        assert_eq!(db.expire(Address(1), at(60_000), AGEING), vec![Address(2)]);
        assert!(db.live(Address(1)).is_some());
    }

    /// Leaf blocks route toward their owner; two claims of one block: the lower
    /// address holds it.
    #[test]
    fn blocks_route_to_their_lowest_claimant() {
        let mut db = Lsdb::default();
        let with_block = |o: u32, n: &[u32], b: u16| Lsa {
            block: b,
            ..lsa(o, 1, n)
        };
        db.apply(&with_block(1, &[2, 3], 0), at(0));
        db.apply(&with_block(2, &[1, 4], 7), at(0));
        db.apply(&with_block(3, &[1], 9), at(0));
        db.apply(&with_block(4, &[2], 9), at(0));
        let r = db.routes(Address(1), at(0));
        assert_eq!(r.blocks[&7], Address(2));
        assert_eq!(r.blocks[&9], Address(3), "3 < 4: 3 holds block 9");
        assert_eq!(db.block_holder(9), Some(Address(3)));
        // From 4's side, its own claim loses to 3's.
        assert_eq!(db.routes(Address(4), at(0)).blocks[&9], Address(2));
    }

    /// Random graphs: every path the table gives has the brute-force shortest length
    /// and following next hops never loops.
    #[test]
    fn matches_floyd_warshall_on_random_graphs() {
        let mut rng = Rng::new(42);
        for _ in 0..200 {
            let n = 2 + rng.below(30) as u32;
            let mut adj = vec![BTreeSet::new(); n as usize + 1];
            for a in 1..=n {
                for b in (a + 1)..=n {
                    if rng.chance(0.15) {
                        adj[a as usize].insert(b);
                        adj[b as usize].insert(a);
                    }
                }
            }
            let mut db = Lsdb::default();
            for a in 1..=n {
                db.apply(
                    &lsa(a, 1, &adj[a as usize].iter().copied().collect::<Vec<_>>()),
                    at(0),
                );
            }
            let inf = u32::MAX / 4;
            let mut d = vec![vec![inf; n as usize + 1]; n as usize + 1];
            for a in 1..=n as usize {
                d[a][a] = 0;
                for &b in &adj[a] {
                    d[a][b as usize] = 1;
                }
            }
            for k in 1..=n as usize {
                for i in 1..=n as usize {
                    for j in 1..=n as usize {
                        d[i][j] = d[i][j].min(d[i][k] + d[k][j]);
                    }
                }
            }
            let tables: Vec<_> = (0..=n).map(|a| db.next_hops(Address(a))).collect();
            for s in 1..=n {
                for t in 1..=n {
                    if s == t {
                        continue;
                    }
                    let reachable = d[s as usize][t as usize] < inf;
                    assert_eq!(tables[s as usize].contains_key(&Address(t)), reachable);
                    if !reachable {
                        continue;
                    }
                    let (mut at, mut hops) = (s, 0);
                    while at != t {
                        at = tables[at as usize][&Address(t)].0;
                        hops += 1;
                        assert!(hops <= n, "forwarding loop");
                    }
                    assert_eq!(hops, d[s as usize][t as usize]);
                }
            }
        }
    }
}

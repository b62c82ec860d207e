//! Link-state routing: the link-state database and shortest paths.
//!
//! Each member advertises its enrolled neighbours in an [`Lsa`]; advertisements are
//! flooded to every member and the higher `seq` wins. A link is used only if both ends
//! advertise it (two-way check), so a member that vanished stops attracting traffic as
//! soon as one neighbour withdraws it. [`Lsdb::next_hops`] runs a breadth-first search
//! (unit link costs) and gives, for each reachable destination, the neighbour to
//! forward to; ties go to the lowest neighbour address, so the result is deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::wire::mgmt::Lsa;
use crate::Address;

/// The link-state database of one member.
#[derive(Clone, Debug, Default)]
pub struct Lsdb {
    lsas: BTreeMap<u32, Lsa>,
}

impl Lsdb {
    /// Applies an advertisement; true if it is new (and must be flooded on).
    pub fn apply(&mut self, lsa: &Lsa) -> bool {
        match self.lsas.get(&lsa.origin) {
            Some(old) if old.seq >= lsa.seq => false,
            _ => {
                let mut l = lsa.clone();
                l.neighbors.sort_unstable();
                l.neighbors.dedup();
                self.lsas.insert(lsa.origin, l);
                true
            }
        }
    }

    /// The advertisement of `origin`.
    pub fn get(&self, origin: Address) -> Option<&Lsa> {
        self.lsas.get(&origin.0)
    }

    /// Every advertisement.
    pub fn all(&self) -> impl Iterator<Item = &Lsa> {
        self.lsas.values()
    }

    /// Removes the advertisement of a member that left.
    pub fn remove(&mut self, origin: Address) {
        self.lsas.remove(&origin.0);
    }

    /// Addresses of every member that has advertised.
    pub fn members(&self) -> BTreeSet<u32> {
        self.lsas.keys().copied().collect()
    }

    fn two_way(&self, a: u32, b: u32) -> bool {
        let has = |x: u32, y: u32| {
            self.lsas
                .get(&x)
                .is_some_and(|l| l.neighbors.binary_search(&y).is_ok())
        };
        has(a, b) && has(b, a)
    }

    /// For each destination reachable from `me`, the first hop (a direct neighbour of
    /// `me`) on a shortest path.
    pub fn next_hops(&self, me: Address) -> BTreeMap<Address, Address> {
        let mut first: BTreeMap<u32, u32> = BTreeMap::new();
        let mut seen: BTreeSet<u32> = BTreeSet::from([me.0]);
        let mut queue = VecDeque::new();
        if let Some(l) = self.lsas.get(&me.0) {
            for &n in &l.neighbors {
                if self.two_way(me.0, n) && seen.insert(n) {
                    first.insert(n, n);
                    queue.push_back(n);
                }
            }
        }
        while let Some(u) = queue.pop_front() {
            let hop = first[&u];
            let Some(l) = self.lsas.get(&u) else { continue };
            for &v in &l.neighbors {
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
            neighbors: n.to_vec(),
        }
    }

    #[test]
    fn chain_and_two_way_check() {
        let mut db = Lsdb::default();
        db.apply(&lsa(1, 1, &[2]));
        db.apply(&lsa(2, 1, &[1, 3]));
        db.apply(&lsa(3, 1, &[2]));
        let hops = db.next_hops(Address(1));
        assert_eq!(hops[&Address(3)], Address(2));
        assert_eq!(hops[&Address(2)], Address(2));
        // 3 withdraws the link: 1 can no longer reach 3.
        assert!(db.apply(&lsa(3, 2, &[])));
        assert!(!db.next_hops(Address(1)).contains_key(&Address(3)));
        assert!(!db.apply(&lsa(3, 1, &[2])), "stale LSA ignored");
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
                db.apply(&lsa(
                    a,
                    1,
                    &adj[a as usize].iter().copied().collect::<Vec<_>>(),
                ));
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

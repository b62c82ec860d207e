//! The directory: application name -> the members where it is registered.
//!
//! Fully replicated: every member holds every entry. A registration or removal is a
//! versioned [`DirEntry`]; the higher `seq` for an (application, address) pair wins,
//! and removals stay as tombstones so that an old registration arriving late cannot
//! resurrect a name. The entries of a member that left become tombstones too
//! ([`Directory::purge`]), and tombstones are forgotten after a hold time
//! ([`Directory::sweep`]), so that the directory holds live entries and a bounded
//! tail of removals. Each entry also says whether its registrant serves the name as
//! one of a pool (see [`Directory::holders`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::time::Instant;
use crate::wire::mgmt::DirEntry;
use crate::{Address, ApplicationName};

/// The newest version of one (application, address) pair.
#[derive(Clone, Copy, Debug)]
struct Slot {
    seq: u64,
    present: bool,
    pool: bool,
    /// When it last changed (a tombstone is forgotten a hold time after).
    changed: Instant,
}

/// The replicated directory of one member.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    entries: BTreeMap<(ApplicationName, u32), Slot>,
    /// Counts the changes to live entries (see [`Directory::changes`]).
    changes: u64,
}

impl Directory {
    /// Applies an entry received at `now`; true if it changed the directory (and must
    /// be flooded on).
    pub fn apply(&mut self, e: &DirEntry, now: Instant) -> bool {
        let key = (e.app.clone(), e.address);
        match self.entries.get(&key) {
            // A removal beats a registration of the same version (a member's entries
            // purged when it left keep their version).
            Some(s) if s.seq > e.seq || s.seq == e.seq && (!s.present || e.present) => false,
            _ => {
                let slot = Slot {
                    seq: e.seq,
                    present: e.present,
                    pool: e.pool,
                    changed: now,
                };
                self.entries.insert(key, slot);
                self.changes += 1;
                true
            }
        }
    }

    /// The members where `app` is registered, lowest address first.
    pub fn lookup(&self, app: &ApplicationName) -> Vec<Address> {
        self.holders(app).into_iter().map(|(a, _)| a).collect()
    }

    /// The members where `app` is registered, each with whether it serves the name as
    /// one of a pool.
    pub fn holders(&self, app: &ApplicationName) -> Vec<(Address, bool)> {
        self.entries
            .range((app.clone(), 0)..=(app.clone(), u32::MAX))
            .filter(|(_, s)| s.present)
            .map(|((_, a), s)| (Address(*a), s.pool))
            .collect()
    }

    /// A number that grows whenever an entry is added or removed: what a driver
    /// caches about the directory is stale once it moved.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The version of the entry for (app, address), 0 if none.
    pub fn seq(&self, app: &ApplicationName, address: Address) -> u64 {
        self.entries
            .get(&(app.clone(), address.0))
            .map_or(0, |s| s.seq)
    }

    /// Every entry, tombstones included (for a snapshot to a new member).
    pub fn snapshot(&self) -> Vec<DirEntry> {
        self.entries
            .iter()
            .map(|((app, address), s)| DirEntry {
                app: app.clone(),
                address: *address,
                seq: s.seq,
                present: s.present,
                pool: s.pool,
            })
            .collect()
    }

    /// Live entries as (application, address) pairs.
    pub fn live(&self) -> impl Iterator<Item = (&ApplicationName, Address)> {
        self.entries
            .iter()
            .filter(|(_, s)| s.present)
            .map(|((app, a), _)| (app, Address(*a)))
    }

    /// How many entries it holds, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry of the members for which `gone` holds becomes a tombstone (they
    /// left): a copy arriving late cannot bring it back, a newer registration can.
    /// Returns the tombstones made.
    pub fn purge(&mut self, now: Instant, mut gone: impl FnMut(Address) -> bool) -> Vec<DirEntry> {
        let mut made = Vec::new();
        for ((app, a), s) in self.entries.iter_mut() {
            if s.present && gone(Address(*a)) {
                s.present = false;
                s.changed = now;
                self.changes += 1;
                made.push(DirEntry {
                    app: app.clone(),
                    address: *a,
                    seq: s.seq,
                    present: false,
                    pool: s.pool,
                });
            }
        }
        made
    }

    /// Forgets tombstones older than `hold`.
    pub fn sweep(&mut self, now: Instant, hold: Duration) {
        self.entries
            .retain(|_, s| s.present || now.saturating_duration_since(s.changed) < hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Instant = Instant::ZERO;

    fn e(app: &str, address: u32, seq: u64, present: bool) -> DirEntry {
        DirEntry {
            app: ApplicationName::new(app),
            address,
            seq,
            present,
            pool: address == 3,
        }
    }

    #[test]
    fn newer_wins_and_tombstones_stick() {
        let mut d = Directory::default();
        assert!(d.apply(&e("echo", 2, 1, true), T));
        assert!(!d.apply(&e("echo", 2, 1, true), T));
        assert!(d.apply(&e("echo", 3, 1, true), T));
        assert_eq!(
            d.lookup(&ApplicationName::new("echo")),
            vec![Address(2), Address(3)]
        );
        assert_eq!(
            d.holders(&ApplicationName::new("echo")),
            vec![(Address(2), false), (Address(3), true)]
        );
        assert!(d.apply(&e("echo", 2, 2, false), T));
        assert!(
            !d.apply(&e("echo", 2, 1, true), T),
            "an old registration must not resurrect"
        );
        assert_eq!(d.lookup(&ApplicationName::new("echo")), vec![Address(3)]);
        let before = d.changes();
        d.purge(T, |a| a == Address(3));
        assert!(d.lookup(&ApplicationName::new("echo")).is_empty());
        assert!(d.changes() > before, "a purge is a change");
        let before = d.changes();
        d.purge(T, |a| a == Address(3));
        assert_eq!(d.changes(), before, "purging nothing is none");
        assert!(
            !d.apply(&e("echo", 3, 1, true), T),
            "a purged member's old entry must not resurrect"
        );
        assert!(d.apply(&e("echo", 3, 2, true), T), "a newer one may");
        assert!(d.lookup(&ApplicationName::new("nothing")).is_empty());
    }

    #[test]
    fn tombstones_go_after_the_hold_time() {
        let mut d = Directory::default();
        let t = |ms| T + Duration::from_millis(ms);
        d.apply(&e("a", 2, 1, true), t(0));
        d.apply(&e("b", 2, 1, true), t(0));
        d.apply(&e("b", 2, 2, false), t(10));
        d.sweep(t(500), Duration::from_millis(500));
        assert_eq!(d.len(), 2, "a tombstone younger than the hold stays");
        d.sweep(t(510), Duration::from_millis(500));
        assert_eq!(d.len(), 1);
        assert_eq!(d.lookup(&ApplicationName::new("a")), vec![Address(2)]);
    }
}

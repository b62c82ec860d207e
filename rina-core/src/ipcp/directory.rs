//! The directory: application name -> the members where it is registered.
//!
//! Fully replicated: every member holds every entry. A registration or removal is a
//! versioned [`DirEntry`]; the higher `seq` for an (application, address) pair wins,
//! and removals stay as tombstones so that an old registration arriving late cannot
//! resurrect a name. Entries of a member that left are dropped with
//! [`Directory::purge_address`]. Each entry also says whether its registrant serves
//! the name as one of a pool (see [`Directory::holders`]).

use std::collections::BTreeMap;

use crate::wire::mgmt::DirEntry;
use crate::{Address, ApplicationName};

/// The replicated directory of one member.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// (application, address) -> the newest entry's (seq, present, pool)
    entries: BTreeMap<(ApplicationName, u32), (u64, bool, bool)>,
}

impl Directory {
    /// Applies an entry; true if it changed the directory (and must be flooded on).
    pub fn apply(&mut self, e: &DirEntry) -> bool {
        let key = (e.app.clone(), e.address);
        match self.entries.get(&key) {
            Some(&(seq, ..)) if seq >= e.seq => false,
            _ => {
                self.entries.insert(key, (e.seq, e.present, e.pool));
                true
            }
        }
    }

    /// The members where `app` is registered, lowest address first.
    pub fn lookup(&self, app: &ApplicationName) -> Vec<Address> {
        self.entries
            .range((app.clone(), 0)..=(app.clone(), u32::MAX))
            .filter(|(_, &(_, present, _))| present)
            .map(|((_, a), _)| Address(*a))
            .collect()
    }

    /// The members where `app` is registered, each with whether it serves the name as
    /// one of a pool.
    pub fn holders(&self, app: &ApplicationName) -> Vec<(Address, bool)> {
        self.entries
            .range((app.clone(), 0)..=(app.clone(), u32::MAX))
            .filter(|(_, &(_, present, _))| present)
            .map(|((_, a), &(_, _, pool))| (Address(*a), pool))
            .collect()
    }

    /// The version of the entry for (app, address), 0 if none.
    pub fn seq(&self, app: &ApplicationName, address: Address) -> u64 {
        self.entries
            .get(&(app.clone(), address.0))
            .map_or(0, |&(s, ..)| s)
    }

    /// Every entry, tombstones included (for a snapshot to a new member).
    pub fn snapshot(&self) -> Vec<DirEntry> {
        self.entries
            .iter()
            .map(|((app, address), &(seq, present, pool))| DirEntry {
                app: app.clone(),
                address: *address,
                seq,
                present,
                pool,
            })
            .collect()
    }

    /// Live entries as (application, address) pairs.
    pub fn live(&self) -> impl Iterator<Item = (&ApplicationName, Address)> {
        self.entries
            .iter()
            .filter(|(_, &(_, p, _))| p)
            .map(|((app, a), _)| (app, Address(*a)))
    }

    /// Drops every entry of a member that left.
    pub fn purge_address(&mut self, address: Address) {
        self.entries.retain(|(_, a), _| *a != address.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(d.apply(&e("echo", 2, 1, true)));
        assert!(!d.apply(&e("echo", 2, 1, true)));
        assert!(d.apply(&e("echo", 3, 1, true)));
        assert_eq!(
            d.lookup(&ApplicationName::new("echo")),
            vec![Address(2), Address(3)]
        );
        assert_eq!(
            d.holders(&ApplicationName::new("echo")),
            vec![(Address(2), false), (Address(3), true)]
        );
        assert!(d.apply(&e("echo", 2, 2, false)));
        assert!(
            !d.apply(&e("echo", 2, 1, true)),
            "an old registration must not resurrect"
        );
        assert_eq!(d.lookup(&ApplicationName::new("echo")), vec![Address(3)]);
        d.purge_address(Address(3));
        assert!(d.lookup(&ApplicationName::new("echo")).is_empty());
        assert!(d.lookup(&ApplicationName::new("nothing")).is_empty());
    }
}

//! Access control in a secured DIF (issue 11): which member keys may register which
//! application names, and which member names and addresses are pinned to a key.
//!
//! A neighbour's key is known from its handshake (`IpcProcess::set_n1_key`), so a
//! member checks what each neighbour claims about itself: its IPC process name and
//! address when it enrolls or says hello (a claim on a name or address held by
//! another key is refused and evicts no one), and the names it registers (directory
//! entries for its own address). Entries for members further away were checked by
//! their own neighbours before they were flooded; a member applies the rules again
//! wherever it knows the key behind an address.

use std::collections::BTreeMap;

use crate::secure::{fingerprint, PublicKey};
use crate::wire::mgmt::DirEntry;
use crate::{Address, ApplicationName};

use super::{Event, IpcProcess};

/// A name pattern: `*` matches any run of characters (`web*`, `*.db`, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    /// A pattern from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// True if `name` (its text form) matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = name.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty(); // no `*`: the whole name
        };
        for p in middle {
            match rest.find(p) {
                Some(i) => rest = &rest[i + p.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }
}

/// Who may register names matching a pattern, and who may allocate flows to them
/// (`None`: any trusted member).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRule {
    /// The names.
    pub pattern: NamePattern,
    /// The keys that alone may register them.
    pub register: Option<Vec<PublicKey>>,
    /// The keys that alone may allocate flows to them.
    pub allocate: Option<Vec<PublicKey>>,
}

/// Who may do what in a secured DIF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Rules by name: the first whose pattern matches decides; a name matching none
    /// is open to any trusted member.
    pub names: Vec<NameRule>,
    /// IPC process names that only one key may take.
    pub pinned_names: BTreeMap<ApplicationName, PublicKey>,
    /// Addresses that only one key may take.
    pub pinned_addresses: BTreeMap<Address, PublicKey>,
}

impl Access {
    /// The rule for `name`, by its process name (the part applications are named by;
    /// instances and entities of a name fall under the same rule).
    fn rule(&self, name: &ApplicationName) -> Option<&NameRule> {
        self.names
            .iter()
            .find(|r| r.pattern.matches(&name.process_name))
    }

    /// True if `key` may register `name`.
    pub fn may_register(&self, name: &ApplicationName, key: &PublicKey) -> bool {
        self.rule(name)
            .and_then(|r| r.register.as_ref())
            .is_none_or(|keys| keys.contains(key))
    }

    /// True if flows to `name` need the requester's key to be one of a list.
    pub fn restricts_allocation(&self, name: &ApplicationName) -> bool {
        self.rule(name).is_some_and(|r| r.allocate.is_some())
    }

    /// True if `key` may allocate flows to `name`.
    pub fn may_allocate(&self, name: &ApplicationName, key: &PublicKey) -> bool {
        self.rule(name)
            .and_then(|r| r.allocate.as_ref())
            .is_none_or(|keys| keys.contains(key))
    }
}

impl IpcProcess {
    /// The key of the neighbour on N-1 port `port`, proved by its handshake: what it
    /// claims is checked against it from now on.
    pub fn set_n1_key(&mut self, port: crate::N1Port, key: PublicKey) {
        if let Some(n) = self.neighbors.get_mut(&port) {
            n.key = Some(key);
        }
    }

    /// The key known to hold `a`: ours, a pinned one, or a neighbour's (proved).
    fn key_of(&self, a: Address) -> Option<PublicKey> {
        if Some(a) == self.address {
            return self.cfg.key;
        }
        if let Some(k) = self
            .cfg
            .access
            .as_ref()
            .and_then(|x| x.pinned_addresses.get(&a))
        {
            return Some(*k);
        }
        self.neighbors
            .values()
            .find(|n| n.address == Some(a) && n.key.is_some())
            .and_then(|n| n.key)
    }

    /// True if the adjacency on `port` is up (or is our enroller's, while we enroll).
    pub(super) fn adjacency_up(&self, port: crate::N1Port) -> bool {
        use super::neighbor::Stage;
        self.neighbors
            .get(&port)
            .is_some_and(|n| matches!(n.stage, Stage::Up | Stage::Enrolling(_)))
    }

    /// True if `a` is pinned to a key other than `key` (an enrollee is not given it).
    pub(super) fn pinned_to_other(&self, a: Address, key: Option<PublicKey>) -> bool {
        self.cfg
            .access
            .as_ref()
            .and_then(|x| x.pinned_addresses.get(&a))
            .is_some_and(|k| Some(*k) != key)
    }

    /// Why the neighbour on `port` (key `key`) may not be `name` at `address`, if it
    /// may not: a pinned name or address of another key, or one another neighbour's
    /// key holds. `None` for an open DIF.
    pub(super) fn claim_refused(
        &self,
        port: crate::N1Port,
        name: &ApplicationName,
        address: Option<Address>,
    ) -> Option<String> {
        let access = self.cfg.access.as_ref()?;
        let Some(key) = self.neighbors.get(&port).and_then(|n| n.key) else {
            return Some("the neighbour proved no key".into());
        };
        let fp = fingerprint(&key);
        if access.pinned_names.get(name).is_some_and(|k| *k != key) {
            return Some(format!(
                "key {fp} claims member name {name}, pinned to another key"
            ));
        }
        let other_holds_name = self.neighbors.values().any(|n| {
            n.port != port && n.name.as_ref() == Some(name) && n.key.is_some_and(|k| k != key)
        });
        if other_holds_name || (*name == self.cfg.name) {
            return Some(format!(
                "key {fp} claims member name {name}, held by another key"
            ));
        }
        let a = address?;
        if self.key_of(a).is_some_and(|k| k != key) {
            return Some(format!("key {fp} claims address {a}, held by another key"));
        }
        None
    }

    /// Refuses a claim: said as an event (with the key's fingerprint) and counted.
    pub(super) fn refuse_claim(&mut self, why: String) {
        self.counters.refused_claims += 1;
        self.events.push_back(Event::AccessRefused { why });
    }

    /// True if the directory entry may be applied: its member's key (where known)
    /// may register its name. A refusal is said and counted.
    pub(super) fn entry_allowed(&mut self, e: &DirEntry) -> bool {
        let Some(access) = &self.cfg.access else {
            return true;
        };
        // Removals too: only a key that may hold the name may withdraw it.
        let Some(key) = self.key_of(Address(e.address)) else {
            return true; // checked by its member's neighbours
        };
        if access.may_register(&e.app, &key) {
            return true;
        }
        let why = format!(
            "key {} may not register {} (at address {})",
            fingerprint(&key),
            e.app,
            e.address
        );
        self.refuse_claim(why);
        false
    }

    /// Why a flow request from `src` to `app` is refused, if it is: flows to `app` are
    /// only for some keys, and `src`'s key is not one, or is not known here (only a
    /// neighbour's, a pinned address's or our own is).
    pub(super) fn allocation_refused(&self, src: Address, app: &ApplicationName) -> Option<String> {
        let access = self.cfg.access.as_ref()?;
        if !access.restricts_allocation(app) {
            return None;
        }
        match self.key_of(src) {
            Some(k) if access.may_allocate(app, &k) => None,
            Some(k) => Some(format!("key {} may not allocate flows to {app}", fingerprint(&k))),
            None => Some(format!(
                "flows to {app} are for some keys only, and the key of member {src} is not known here"
            )),
        }
    }

    /// True if this member (its own key) may register `app`.
    pub(super) fn may_register_here(&self, app: &ApplicationName) -> bool {
        match (&self.cfg.access, &self.cfg.key) {
            (Some(a), Some(k)) => a.may_register(app, k),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = |s: &str| NamePattern::new(s);
        assert!(p("web*").matches("web"));
        assert!(p("web*").matches("web.front"));
        assert!(!p("web*").matches("db"));
        assert!(p("*").matches("anything"));
        assert!(p("*.db").matches("orders.db"));
        assert!(!p("*.db").matches("orders.dbx"));
        assert!(p("a*b*c").matches("aXXbYYc"));
        assert!(!p("a*b*c").matches("aXXcYYb"));
        assert!(p("exact").matches("exact"));
        assert!(!p("exact").matches("exactly"));
    }

    #[test]
    fn the_first_matching_pattern_decides() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let rule = |p: &str, register: Option<Vec<PublicKey>>, allocate| NameRule {
            pattern: NamePattern::new(p),
            register,
            allocate,
        };
        let a = Access {
            names: vec![
                rule("web", Some(vec![k1]), Some(vec![k2])),
                rule("w*", Some(vec![k2]), None),
            ],
            ..Access::default()
        };
        let n = ApplicationName::new;
        assert!(a.may_register(&n("web"), &k1));
        assert!(!a.may_register(&n("web"), &k2));
        assert!(a.may_register(&n("wiki"), &k2));
        assert!(a.may_register(&n("other"), &k2));
        assert!(a.restricts_allocation(&n("web")) && !a.restricts_allocation(&n("wiki")));
        assert!(a.may_allocate(&n("web"), &k2) && !a.may_allocate(&n("web"), &k1));
        assert!(a.may_allocate(&n("wiki"), &k1));
    }
}

//! What we know of the sockets we took over, keyed by the socket's inode (st_dev,
//! st_ino), not its fd number: dup, fork, F_DUPFD and SCM_RIGHTS share an inode,
//! so they all stay correct without hooks (DESIGN.md D1).
//!
//! [`is_empty`] and [`has_datagrams`] are lock-free checks, so calls on other sockets
//! pay nothing while the process has none of ours. Entries of sockets that were
//! closed are swept when the table has doubled since the last sweep (the live
//! sockets are read from `/proc/self/fd`), so a long-running server's table stays
//! the size of its open sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::c_int;
use once_cell::sync::Lazy;
use parking_lot::Mutex;

/// A socket's identity: (device, inode).
pub type Key = (u64, u64);

/// The state of a socket we took over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Bound (only in our table) to an address a listen rule matches.
    Bound,
    /// An AF_UNIX listener stands in for the application's socket.
    Listening,
    /// A nonblocking connect in progress (the flow is being allocated).
    Connecting {
        /// The peer as the application named it.
        peer: SocketAddr,
    },
    /// A nonblocking connect failed; `error` is what `SO_ERROR` reports (once).
    Refused {
        /// The errno, 0 once reported.
        error: c_int,
    },
    /// One end of a stream flow.
    Connected {
        /// The peer as the application sees it.
        peer: SocketAddr,
    },
    /// The application's own UDP socket, carrying datagram flows through proxies.
    Datagram(Datagram),
}

/// A UDP socket with datagram flows (see `runtime::datagram`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// The socket's address as the proxies reach it.
    pub app: Option<SocketAddr>,
    /// Bound through a listen rule: its name is registered, and `getsockname`
    /// answers the rule's address.
    pub registered: bool,
    /// Connected through a connect rule: the address the application connected to.
    pub peer: Option<SocketAddr>,
    /// Destination as the application names it -> the proxy of its flow.
    pub routes: BTreeMap<SocketAddr, SocketAddr>,
    /// Bound through a listen rule: where its incoming flows' peers show.
    pub peers: Option<crate::synthetic::PeerRange>,
    /// The addresses shown for its incoming flows' peers (see `dgram::show_source`).
    pub shown: Vec<SocketAddr>,
}

/// What we know of one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The family the application created (AF_INET or AF_INET6).
    pub family: c_int,
    /// The local address the application sees.
    pub local: SocketAddr,
    /// Its role.
    pub role: Role,
    /// TCP- and IP-level options the application set: (level, name) -> value.
    pub options: BTreeMap<(c_int, c_int), Vec<u8>>,
}

struct Table {
    /// Each socket's entry, and when it was recorded (the value of `recorded` then): a
    /// sweep keeps the entries recorded after it began, whose sockets its reading of
    /// `/proc/self/fd` may have missed.
    entries: BTreeMap<Key, (u64, Meta)>,
    /// Entries recorded so far.
    recorded: u64,
    /// Size at which the next sweep of closed sockets runs.
    sweep_at: usize,
}

impl Table {
    /// Forgets the entries of sockets no fd refers to any more: those not in `live`
    /// (the open sockets' inodes, read after `recorded` was `from`), unless recorded
    /// after that (another thread's socket, made and recorded while this one read).
    fn sweep(&mut self, live: &BTreeSet<u64>, from: u64) {
        self.entries
            .retain(|k, (born, _)| live.contains(&k.1) || *born > from);
        self.sweep_at = (2 * (self.entries.len() + 1)).max(FIRST_SWEEP);
    }

    fn insert(&mut self, k: Key, meta: Meta) {
        self.recorded += 1;
        self.entries.insert(k, (self.recorded, meta));
    }

    fn remove(&mut self, k: &Key) -> Option<Meta> {
        self.entries.remove(k).map(|(_, m)| m)
    }
}

const FIRST_SWEEP: usize = 64;

static TABLE: Lazy<Mutex<Table>> = Lazy::new(|| {
    Mutex::new(Table {
        entries: BTreeMap::new(),
        recorded: 0,
        sweep_at: FIRST_SWEEP,
    })
});
static COUNT: AtomicUsize = AtomicUsize::new(0);
static DATAGRAMS: AtomicUsize = AtomicUsize::new(0);
static LISTENERS: AtomicUsize = AtomicUsize::new(0);

/// True if no socket is ours (no lock taken).
#[inline]
pub fn is_empty() -> bool {
    COUNT.load(Ordering::Acquire) == 0
}

/// True if some socket of ours carries datagram flows (no lock taken).
#[inline]
pub fn has_datagrams() -> bool {
    DATAGRAMS.load(Ordering::Acquire) != 0
}

/// True if some socket of ours is a stream listener (no lock taken).
#[inline]
pub fn has_listeners() -> bool {
    LISTENERS.load(Ordering::Acquire) != 0
}

/// The identity of the socket behind `fd`.
pub fn key(fd: c_int) -> Option<Key> {
    crate::sys::inode(fd)
}

fn publish(t: &Table) {
    COUNT.store(t.entries.len(), Ordering::Release);
    let count = |f: fn(&Role) -> bool| t.entries.values().filter(|(_, m)| f(&m.role)).count();
    DATAGRAMS.store(count(|r| matches!(r, Role::Datagram(_))), Ordering::Release);
    LISTENERS.store(count(|r| *r == Role::Listening), Ordering::Release);
}

/// What we know of `fd`, if it is ours.
pub fn get(fd: c_int) -> Option<Meta> {
    if is_empty() {
        return None;
    }
    let k = key(fd)?;
    let m = TABLE.lock().entries.get(&k).map(|(_, m)| m.clone())?;
    // A connect the host member answers: its result may be waiting to be read.
    if matches!(m.role, Role::Connecting { .. }) && crate::state::settle() {
        return TABLE.lock().entries.get(&k).map(|(_, m)| m.clone());
    }
    Some(m)
}

/// Records (or replaces) what we know of `fd`.
pub fn set(fd: c_int, meta: Meta) {
    let Some(k) = key(fd) else { return };
    if matches!(meta.role, Role::Connected { .. } | Role::Connecting { .. }) {
        crate::inline::mark(fd);
    }
    let sweep_from = {
        let t = TABLE.lock();
        (t.entries.len() + 1 >= t.sweep_at).then_some(t.recorded)
    };
    // Read the open sockets without the lock (reading /proc closes a directory fd,
    // which comes back through our close hook); other threads record theirs meanwhile.
    let live = sweep_from.map(|from| (open_socket_inodes(), from));
    let mut t = TABLE.lock();
    if let Some((live, from)) = live {
        t.sweep(&live, from);
    }
    t.insert(k, meta);
    publish(&t);
}

/// Updates the entry of `fd` in place; returns what `f` returned, `None` if `fd` is
/// not ours.
pub fn update<R>(fd: c_int, f: impl FnOnce(&mut Meta) -> R) -> Option<R> {
    let k = key(fd)?;
    let mut t = TABLE.lock();
    let r = t.entries.get_mut(&k).map(|(_, m)| f(m));
    publish(&t);
    r
}

/// Updates the entry of the socket `k` in place, if it is known.
pub fn update_key(k: Key, f: impl FnOnce(&mut Meta)) {
    let mut t = TABLE.lock();
    if let Some((_, m)) = t.entries.get_mut(&k) {
        f(m);
    }
    publish(&t);
}

/// Forgets `fd` (its inode); returns what was known.
pub fn remove(fd: c_int) -> Option<Meta> {
    let k = key(fd)?;
    remove_key(k)
}

/// Forgets a socket by its identity.
pub fn remove_key(k: Key) -> Option<Meta> {
    let mut t = TABLE.lock();
    let m = t.remove(&k);
    publish(&t);
    m
}

/// True if some fd of this process still refers to the socket with inode `ino`.
pub fn is_open(ino: u64) -> bool {
    open_socket_inodes().contains(&ino)
}

/// The inodes of every socket this process has open, from `/proc/self/fd`.
fn open_socket_inodes() -> BTreeSet<u64> {
    let mut live = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return live;
    };
    for e in dir.flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy();
            if let Some(ino) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                live.insert(ino);
            }
        }
    }
    live
}

/// Holds this module's lock across `fork` (see [`crate::hold_across_fork`]).
pub fn register_atfork() {
    crate::hold_across_fork!(TABLE);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race a sweep must survive: while one thread reads `/proc/self/fd`, another
    /// replaces its INET socket with a flow's and records it. Its entry is not among
    /// the inodes read, and must stay (it was dropped, and that connection's
    /// `setsockopt(TCP_NODELAY)` then failed with EOPNOTSUPP, under 200 connections
    /// opened at once).
    #[test]
    fn a_sweep_keeps_what_was_recorded_while_it_read() {
        let meta = Meta {
            family: libc::AF_INET,
            local: SocketAddr::from(([127, 0, 0, 1], 1)),
            role: Role::Listening,
            options: BTreeMap::new(),
        };
        let mut t = Table {
            entries: BTreeMap::new(),
            recorded: 0,
            sweep_at: FIRST_SWEEP,
        };
        t.insert((0, 1), meta.clone()); // open, and read
        t.insert((0, 2), meta.clone()); // closed before the read
        let from = t.recorded;
        let live = BTreeSet::from([1]);
        t.insert((0, 3), meta.clone()); // made and recorded during the read
        t.sweep(&live, from);
        let kept: Vec<u64> = t.entries.keys().map(|k| k.1).collect();
        assert_eq!(kept, [1, 3]);
        assert_eq!(
            t.entries.len(),
            2,
            "the closed socket's entry and stamp are gone"
        );
        t.sweep(&live, t.recorded);
        let kept: Vec<u64> = t.entries.keys().map(|k| k.1).collect();
        assert_eq!(kept, [1], "a later sweep that does not see it forgets it");
    }

    #[test]
    fn closed_sockets_are_swept() {
        let meta = |port| Meta {
            family: libc::AF_INET,
            local: SocketAddr::from(([127, 0, 0, 1], port)),
            role: Role::Bound,
            options: BTreeMap::new(),
        };
        let kept = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        set(kept.as_raw_fd(), meta(1));
        for i in 0..200u16 {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            set(s.as_raw_fd(), meta(i + 2));
        }
        let n = TABLE.lock().entries.len();
        assert!(n < 2 * FIRST_SWEEP, "{n} entries for 1 open socket");
        assert_eq!(get(kept.as_raw_fd()).map(|m| m.local.port()), Some(1));
    }
}

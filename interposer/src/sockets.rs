//! What we know of the sockets we took over, keyed by the socket's inode (st_dev,
//! st_ino), not its fd number: dup, fork, F_DUPFD and SCM_RIGHTS share an inode,
//! so they all stay correct without hooks (DESIGN.md D1).
//!
//! [`is_empty`] is a lock-free check, so calls on other sockets pay nothing while the
//! process has none of ours.

use std::collections::BTreeMap;
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
    /// One end of a flow.
    Connected {
        /// The peer as the application sees it.
        peer: SocketAddr,
    },
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

static TABLE: Lazy<Mutex<BTreeMap<Key, Meta>>> = Lazy::new(|| Mutex::new(BTreeMap::new()));
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// True if no socket is ours (no lock taken).
#[inline]
pub fn is_empty() -> bool {
    COUNT.load(Ordering::Acquire) == 0
}

/// The identity of the socket behind `fd`.
pub fn key(fd: c_int) -> Option<Key> {
    // SAFETY: fstat writes into a stat we own; an invalid fd is an error return.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// What we know of `fd`, if it is ours.
pub fn get(fd: c_int) -> Option<Meta> {
    if is_empty() {
        return None;
    }
    let k = key(fd)?;
    TABLE.lock().get(&k).cloned()
}

/// Records (or replaces) what we know of `fd`.
pub fn set(fd: c_int, meta: Meta) {
    if let Some(k) = key(fd) {
        let mut t = TABLE.lock();
        t.insert(k, meta);
        COUNT.store(t.len(), Ordering::Release);
    }
}

/// Updates the entry of `fd` in place.
pub fn update(fd: c_int, f: impl FnOnce(&mut Meta)) {
    let Some(k) = key(fd) else { return };
    if let Some(m) = TABLE.lock().get_mut(&k) {
        f(m);
    }
}

/// Forgets `fd` (its inode).
pub fn remove(fd: c_int) {
    if let Some(k) = key(fd) {
        let mut t = TABLE.lock();
        t.remove(&k);
        COUNT.store(t.len(), Ordering::Release);
    }
}

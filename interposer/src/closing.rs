//! What closing one of our sockets releases, in the process that runs the stack: the
//! last fd of a datagram socket releases its flows and registrations; the last fd of a
//! stream listener withdraws its name, unless another process (a fork child) still
//! holds the listener (the runtime looks), so that a connect after the server closed
//! its listener is refused, as over TCP.

use libc::{c_int, socklen_t};

use crate::real::real;
use crate::sockets::{self, Datagram, Key, Role};

/// A socket of ours about to be closed.
#[derive(Debug)]
pub enum Closing {
    /// A datagram socket with flows.
    Datagram(Key, Datagram),
    /// A stream listener, by its abstract name.
    Listener(Key, Vec<u8>),
}

/// Before `close(fd)`: what to release if it turns out to be the last fd of a socket
/// of ours. Call [`after_close`] with it after the real close.
pub fn before_close(fd: c_int) -> Option<Closing> {
    let k = sockets::key(fd)?;
    match sockets::get(fd)?.role {
        Role::Datagram(d) => Some(Closing::Datagram(k, d)),
        Role::Listening => listener_name(fd).map(|n| Closing::Listener(k, n)),
        _ => None,
    }
}

/// After the real close: releases what the socket held, unless another fd of this
/// process still refers to it.
pub fn after_close(c: Closing) {
    let (Closing::Datagram(k, _) | Closing::Listener(k, _)) = &c;
    if sockets::is_open(k.1) {
        return;
    }
    match c {
        Closing::Datagram(k, d) => crate::dgram::release(k, d),
        Closing::Listener(k, name) => {
            sockets::remove_key(k);
            if let Some(h) = crate::state::running_runtime() {
                h.listener_closed(name);
            }
        }
    }
}

/// The abstract name an AF_UNIX listener of ours is bound to.
fn listener_name(fd: c_int) -> Option<Vec<u8>> {
    // SAFETY: sockaddr_un is plain old data; the kernel fills it.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as socklen_t;
    // SAFETY: the buffer is ours and sized as declared.
    if unsafe { (real().getsockname)(fd, (&raw mut sun).cast(), &mut len) } != 0 {
        return None;
    }
    crate::flow_fd::abstract_name(&sun, len)
}

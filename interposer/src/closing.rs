//! What closing one of our sockets releases, in the process that runs the stack: the
//! last fd of a datagram socket releases its flows and registrations; the last fd of a
//! stream listener withdraws its name, unless another process (a fork child) still
//! holds the listener (the runtime looks), so that a connect after the server closed
//! its listener is refused, as over TCP.

use libc::c_int;

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
        Role::Listening => crate::sys::unix_name(fd, false).map(|n| Closing::Listener(k, n)),
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
            if let Some(h) = crate::state::runtime_to_tell() {
                h.listener_closed(name);
            }
        }
    }
}

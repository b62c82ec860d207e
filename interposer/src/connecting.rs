//! The stream connects that return before their flow is up: a nonblocking connect in
//! progress (EINPROGRESS, the socket held unwritable until the flow is up or refused)
//! and an early connect to a destination reached before (the socket usable at once,
//! its first bytes riding on the flow request: `runtime/src/driver/early.rs`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libc::c_int;
use runtime::api::{AppEnd, ConnectRequest};

use crate::ops::{set_send_buffer, Outcome};
use crate::sockets::{self, Meta, Role};
use crate::sys::{self, install};

/// How a connect that returns before its flow is up leaves the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// A nonblocking connect: the fd becomes the application's end of the pair at
    /// once, held unwritable until the flow is up (`runtime::pending`), and connect
    /// fails with EINPROGRESS. The result goes into the socket's record (for
    /// `SO_ERROR`, `getpeername` and another `connect`) before the end turns writable.
    InProgress,
    /// An early connect: the fd becomes the application's end of the pair at once,
    /// connected as far as the program can tell, and connect returns 0 (on a
    /// nonblocking socket EINPROGRESS, as TCP's on loopback, with the socket writable
    /// at once). If the flow is refused after all, the runtime resets that end (the
    /// next read or write fails with ECONNRESET) and the socket's record says why
    /// (`SO_ERROR`).
    Early,
}

/// A stream `connect` of `fd` (`meta`: its record, connecting) that returns before its
/// flow `req` is up, `app_end` going behind the fd, as `how` says.
pub(crate) fn deferred(
    how: Deferred,
    fd: c_int,
    meta: Meta,
    app_end: OwnedFd,
    mut req: ConnectRequest,
    send_buffer: Option<usize>,
    handle: &runtime::Handle,
) -> Outcome {
    // On a failure our end of the pair is closed as it drops.
    let (Role::Connecting { peer }, AppEnd::Stream(rt_end)) = (&meta.role, req.end) else {
        return Outcome::Fail(libc::EINVAL);
    };
    let peer = *peer;
    let nonblocking = sys::is_nonblocking(fd);
    let end = match how {
        Deferred::InProgress => runtime::pending::hold(app_end.as_fd(), send_buffer)
            .map(|held| AppEnd::StreamHeld(rt_end, held)),
        Deferred::Early => {
            set_send_buffer(app_end.as_raw_fd(), send_buffer);
            runtime::pending::early_end(app_end.as_fd(), rt_end)
        }
    };
    req.end = match end {
        Ok(end) => end,
        Err(e) => return Outcome::Fail(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    if let Err(e) = install(app_end, fd) {
        return Outcome::Fail(e);
    }
    let role = match how {
        Deferred::InProgress => meta.role.clone(),
        Deferred::Early => Role::Connected { peer },
    };
    sockets::set(fd, Meta { role, ..meta });
    let Some(key) = sockets::key(fd) else {
        return Outcome::Fail(libc::EBADF);
    };
    handle.connect_then(req, move |r| {
        let role = match r {
            // An early connect's socket is connected already.
            Ok(_) if how == Deferred::Early => return,
            Ok(_) => Role::Connected { peer },
            Err(e) => Role::Refused { error: e.errno() },
        };
        sockets::update_key(key, |m| m.role = role);
    });
    if how == Deferred::Early && !nonblocking {
        Outcome::Done(0)
    } else {
        Outcome::Fail(libc::EINPROGRESS)
    }
}

//! A stream socket whose flow is still being allocated, made to look like a TCP socket
//! in SYN-SENT to a nonblocking application: not writable, nothing to read, until the
//! flow is up (then writable) or refused (then writable and hung up, with the error
//! in `SO_ERROR`, which the interposer answers).
//!
//! The application's end of the AF_UNIX socket pair is made unwritable by shrinking
//! its send buffer to the minimum and filling it with filler bytes ([`hold`]); the
//! kernel then reports neither `POLLOUT` (poll, select, epoll alike) nor lets a write
//! through. When the allocation ends, the runtime reads the filler off its own end
//! and gives the application's end its full buffer back (`release`), or closes its
//! end. No readiness is faked: it is all the kernel's.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{self, RecvFlags, SendFlags};

/// The application's end of a pair, held unwritable.
#[derive(Debug)]
pub struct Held {
    /// A duplicate of the application's end (to restore its send buffer).
    app_side: OwnedFd,
    /// Filler bytes queued toward the runtime's end.
    filler: usize,
    /// The send buffer to give it back (`None`: the runtime's default).
    send_buffer: Option<usize>,
}

impl Held {
    /// Its parts: the duplicate of the application's end, the filler queued, the send
    /// buffer to restore (to pass it to a host member).
    pub(crate) fn into_parts(self) -> (OwnedFd, usize, Option<usize>) {
        (self.app_side, self.filler, self.send_buffer)
    }

    /// From [`Held::into_parts`]'s parts.
    pub(crate) fn from_parts(app_side: OwnedFd, filler: usize, send_buffer: Option<usize>) -> Self {
        Self {
            app_side,
            filler,
            send_buffer,
        }
    }
}

/// Makes the application's end `app` unwritable (see the module docs); once the flow
/// is up it gets `send_buffer` bytes of send buffer (`None`: the runtime's default).
///
/// # Errors
/// A failed `dup`, `setsockopt` or `send`.
pub fn hold(app: BorrowedFd<'_>, send_buffer: Option<usize>) -> io::Result<Held> {
    let app_side = shims::high_fd::dup_high(app)?;
    net::sockopt::set_socket_send_buffer_size(&app_side, 1)?; // the kernel's minimum
    let filler = [0u8; 4096];
    let mut queued = 0;
    loop {
        match net::send(
            &app_side,
            &filler,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(n) => queued += n,
            Err(Errno::AGAIN) => break,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Held {
        app_side,
        filler: queued,
        send_buffer,
    })
}

/// The ends an early connect gives the runtime ([`crate::AppEnd::StreamEarly`]): its
/// own end `rt` and a duplicate of the application's end `app` (to reset that end if
/// the flow is refused), both above the program's descriptors at once: the program
/// goes on opening descriptors before the runtime thread sees them.
///
/// # Errors
/// A failed `dup`.
pub fn early_end(app: BorrowedFd<'_>, rt: OwnedFd) -> io::Result<crate::AppEnd> {
    let dup = shims::high_fd::dup_high(app)?;
    Ok(crate::AppEnd::StreamEarly(
        shims::high_fd::move_high(rt),
        dup,
    ))
}

/// The flow is up: reads the filler off the runtime's end `rt` (it is all there,
/// ahead of anything the application can write) and restores the application's send
/// buffer, which makes its end writable.
pub(crate) fn release(held: Held, rt: &OwnedFd) {
    skip(rt, held.filler);
    crate::driver::set_send_buffer(&held.app_side, held.send_buffer);
}

/// Reads `count` bytes off `sock` and drops them: bytes known to be queued there
/// already (a held end's filler, an early connect's first data that its request
/// carried), ahead of anything the application writes after them.
pub(crate) fn skip(sock: &OwnedFd, count: usize) {
    let mut left = count;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let n = left.min(buf.len());
        match net::recv(sock, &mut buf[..n], RecvFlags::DONTWAIT) {
            Ok((_, got)) if got > 0 => left -= got,
            Err(Errno::INTR) => {}
            _ => break, // cannot happen: they were queued before we were called
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    use rustix::event::{poll, PollFd, PollFlags};
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    fn writable(fd: &OwnedFd) -> bool {
        let mut fds = [PollFd::new(fd, PollFlags::OUT)];
        poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap();
        fds[0].revents().contains(PollFlags::OUT)
    }

    #[test]
    fn held_end_is_unwritable_until_released() {
        let (app, rt) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        assert!(writable(&app));
        let held = hold(app.as_fd(), None).unwrap();
        assert!(!writable(&app), "held: no POLLOUT");
        assert_eq!(
            net::send(&app, b"x", SendFlags::DONTWAIT),
            Err(Errno::AGAIN),
            "held: writes would block"
        );
        release(held, &rt);
        assert!(writable(&app), "released: POLLOUT");
        net::send(&app, b"data", SendFlags::DONTWAIT).unwrap();
        let mut buf = [0u8; 8];
        let (_, n) = net::recv(&rt, &mut buf, RecvFlags::DONTWAIT).unwrap();
        assert_eq!(&buf[..n], b"data", "no filler left ahead of the data");
    }

    #[test]
    fn closing_the_runtime_end_makes_it_writable_and_hung_up() {
        let (app, rt) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let held = hold(app.as_fd(), None).unwrap();
        drop(rt);
        drop(held);
        let mut fds = [PollFd::new(&app, PollFlags::OUT | PollFlags::IN)];
        poll(&mut fds, Some(&rustix::time::Timespec::default())).unwrap();
        let r = fds[0].revents();
        assert!(
            r.contains(PollFlags::OUT) && r.contains(PollFlags::HUP),
            "{r:?}"
        );
    }
}

//! Descriptors a stack holds for itself (its sockets, its end of every flow's socket
//! pair, its epoll and eventfd) are moved above the program's range, so that a flow
//! costs the program one descriptor, as a TCP connection does, and the program's own
//! descriptors get the numbers they would get without the stack.
//!
//! The program's range is `0..soft` for its `RLIMIT_NOFILE` soft limit. A descriptor
//! is moved with `F_DUPFD_CLOEXEC` to the lowest free number at or above `soft`; that
//! needs the soft limit above the new number, so it is raised to the hard limit for
//! the duplication and put back at once (a descriptor keeps working whatever the limit
//! becomes). Where the hard limit leaves no room above the soft one, or the soft limit
//! is already above [`MOVE_BELOW`] (a program that raised it has room, and a table that
//! large would cost memory), descriptors stay where the kernel put them. While the limit is raised, a program thread that has
//! used up its whole range could be given a number above it; outside that instant,
//! never.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// Soft limits at or above this are left alone.
pub const MOVE_BELOW: libc::rlim_t = 1 << 16;

/// Serialises the raise-and-restore of the limit within this process.
static LIMIT: Mutex<()> = Mutex::new(());

/// `fd`, or a duplicate of it above the program's range (closing `fd`).
pub fn move_high(fd: OwnedFd) -> OwnedFd {
    dup_above(fd.as_fd()).unwrap_or(fd)
}

/// A duplicate of `fd` above the program's range, made there directly (no number of
/// the program's is taken even for an instant); where descriptors stay where the
/// kernel puts them (see the module docs), a plain duplicate.
///
/// # Errors
/// A failed `dup`.
pub fn dup_high(fd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    match dup_above(fd) {
        Some(high) => Ok(high),
        None => fd.try_clone_to_owned(),
    }
}

/// A duplicate of `fd` at or above the soft limit, or `None` where descriptors are
/// not moved or it failed.
fn dup_above(fd: BorrowedFd<'_>) -> Option<OwnedFd> {
    let _held = LIMIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: rlimit is plain data filled by the kernel.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: reading this process's limit into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
        || lim.rlim_cur >= MOVE_BELOW
        || fd.as_raw_fd() as libc::rlim_t >= lim.rlim_cur
    {
        return None;
    }
    let soft = lim.rlim_cur;
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setting this process's limit within its hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return None;
    }
    let start = libc::c_int::try_from(soft).unwrap_or(libc::c_int::MAX);
    // SAFETY: duplicating a descriptor the caller holds.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, start) };
    // SAFETY: restoring the limit read above.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if high < 0 {
        return None;
    }
    // SAFETY: `high` is a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(high) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_go_above_the_soft_limit_and_the_limit_is_kept() {
        // SAFETY: rlimit is plain data; all-zero is a valid value.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: as in move_high.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let low = sock.as_raw_fd();
        let moved = move_high(OwnedFd::from(sock));
        // SAFETY: as above.
        let mut after: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut after) };
        assert_eq!(
            (after.rlim_cur, after.rlim_max),
            (lim.rlim_cur, lim.rlim_max)
        );
        if lim.rlim_cur < lim.rlim_max && lim.rlim_cur < MOVE_BELOW {
            assert!(
                moved.as_raw_fd() as libc::rlim_t >= lim.rlim_cur,
                "{low} -> {}",
                moved.as_raw_fd()
            );
            // The low number is free again, and the socket works where it went.
            let again = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            assert_eq!(again.as_raw_fd(), low);
            let s = std::net::UdpSocket::from(moved);
            assert!(s.local_addr().is_ok());
        }
    }
}

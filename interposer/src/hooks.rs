//! The `extern "C"` entry points that shadow libc's socket functions.
//!
//! Each hook is a shell: it wraps the caller's pointers ([`crate::sys::sockaddr`]) and
//! goes through [`crate::detour`] (the fast pass-through, the re-entrancy guard,
//! `catch_unwind`, errno, and the policy for a panic) to the decisions in
//! [`crate::ops`].

use libc::{c_int, c_void, sockaddr, socklen_t};

use crate::detour;
use crate::ops::{self, Outcome};
use crate::state;
use crate::sys::real::real;
use crate::sys::sockaddr::{self as sa, AddrBuf, OptBuf};

/// After libc answered a call on a socket the table does not know: if it is the
/// application's end of a flow (its peer's name says so: an fd that came through exec,
/// a fork or `SCM_RIGHTS`), adopts it and answers with `decide`, as for any socket of
/// ours. `None`: libc's answer stands (also if the adoption or `decide` panicked:
/// this is bookkeeping after libc made the call). Runs whether or not this process
/// has rules.
fn after_adoption(fd: c_int, decide: impl FnOnce() -> Outcome) -> Option<c_int> {
    let out = detour::bookkeep(|| {
        if crate::sockets::get(fd).is_some() || crate::flow_fd::adopt(fd).is_none() {
            return Outcome::Pass;
        }
        decide()
    })?;
    match out {
        Outcome::Pass => None,
        Outcome::Done(v) => Some(v),
        Outcome::Fail(e) => {
            crate::sys::set_errno(e);
            Some(-1)
        }
    }
}

/// True for the errors a TCP-level option gets on an AF_UNIX socket.
fn not_a_tcp_socket(level: c_int) -> bool {
    (level == libc::IPPROTO_TCP || level == libc::IPPROTO_IP || level == libc::IPPROTO_IPV6)
        && matches!(crate::sys::errno(), libc::EOPNOTSUPP | libc::ENOPROTOOPT)
}

/// getsockname(2) / getpeername(2), with adoption (see [`after_adoption`]).
///
/// # Safety
/// As getsockname(2).
unsafe fn socket_name(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, peer: bool) -> c_int {
    // SAFETY: the caller's buffer, valid per getsockname(2) for the whole call; its
    // capacity is read before libc writes it.
    let out = unsafe { AddrBuf::new(addr, len) };
    let r = detour::decide(
        || ops::name(fd, &out, peer),
        // SAFETY: forwarding the caller's arguments.
        || unsafe {
            if peer {
                (real().getpeername)(fd, addr, len)
            } else {
                (real().getsockname)(fd, addr, len)
            }
        },
    );
    if r == 0 && out.written_family() == Some(libc::AF_UNIX) {
        if let Some(v) = after_adoption(fd, || ops::name(fd, &out, peer)) {
            return v;
        }
    }
    r
}

/// socket(2): passes through; forgets stale records for a reused inode.
///
/// # Safety
/// As socket(2).
#[no_mangle]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments to libc.
    let fd = unsafe { (real().socket)(domain, ty, protocol) };
    if fd >= 0 && state::active() && !crate::sockets::is_empty() {
        detour::bookkeep(|| ops::after_socket(fd));
    }
    fd
}

/// bind(2).
///
/// # Safety
/// As bind(2).
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    detour::decide(
        // SAFETY: the caller's address, `len` readable bytes per bind(2).
        || ops::bind(fd, unsafe { sa::read(addr, len) }),
        // SAFETY: forwarding the caller's arguments.
        || unsafe { (real().bind)(fd, addr, len) },
    )
}

/// listen(2).
///
/// # Safety
/// As listen(2).
#[no_mangle]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments to libc.
    detour::decide(
        || ops::listen(fd, backlog),
        || unsafe { (real().listen)(fd, backlog) },
    )
}

/// connect(2).
///
/// # Safety
/// As connect(2).
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    detour::decide(
        // SAFETY: the caller's address, `len` readable bytes per connect(2).
        || ops::connect(fd, unsafe { sa::read(addr, len) }),
        // SAFETY: forwarding the caller's arguments.
        || unsafe { (real().connect)(fd, addr, len) },
    )
}

/// accept(2).
///
/// # Safety
/// As accept(2).
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    detour::decide(
        // SAFETY: the caller's buffer, valid per accept(2) for the whole call.
        || ops::accept(fd, &unsafe { AddrBuf::new(addr, len) }, 0),
        // SAFETY: forwarding the caller's arguments.
        || unsafe { (real().accept)(fd, addr, len) },
    )
}

/// accept4(2).
///
/// # Safety
/// As accept4(2).
#[no_mangle]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    detour::decide(
        // SAFETY: the caller's buffer, valid per accept4(2) for the whole call.
        || ops::accept(fd, &unsafe { AddrBuf::new(addr, len) }, flags),
        // SAFETY: forwarding the caller's arguments.
        || unsafe { (real().accept4)(fd, addr, len, flags) },
    )
}

/// getsockname(2).
///
/// # Safety
/// As getsockname(2).
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { socket_name(fd, addr, len, false) }
}

/// getpeername(2).
///
/// # Safety
/// As getpeername(2).
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { socket_name(fd, addr, len, true) }
}

/// getsockopt(2).
///
/// # Safety
/// As getsockopt(2).
#[no_mangle]
pub unsafe extern "C" fn getsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: the caller's buffer, valid per getsockopt(2) for the whole call; its
    // capacity is read before libc writes it.
    let out = unsafe { OptBuf::new(val, len) };
    let r = detour::decide(
        || ops::getsockopt(fd, level, name, &out),
        // SAFETY: forwarding the caller's arguments.
        || unsafe { (real().getsockopt)(fd, level, name, val, len) },
    );
    // An AF_UNIX socket answering where a flow's fd would be ours: maybe one this
    // process does not know yet.
    let unix_domain = r == 0
        && level == libc::SOL_SOCKET
        && name == libc::SO_DOMAIN
        && out.written_int() == Some(libc::AF_UNIX);
    if (r != 0 && not_a_tcp_socket(level)) || unix_domain {
        if let Some(v) = after_adoption(fd, || ops::getsockopt(fd, level, name, &out)) {
            return v;
        }
    }
    r
}

/// setsockopt(2).
///
/// # Safety
/// As setsockopt(2).
#[no_mangle]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller's value, `len` readable bytes per setsockopt(2); looked at
    // only by a decision.
    let value = || unsafe { sa::option_value(val, len) };
    if level == libc::SOL_SOCKET && name == libc::SO_RCVLOWAT {
        // A read must then wait for that many bytes: the kernel's blocking read does,
        // an inline receive (which reads without waiting first) would not.
        crate::inline::unmark(fd);
    }
    let r = detour::decide(
        || ops::setsockopt(fd, level, name, value()),
        // SAFETY: forwarding the caller's arguments.
        || unsafe { (real().setsockopt)(fd, level, name, val, len) },
    );
    if r != 0 && not_a_tcp_socket(level) {
        if let Some(v) = after_adoption(fd, || ops::setsockopt(fd, level, name, value())) {
            return v;
        }
    }
    r
}

/// close(2): the last fd of a datagram socket of ours releases its flows, that of a
/// stream listener its name ([`crate::closing`]).
///
/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    crate::inline::unmark(fd);
    // Only the process that runs the flows releases them: a fork or vfork child (which
    // shares the parent's memory) closing its copies must not touch them. The fd is
    // closed whatever happens: what it releases is bookkeeping (see `crate::detour`).
    if !state::active()
        || !(crate::sockets::has_datagrams() || crate::sockets::has_listeners())
        || !state::owns_runtime()
    {
        // SAFETY: forwarding the caller's argument to libc.
        return unsafe { (real().close)(fd) };
    }
    let ours = detour::bookkeep(|| crate::closing::before_close(fd)).flatten();
    // SAFETY: as above.
    let r = unsafe { (real().close)(fd) };
    if let Some(c) = ours {
        detour::bookkeep(|| crate::closing::after_close(c));
    }
    r
}

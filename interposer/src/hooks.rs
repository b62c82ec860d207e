//! The `extern "C"` entry points that shadow libc's socket functions.
//!
//! Each hook: (1) passes straight to libc when this process has no rules, or when the
//! thread is already inside a hook (no allocation, no lock, no logging on that path);
//! (2) otherwise runs the decision in [`crate::ops`] inside `catch_unwind`. A panic
//! becomes -1/EIO: it never unwinds into C, and never falls back to TCP/IP on a call a
//! rule sent to RINA.

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::{c_int, c_void, sockaddr, socklen_t};

use crate::guard::Guard;
use crate::ops::{self, Outcome};
use crate::real::real;
use crate::state;

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

pub(crate) fn get_errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Runs `decide` guarded; `pass` is the real call.
#[inline]
pub(crate) fn hooked(decide: impl FnOnce() -> Outcome, pass: impl FnOnce() -> c_int) -> c_int {
    if !state::active() || runtime::on_runtime_thread() {
        return pass();
    }
    let Some(_guard) = Guard::enter() else {
        return pass();
    };
    // The decision may make system calls of its own; a call that succeeds, or that
    // libc makes after all, leaves errno as the application left it.
    let saved = get_errno();
    match catch_unwind(AssertUnwindSafe(decide)) {
        Ok(Outcome::Pass) => {
            set_errno(saved);
            pass()
        }
        Ok(Outcome::Done(v)) => {
            set_errno(saved);
            v
        }
        Ok(Outcome::Fail(e)) => {
            set_errno(e);
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
}

/// After libc answered a call on a socket the table does not know: if it is the
/// application's end of a flow (its peer's name says so: an fd that came through exec,
/// a fork or `SCM_RIGHTS`), adopts it and answers with `decide`, as for any socket of
/// ours. `None`: libc's answer stands. Runs whether or not this process has rules.
fn after_adoption(fd: c_int, decide: impl FnOnce() -> Outcome) -> Option<c_int> {
    if runtime::on_runtime_thread() {
        return None;
    }
    let _guard = Guard::enter()?;
    let saved = get_errno();
    let out = catch_unwind(AssertUnwindSafe(|| {
        if crate::sockets::get(fd).is_some() || crate::flow_fd::adopt(fd).is_none() {
            return None;
        }
        Some(decide())
    }))
    .ok()
    .flatten();
    match out {
        None | Some(Outcome::Pass) => {
            set_errno(saved);
            None
        }
        Some(Outcome::Done(v)) => {
            set_errno(saved);
            Some(v)
        }
        Some(Outcome::Fail(e)) => {
            set_errno(e);
            Some(-1)
        }
    }
}

/// The family libc wrote into a caller's address buffer.
///
/// # Safety
/// `addr` null or valid for `*len` bytes, `len` null or valid.
unsafe fn written_family(addr: *const sockaddr, len: *const socklen_t) -> Option<c_int> {
    if addr.is_null() || len.is_null() {
        return None;
    }
    // SAFETY: checked non-null; the family field is read only if the kernel wrote it.
    unsafe {
        ((*len as usize) >= size_of::<libc::sa_family_t>())
            .then(|| c_int::from(std::ptr::read_unaligned(addr.cast::<libc::sa_family_t>())))
    }
}

/// True for the errors a TCP-level option gets on an AF_UNIX socket.
fn not_a_tcp_socket(level: c_int) -> bool {
    (level == libc::IPPROTO_TCP || level == libc::IPPROTO_IP || level == libc::IPPROTO_IPV6)
        && matches!(get_errno(), libc::EOPNOTSUPP | libc::ENOPROTOOPT)
}

/// getsockname(2) / getpeername(2), with adoption (see [`after_adoption`]).
///
/// # Safety
/// As getsockname(2).
unsafe fn socket_name(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, peer: bool) -> c_int {
    // SAFETY: the caller's `len`, read only when non-null.
    let cap = (!len.is_null()).then(|| unsafe { *len });
    // SAFETY: the decision writes `addr` within `*len`; the pass forwards the arguments.
    let r = hooked(
        || unsafe { ops::name(fd, addr, len, peer) },
        || unsafe {
            if peer {
                (real().getpeername)(fd, addr, len)
            } else {
                (real().getsockname)(fd, addr, len)
            }
        },
    );
    // SAFETY: as above; the caller's buffer size is restored before answering again.
    if r == 0 && unsafe { written_family(addr, len) } == Some(libc::AF_UNIX) {
        // SAFETY: `len` and `addr` are the caller's, valid per getsockname(2).
        let again = after_adoption(fd, || unsafe {
            if let Some(c) = cap {
                *len = c;
            }
            ops::name(fd, addr, len, peer)
        });
        if let Some(v) = again {
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
        if let Some(_g) = Guard::enter() {
            let _ = catch_unwind(|| ops::after_socket(fd));
        }
    }
    fd
}

/// bind(2).
///
/// # Safety
/// As bind(2).
#[no_mangle]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the decision reads `addr` within `len`; the pass forwards the arguments.
    hooked(
        || unsafe { ops::bind(fd, addr, len) },
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
    hooked(
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
    // SAFETY: the decision reads `addr` within `len`; the pass forwards the arguments.
    hooked(
        || unsafe { ops::connect(fd, addr, len) },
        || unsafe { (real().connect)(fd, addr, len) },
    )
}

/// accept(2).
///
/// # Safety
/// As accept(2).
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the decision writes `addr` within `*len`; the pass forwards the arguments.
    hooked(
        || unsafe { ops::accept(fd, addr, len, 0) },
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
    // SAFETY: as for accept.
    hooked(
        || unsafe { ops::accept(fd, addr, len, flags) },
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
    // SAFETY: the caller's `len`, read only when non-null.
    let cap = (!len.is_null()).then(|| unsafe { *len });
    // SAFETY: the decision writes `val` within `*len`; the pass forwards the arguments.
    let r = hooked(
        || unsafe { ops::getsockopt(fd, level, name, val, len) },
        || unsafe { (real().getsockopt)(fd, level, name, val, len) },
    );
    // An AF_UNIX socket answering where a flow's fd would be ours: maybe one this
    // process does not know yet.
    // SAFETY: `val` holds an int when SO_DOMAIN succeeded.
    let unix_domain = r == 0
        && level == libc::SOL_SOCKET
        && name == libc::SO_DOMAIN
        && !val.is_null()
        && unsafe { std::ptr::read_unaligned(val.cast::<c_int>()) } == libc::AF_UNIX;
    if (r != 0 && not_a_tcp_socket(level)) || unix_domain {
        // SAFETY: as above; the caller's buffer size is restored before answering.
        let again = after_adoption(fd, || unsafe {
            if let Some(c) = cap {
                *len = c;
            }
            ops::getsockopt(fd, level, name, val, len)
        });
        if let Some(v) = again {
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
    // SAFETY: the decision reads `val` within `len`; the pass forwards the arguments.
    let r = hooked(
        || unsafe { ops::setsockopt(fd, level, name, val, len) },
        || unsafe { (real().setsockopt)(fd, level, name, val, len) },
    );
    if r != 0 && not_a_tcp_socket(level) {
        let decide = || {
            // SAFETY: the caller's `val` within `len`, valid per setsockopt(2).
            unsafe { ops::setsockopt(fd, level, name, val, len) }
        };
        if let Some(v) = after_adoption(fd, decide) {
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
    // Only the process that runs the flows releases them: a fork or vfork child (which
    // shares the parent's memory) closing its copies must not touch them.
    if !state::active()
        || !(crate::sockets::has_datagrams() || crate::sockets::has_listeners())
        || runtime::on_runtime_thread()
        || !state::owns_runtime()
    {
        // SAFETY: forwarding the caller's argument to libc.
        return unsafe { (real().close)(fd) };
    }
    let Some(_guard) = Guard::enter() else {
        // SAFETY: as above.
        return unsafe { (real().close)(fd) };
    };
    let ours = catch_unwind(|| crate::closing::before_close(fd))
        .ok()
        .flatten();
    // SAFETY: as above.
    let r = unsafe { (real().close)(fd) };
    if let Some(c) = ours {
        let e = get_errno();
        let _ = catch_unwind(AssertUnwindSafe(|| crate::closing::after_close(c)));
        set_errno(e);
    }
    r
}

//! The `extern "C"` entry points that shadow libc's socket functions.
//!
//! Each hook: (1) passes straight to libc when this process has no rules, or when the
//! thread is already inside a hook (no allocation, no lock, no logging on that path);
//! (2) otherwise runs the decision in [`crate::ops`] inside `catch_unwind`. A panic
//! becomes -1/EIO: it never unwinds into C, and never falls back to TCP/IP on a call a
//! rule sent to RINA.

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::{c_int, c_void, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::guard::Guard;
use crate::ops::{self, Outcome};
use crate::real::real;
use crate::state;

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn get_errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Runs `decide` guarded; `pass` is the real call.
#[inline]
fn hooked(decide: impl FnOnce() -> Outcome, pass: impl FnOnce() -> c_int) -> c_int {
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
    // SAFETY: the decision writes `addr` within `*len`; the pass forwards the arguments.
    hooked(
        || unsafe { ops::name(fd, addr, len, false) },
        || unsafe { (real().getsockname)(fd, addr, len) },
    )
}

/// getpeername(2).
///
/// # Safety
/// As getpeername(2).
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: as for getsockname.
    hooked(
        || unsafe { ops::name(fd, addr, len, true) },
        || unsafe { (real().getpeername)(fd, addr, len) },
    )
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
    // SAFETY: the decision writes `val` within `*len`; the pass forwards the arguments.
    hooked(
        || unsafe { ops::getsockopt(fd, level, name, val, len) },
        || unsafe { (real().getsockopt)(fd, level, name, val, len) },
    )
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
    hooked(
        || unsafe { ops::setsockopt(fd, level, name, val, len) },
        || unsafe { (real().setsockopt)(fd, level, name, val, len) },
    )
}

/// Where a datagram goes, decided guarded; `None`: as the application asked.
fn datagram_target(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<crate::dgram::Target> {
    if !state::active() || addr.is_null() || runtime::on_runtime_thread() {
        return None;
    }
    let _guard = Guard::enter()?;
    let saved = get_errno();
    // SAFETY: the caller of the hook guarantees `len` readable bytes at `addr`.
    let target = catch_unwind(AssertUnwindSafe(|| unsafe {
        crate::dgram::send_target(fd, addr, len)
    }));
    set_errno(saved);
    match target {
        Ok(crate::dgram::Target::Pass) => None,
        Ok(t) => Some(t),
        Err(_) => Some(crate::dgram::Target::Fail(libc::EIO)),
    }
}

/// sendto(2): a datagram to an address a rule matches goes to its flow's proxy.
///
/// # Safety
/// As sendto(2).
#[no_mangle]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    use crate::dgram::Target;
    // SAFETY: every branch forwards the caller's buffer; the proxy address is ours.
    unsafe {
        match datagram_target(fd, addr, len) {
            None => (real().sendto)(fd, buf, n, flags, addr, len),
            Some(Target::Proxy(st, l)) => {
                (real().sendto)(fd, buf, n, flags, (&raw const st).cast(), l)
            }
            Some(Target::Fail(e)) => {
                set_errno(e);
                -1
            }
            Some(Target::Pass) => (real().sendto)(fd, buf, n, flags, addr, len),
        }
    }
}

/// sendmsg(2): as [`sendto`] for `msg_name`.
///
/// # Safety
/// As sendmsg(2).
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    use crate::dgram::Target;
    if msg.is_null() {
        // SAFETY: forwarding; the kernel reports EFAULT.
        return unsafe { (real().sendmsg)(fd, msg, flags) };
    }
    // SAFETY: `msg` is a valid msghdr per the caller; we read its name fields.
    let (name, namelen) = unsafe {
        (
            (*msg).msg_name.cast::<sockaddr>().cast_const(),
            (*msg).msg_namelen,
        )
    };
    // SAFETY: forwarding the caller's message, or a copy with our proxy address.
    unsafe {
        match datagram_target(fd, name, namelen) {
            None | Some(Target::Pass) => (real().sendmsg)(fd, msg, flags),
            Some(Target::Proxy(mut st, l)) => {
                let mut m = std::ptr::read(msg);
                m.msg_name = (&raw mut st).cast();
                m.msg_namelen = l;
                (real().sendmsg)(fd, &m, flags)
            }
            Some(Target::Fail(e)) => {
                set_errno(e);
                -1
            }
        }
    }
}

/// Shows a datagram's source as the application addressed it (see
/// [`crate::dgram::show_source`]).
fn show_source(addr: *mut sockaddr, len: *mut socklen_t, cap: socklen_t) {
    if !state::active() || !crate::sockets::has_datagrams() || runtime::on_runtime_thread() {
        return;
    }
    if let Some(_g) = Guard::enter() {
        // SAFETY: `addr` has `cap` writable bytes and `len` is valid, per the caller.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            crate::dgram::show_source(addr, len, cap)
        }));
    }
}

/// recvfrom(2).
///
/// # Safety
/// As recvfrom(2).
#[no_mangle]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    let cap = if addr.is_null() || len.is_null() {
        0
    } else {
        // SAFETY: `len` is valid when `addr` is non-null, per recvfrom(2).
        unsafe { *len }
    };
    // SAFETY: forwarding the caller's arguments to libc.
    let r = unsafe { (real().recvfrom)(fd, buf, n, flags, addr, len) };
    if r >= 0 && cap > 0 {
        show_source(addr, len, cap);
    }
    r
}

/// recvmsg(2).
///
/// # Safety
/// As recvmsg(2).
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    let cap = if msg.is_null() {
        0
    } else {
        // SAFETY: a non-null `msg` is valid per the caller (null goes on for EFAULT).
        unsafe { (*msg).msg_namelen }
    };
    // SAFETY: forwarding the caller's arguments to libc.
    let r = unsafe { (real().recvmsg)(fd, msg, flags) };
    if r >= 0 && cap > 0 {
        // SAFETY: as above; the name fields were filled by the kernel.
        unsafe { show_source((*msg).msg_name.cast(), &raw mut (*msg).msg_namelen, cap) };
    }
    r
}

/// close(2): the last fd of a datagram socket of ours releases its flows.
///
/// # Safety
/// As close(2).
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if !state::active() || !crate::sockets::has_datagrams() || runtime::on_runtime_thread() {
        // SAFETY: forwarding the caller's argument to libc.
        return unsafe { (real().close)(fd) };
    }
    let Some(_guard) = Guard::enter() else {
        // SAFETY: as above.
        return unsafe { (real().close)(fd) };
    };
    let ours = catch_unwind(|| crate::dgram::before_close(fd))
        .ok()
        .flatten();
    // SAFETY: as above.
    let r = unsafe { (real().close)(fd) };
    if let Some((key, d)) = ours {
        let e = get_errno();
        let _ = catch_unwind(AssertUnwindSafe(|| crate::dgram::release(key, d)));
        set_errno(e);
    }
    r
}

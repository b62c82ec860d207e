//! The hooks of the calls that carry a peer's address with each message: `sendto`,
//! `sendmsg`, `sendmmsg`, `recvfrom`, `recvmsg`, `recvmmsg`. A datagram to an address a
//! rule matches goes to its flow's proxy, and one from a proxy shows the address the
//! application sent to ([`crate::dgram`]); `sendto` with `MSG_FASTOPEN` on a stream
//! socket to such an address connects through RINA first. Everything else goes to
//! libc as it came. Each goes through [`crate::detour`]: a panic while deciding where
//! a datagram goes fails the send (`EIO`); one while showing a source leaves libc's
//! result as it was.

use libc::{c_int, c_uint, c_void, mmsghdr, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::detour;
use crate::dgram::Target;
use crate::ops;
use crate::state;
use crate::sys::real::real;
use crate::sys::sockaddr::{self as sa, AddrBuf};
use crate::sys::{errno, set_errno};

/// Where a datagram goes; `None`: as the application asked.
///
/// # Safety
/// `addr` null or valid for reads of `len` bytes.
unsafe fn datagram_target(fd: c_int, addr: *const sockaddr, len: socklen_t) -> Option<Target> {
    if addr.is_null() {
        return None;
    }
    let target = detour::choose(
        // SAFETY: `len` readable bytes at `addr`, per the caller.
        || crate::dgram::send_target(fd, unsafe { sa::read(addr, len) }),
        Target::Fail(libc::EIO),
    )?;
    match target {
        Target::Pass => None,
        t => Some(t),
    }
}

/// sendto(2): a datagram to an address a rule matches goes to its flow's proxy; a
/// TCP Fast Open send (`MSG_FASTOPEN`) to one connects through RINA, then sends.
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
    if flags & libc::MSG_FASTOPEN != 0 && !addr.is_null() && state::active() {
        // SAFETY: forwarded from the caller.
        return unsafe { fast_open(fd, buf, n, flags, addr, len) };
    }
    // SAFETY: every branch forwards the caller's buffer; the proxy address is ours.
    unsafe {
        match datagram_target(fd, addr, len) {
            None | Some(Target::Pass) => {
                let r = (real().sendto)(fd, buf, n, flags, addr, len);
                if r < 0 && errno() == libc::EISCONN && is_stream_flow(fd) {
                    // A connected TCP socket ignores the address: so does a flow.
                    return (real().sendto)(fd, buf, n, flags, std::ptr::null(), 0);
                }
                r
            }
            Some(Target::Proxy(st, l)) => {
                (real().sendto)(fd, buf, n, flags, (&raw const st).cast(), l)
            }
            Some(Target::Fail(e)) => {
                set_errno(e);
                -1
            }
        }
    }
}

/// `sendto` with `MSG_FASTOPEN`: the connect hook decides (a rule's destination gets
/// a flow, never a TCP connection), then the data is sent on the connected socket.
///
/// # Safety
/// As sendto(2).
unsafe fn fast_open(
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> ssize_t {
    const PASSED: c_int = c_int::MIN;
    let r = detour::decide(
        // SAFETY: the caller's address, `len` readable bytes per sendto(2).
        || ops::connect(fd, unsafe { sa::read(addr, len) }),
        || PASSED,
    );
    // SAFETY: forwarding the caller's buffer, on the socket as the decision left it.
    unsafe {
        match r {
            PASSED => (real().sendto)(fd, buf, n, flags, addr, len),
            0 => (real().sendto)(fd, buf, n, flags & !libc::MSG_FASTOPEN, std::ptr::null(), 0),
            _ => -1, // errno set by the connect path (EINPROGRESS on a nonblocking socket)
        }
    }
}

/// sendmsg(2): as [`sendto`] for `msg_name`.
///
/// # Safety
/// As sendmsg(2).
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if msg.is_null() || !state::active() {
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
            None | Some(Target::Pass) => {
                let r = (real().sendmsg)(fd, msg, flags);
                if r < 0 && errno() == libc::EISCONN && is_stream_flow(fd) {
                    // A connected TCP socket ignores the address: so does a flow.
                    let mut m = std::ptr::read(msg);
                    m.msg_name = std::ptr::null_mut();
                    m.msg_namelen = 0;
                    return (real().sendmsg)(fd, &m, flags);
                }
                r
            }
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

/// True if `fd` is the application's end of a stream flow (known, or named as one),
/// asked after libc refused a send with an address (bookkeeping: a panic leaves that
/// refusal standing).
fn is_stream_flow(fd: c_int) -> bool {
    detour::bookkeep(|| {
        matches!(
            crate::flow_fd::meta(fd).map(|m| m.role),
            Some(crate::sockets::Role::Connected { .. })
        )
    })
    .unwrap_or(false)
}

/// Shows a datagram's source as the application addressed it (see
/// [`crate::dgram::show_source`]), after libc received it.
///
/// # Safety
/// `addr` null or valid for writes of `cap` bytes (and reads of what the kernel wrote);
/// `len` null or valid.
unsafe fn show_source(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, cap: socklen_t) {
    if !state::active() || !crate::sockets::has_datagrams() {
        return;
    }
    detour::bookkeep(|| {
        // SAFETY: per the caller; the capacity is the buffer's size before the call.
        let out = unsafe { AddrBuf::with_capacity(addr, len, cap) };
        crate::dgram::show_source(fd, &out);
    });
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
    if !state::active() || addr.is_null() || len.is_null() {
        // SAFETY: forwarding the caller's arguments to libc.
        return unsafe { (real().recvfrom)(fd, buf, n, flags, addr, len) };
    }
    // SAFETY: `len` is valid when `addr` is non-null, per recvfrom(2).
    let cap = unsafe { *len };
    // SAFETY: forwarding the caller's arguments to libc.
    let r = unsafe { (real().recvfrom)(fd, buf, n, flags, addr, len) };
    if r >= 0 && cap > 0 {
        // SAFETY: the caller's buffer of `cap` bytes, valid per recvfrom(2).
        unsafe { show_source(fd, addr, len, cap) };
    }
    r
}

/// recvmsg(2).
///
/// # Safety
/// As recvmsg(2).
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if !state::active() || msg.is_null() {
        // SAFETY: forwarding the caller's arguments to libc.
        return unsafe { (real().recvmsg)(fd, msg, flags) };
    }
    // SAFETY: a non-null `msg` is valid per the caller.
    let cap = unsafe { (*msg).msg_namelen };
    // SAFETY: forwarding the caller's arguments to libc.
    let r = unsafe { (real().recvmsg)(fd, msg, flags) };
    if r >= 0 && cap > 0 {
        // SAFETY: as above; the name fields were filled by the kernel.
        unsafe { show_source(fd, (*msg).msg_name.cast(), &raw mut (*msg).msg_namelen, cap) };
    }
    r
}

/// sendmmsg(2): as [`sendto`] for each message's `msg_name`.
///
/// # Safety
/// As sendmmsg(2).
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    if msgs.is_null() || !state::active() {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { (real().sendmmsg)(fd, msgs, vlen, flags) };
    }
    // SAFETY: `msgs` has `vlen` valid entries per the caller.
    let all = unsafe { std::slice::from_raw_parts_mut(msgs, vlen as usize) };
    let mut names: Vec<Option<(libc::sockaddr_storage, socklen_t)>> = Vec::new();
    for (i, m) in all.iter().enumerate() {
        let hdr = &m.msg_hdr;
        let name = hdr.msg_name.cast::<sockaddr>().cast_const();
        // SAFETY: each message's name has `msg_namelen` bytes, per sendmmsg(2).
        match unsafe { datagram_target(fd, name, hdr.msg_namelen) } {
            None | Some(Target::Pass) => {}
            Some(Target::Proxy(st, l)) => {
                names.resize(i + 1, None);
                names[i] = Some((st, l));
            }
            Some(Target::Fail(e)) => {
                set_errno(e);
                return -1;
            }
        }
    }
    if names.is_empty() {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { (real().sendmmsg)(fd, msgs, vlen, flags) };
    }
    // A copy of the vector with the proxies' addresses; the sent lengths go back.
    let mut copy: Vec<mmsghdr> = all
        .iter()
        // SAFETY: mmsghdr is plain old data.
        .map(|m| unsafe { std::ptr::read(m) })
        .collect();
    names.resize(copy.len(), None);
    for (m, name) in copy.iter_mut().zip(names.iter_mut()) {
        if let Some((st, l)) = name {
            m.msg_hdr.msg_name = (st as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = *l;
        }
    }
    // SAFETY: our copy, whose names point into `names`, alive for the call.
    let r = unsafe { (real().sendmmsg)(fd, copy.as_mut_ptr(), vlen, flags) };
    for (m, c) in all.iter_mut().zip(&copy).take(r.max(0) as usize) {
        m.msg_len = c.msg_len;
    }
    r
}

/// recvmmsg(2): as [`recvfrom`] for each message received.
///
/// # Safety
/// As recvmmsg(2).
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(
    fd: c_int,
    msgs: *mut mmsghdr,
    vlen: c_uint,
    flags: c_int,
    timeout: *mut libc::timespec,
) -> c_int {
    if msgs.is_null() || !state::active() || !crate::sockets::has_datagrams() {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { (real().recvmmsg)(fd, msgs, vlen, flags, timeout) };
    }
    // SAFETY: `msgs` has `vlen` valid entries per the caller.
    let caps: Vec<socklen_t> = unsafe { std::slice::from_raw_parts(msgs, vlen as usize) }
        .iter()
        .map(|m| m.msg_hdr.msg_namelen)
        .collect();
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { (real().recvmmsg)(fd, msgs, vlen, flags, timeout) };
    for (i, &cap) in caps.iter().enumerate().take(r.max(0) as usize) {
        // SAFETY: entry i was filled by the kernel; its name buffer has `cap` bytes.
        unsafe {
            let hdr = &raw mut (*msgs.add(i)).msg_hdr;
            if cap > 0 {
                show_source(fd, (*hdr).msg_name.cast(), &raw mut (*hdr).msg_namelen, cap);
            }
        }
    }
    r
}

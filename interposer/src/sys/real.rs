//! libc's own socket functions, found with `dlsym(RTLD_NEXT)` once.
//!
//! [`resolve`] runs from the library constructor; every accessor also resolves on
//! first use, for hooks reached before the constructor (another preload's
//! constructor). A lookup that returns our own hook is refused (it would loop).

use std::ffi::CStr;

use libc::{
    addrinfo, c_char, c_int, c_uint, c_void, hostent, mmsghdr, msghdr, size_t, sockaddr, socklen_t,
    ssize_t,
};
use once_cell::sync::OnceCell;

type SocketFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type AddrFn = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
type ListenFn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type AcceptFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
type NameFn = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
type GetOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int;
type SetOptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int;
type SendToFn = unsafe extern "C" fn(
    c_int,
    *const c_void,
    size_t,
    c_int,
    *const sockaddr,
    socklen_t,
) -> ssize_t;
type RecvFromFn = unsafe extern "C" fn(
    c_int,
    *mut c_void,
    size_t,
    c_int,
    *mut sockaddr,
    *mut socklen_t,
) -> ssize_t;
type SendMsgFn = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
type RecvMsgFn = unsafe extern "C" fn(c_int, *mut msghdr, c_int) -> ssize_t;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type SendFn = unsafe extern "C" fn(c_int, *const c_void, size_t, c_int) -> ssize_t;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t;
type RecvFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, c_int) -> ssize_t;
type SendMmsgFn = unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int) -> c_int;
type RecvMmsgFn =
    unsafe extern "C" fn(c_int, *mut mmsghdr, c_uint, c_int, *mut libc::timespec) -> c_int;
type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
type GetAddrInfoFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const addrinfo,
    *mut *mut addrinfo,
) -> c_int;
type GetHostByNameFn = unsafe extern "C" fn(*const c_char) -> *mut hostent;
type GetHostByName2Fn = unsafe extern "C" fn(*const c_char, c_int) -> *mut hostent;
type GetHostByNameRFn = unsafe extern "C" fn(
    *const c_char,
    *mut hostent,
    *mut c_char,
    size_t,
    *mut *mut hostent,
    *mut c_int,
) -> c_int;
type GetHostByName2RFn = unsafe extern "C" fn(
    *const c_char,
    c_int,
    *mut hostent,
    *mut c_char,
    size_t,
    *mut *mut hostent,
    *mut c_int,
) -> c_int;

/// The real functions.
#[derive(Debug, Clone, Copy)]
pub struct Real {
    /// `socket`
    pub socket: SocketFn,
    /// `bind`
    pub bind: AddrFn,
    /// `connect`
    pub connect: AddrFn,
    /// `listen`
    pub listen: ListenFn,
    /// `accept`
    pub accept: AcceptFn,
    /// `accept4`
    pub accept4: Accept4Fn,
    /// `getsockname`
    pub getsockname: NameFn,
    /// `getpeername`
    pub getpeername: NameFn,
    /// `getsockopt`
    pub getsockopt: GetOptFn,
    /// `setsockopt`
    pub setsockopt: SetOptFn,
    /// `sendto`
    pub sendto: SendToFn,
    /// `recvfrom`
    pub recvfrom: RecvFromFn,
    /// `sendmsg`
    pub sendmsg: SendMsgFn,
    /// `recvmsg`
    pub recvmsg: RecvMsgFn,
    /// `sendmmsg`
    pub sendmmsg: SendMmsgFn,
    /// `recvmmsg`
    pub recvmmsg: RecvMmsgFn,
    /// `close`
    pub close: CloseFn,
    /// `write`
    pub write: WriteFn,
    /// `send`
    pub send: SendFn,
    /// `read`
    pub read: ReadFn,
    /// `recv`
    pub recv: RecvFn,
    /// `execve`
    pub execve: ExecveFn,
    /// `execv`
    pub execv: ExecvFn,
    /// `execvp`
    pub execvp: ExecvFn,
    /// `execvpe`
    pub execvpe: ExecveFn,
    /// `getaddrinfo`
    pub getaddrinfo: GetAddrInfoFn,
    /// `gethostbyname`
    pub gethostbyname: GetHostByNameFn,
    /// `gethostbyname2`
    pub gethostbyname2: GetHostByName2Fn,
    /// `gethostbyname_r`
    pub gethostbyname_r: GetHostByNameRFn,
    /// `gethostbyname2_r`
    pub gethostbyname2_r: GetHostByName2RFn,
}

static REAL: OnceCell<Real> = OnceCell::new();

fn lookup(name: &CStr, ours: usize) -> *mut c_void {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name is always safe to call.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if p.is_null() || p as usize == ours {
        let msg = b"rina: cannot find libc's socket functions; stopping\n";
        // SAFETY: writing a static buffer to stderr, then exiting without unwinding.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    }
    p
}

macro_rules! resolve_fn {
    ($name:literal, $ty:ty, $ours:path) => {{
        let p = lookup($name, $ours as *const () as usize);
        // SAFETY: the symbol named `$name` in libc has exactly the C signature `$ty`.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

/// Resolves every real function (idempotent).
pub fn resolve() -> &'static Real {
    use crate::{exec, hooks, inline, inline_recv, lookups, msg_hooks};
    REAL.get_or_init(|| Real {
        socket: resolve_fn!(c"socket", SocketFn, hooks::socket),
        bind: resolve_fn!(c"bind", AddrFn, hooks::bind),
        connect: resolve_fn!(c"connect", AddrFn, hooks::connect),
        listen: resolve_fn!(c"listen", ListenFn, hooks::listen),
        accept: resolve_fn!(c"accept", AcceptFn, hooks::accept),
        accept4: resolve_fn!(c"accept4", Accept4Fn, hooks::accept4),
        getsockname: resolve_fn!(c"getsockname", NameFn, hooks::getsockname),
        getpeername: resolve_fn!(c"getpeername", NameFn, hooks::getpeername),
        getsockopt: resolve_fn!(c"getsockopt", GetOptFn, hooks::getsockopt),
        setsockopt: resolve_fn!(c"setsockopt", SetOptFn, hooks::setsockopt),
        sendto: resolve_fn!(c"sendto", SendToFn, msg_hooks::sendto),
        recvfrom: resolve_fn!(c"recvfrom", RecvFromFn, msg_hooks::recvfrom),
        sendmsg: resolve_fn!(c"sendmsg", SendMsgFn, msg_hooks::sendmsg),
        recvmsg: resolve_fn!(c"recvmsg", RecvMsgFn, msg_hooks::recvmsg),
        sendmmsg: resolve_fn!(c"sendmmsg", SendMmsgFn, msg_hooks::sendmmsg),
        recvmmsg: resolve_fn!(c"recvmmsg", RecvMmsgFn, msg_hooks::recvmmsg),
        close: resolve_fn!(c"close", CloseFn, hooks::close),
        write: resolve_fn!(c"write", WriteFn, inline::write),
        send: resolve_fn!(c"send", SendFn, inline::send),
        read: resolve_fn!(c"read", ReadFn, inline_recv::read),
        recv: resolve_fn!(c"recv", RecvFn, inline_recv::recv),
        execve: resolve_fn!(c"execve", ExecveFn, exec::execve),
        execv: resolve_fn!(c"execv", ExecvFn, exec::execv),
        execvp: resolve_fn!(c"execvp", ExecvFn, exec::execvp),
        execvpe: resolve_fn!(c"execvpe", ExecveFn, exec::execvpe),
        getaddrinfo: resolve_fn!(c"getaddrinfo", GetAddrInfoFn, lookups::getaddrinfo),
        gethostbyname: resolve_fn!(c"gethostbyname", GetHostByNameFn, lookups::gethostbyname),
        gethostbyname2: resolve_fn!(c"gethostbyname2", GetHostByName2Fn, lookups::gethostbyname2),
        gethostbyname_r: resolve_fn!(
            c"gethostbyname_r",
            GetHostByNameRFn,
            lookups::gethostbyname_r
        ),
        gethostbyname2_r: resolve_fn!(
            c"gethostbyname2_r",
            GetHostByName2RFn,
            lookups::gethostbyname2_r
        ),
    })
}

/// The real functions (resolving them on first use).
#[inline]
pub fn real() -> &'static Real {
    match REAL.get() {
        Some(r) => r,
        None => resolve(),
    }
}

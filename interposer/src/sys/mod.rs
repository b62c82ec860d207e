//! Every raw system call the interposer makes, behind safe functions: errno, libc's
//! own socket functions ([`real`](mod@real), resolved once), the fd and socket-option
//! calls the decisions need, and the process-level ones (stderr, exit, the program's
//! name). [`sockaddr`] converts C socket addresses and holds the callers' buffers.
//!
//! Outside this module, `unsafe` appears only in the `extern "C"` shells (the hooks)
//! and in the library's constructor and fork handlers (`lib.rs`).
//!
//! Socket calls go to libc's own functions ([`real::real`]), never through our hooks;
//! `close` goes through the `close` symbol as any other code's would (our hook passes it
//! to libc while this thread is inside a hook).

pub mod real;
pub mod sockaddr;

use std::ffi::CStr;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libc::{c_int, socklen_t, AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM};

use self::real::real;

/// This thread's errno.
#[inline]
pub fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets this thread's errno.
#[inline]
pub fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// `Err(errno)` for a failed call (`r < 0`).
fn check(r: c_int) -> Result<c_int, c_int> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// An int-valued socket option of `fd` (libc's getsockopt, not ours).
pub fn sockopt_int(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as socklen_t;
    // SAFETY: v and len are ours and sized for an int option.
    let r = unsafe { (real().getsockopt)(fd, level, name, (&raw mut v).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// A socket option of `fd` into `buf`; the length the kernel wrote.
pub fn sockopt_bytes(fd: c_int, level: c_int, name: c_int, buf: &mut [u8]) -> Option<usize> {
    let mut len = buf.len() as socklen_t;
    // SAFETY: the buffer is ours and sized as declared.
    let r = unsafe { (real().getsockopt)(fd, level, name, buf.as_mut_ptr().cast(), &mut len) };
    (r == 0).then(|| (len as usize).min(buf.len()))
}

/// Sets a socket option of `fd` to the bytes `val` (libc's setsockopt); true on
/// success.
pub fn set_sockopt_bytes(fd: c_int, level: c_int, name: c_int, val: &[u8]) -> bool {
    let ptr = if val.is_empty() {
        std::ptr::null()
    } else {
        val.as_ptr().cast()
    };
    // SAFETY: `val` is a live slice of `val.len()` bytes (null when empty).
    unsafe { (real().setsockopt)(fd, level, name, ptr, val.len() as socklen_t) == 0 }
}

/// Sets an int-valued socket option of `fd`; true on success.
pub fn set_sockopt_int(fd: c_int, level: c_int, name: c_int, v: c_int) -> bool {
    set_sockopt_bytes(fd, level, name, &v.to_ne_bytes())
}

/// The identity of the socket (any file) behind `fd`: (st_dev, st_ino).
pub fn inode(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into a stat we own; an invalid fd is an error return.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// True if `fd`'s file description is nonblocking.
pub fn is_nonblocking(fd: c_int) -> bool {
    // SAFETY: F_GETFL on a caller's fd; an error is a return value.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    fl & libc::O_NONBLOCK != 0
}

/// Replaces `fd`'s file description with `new`'s, keeping O_NONBLOCK and FD_CLOEXEC;
/// `new` itself is closed (also on failure).
pub fn install(new: OwnedFd, fd: c_int) -> Result<(), c_int> {
    // SAFETY: fcntl and dup3 on fds we were given; errors are return values.
    unsafe {
        let fl = check(libc::fcntl(fd, libc::F_GETFL))?;
        let fdfl = check(libc::fcntl(fd, libc::F_GETFD))?;
        let n = new.as_raw_fd();
        if fl & libc::O_NONBLOCK != 0 {
            libc::fcntl(
                n,
                libc::F_SETFL,
                libc::fcntl(n, libc::F_GETFL) | libc::O_NONBLOCK,
            );
        }
        let flags = if fdfl & libc::FD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        check(libc::dup3(n, fd, flags))?;
    }
    Ok(())
}

/// A new socket (libc's `socket`, not ours), close-on-exec.
pub fn socket(family: c_int, ty: c_int) -> Result<OwnedFd, c_int> {
    // SAFETY: plain socket call; the fd is fresh and ours.
    let s = check(unsafe { (real().socket)(family, ty | SOCK_CLOEXEC, 0) })?;
    // SAFETY: `s` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// A connected pair of AF_UNIX stream sockets, close-on-exec.
pub fn stream_pair() -> Result<(OwnedFd, OwnedFd), c_int> {
    let mut pair = [0 as c_int; 2];
    // SAFETY: socketpair writes two fds into our array.
    check(unsafe { libc::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.as_mut_ptr()) })?;
    // SAFETY: two fresh fds nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) })
}

/// An AF_UNIX stream socket listening on the abstract name `name` (truncated to fit).
pub fn unix_listener(name: &[u8], backlog: c_int) -> Result<OwnedFd, c_int> {
    let s = socket(AF_UNIX, SOCK_STREAM)?;
    let (sun, len) = sockaddr::abstract_address(name);
    // SAFETY: `sun` holds `len` valid bytes; `s` is ours.
    let r = unsafe {
        if (real().bind)(s.as_raw_fd(), (&raw const sun).cast(), len) != 0 {
            -1
        } else {
            (real().listen)(s.as_raw_fd(), backlog.max(16))
        }
    };
    if r != 0 {
        return Err(errno()); // `s` is closed on return, after errno was read
    }
    Ok(s)
}

/// `accept4` on an AF_UNIX listener of ours (libc's, not ours): the new fd and the
/// abstract name the peer connected from, if it has one.
pub fn accept_unix(fd: c_int, flags: c_int) -> Result<(c_int, Option<Vec<u8>>), c_int> {
    let mut sun = sockaddr::unix_storage();
    let mut len = size_of::<libc::sockaddr_un>() as socklen_t;
    // SAFETY: buffers are ours and sized as declared.
    let nfd = check(unsafe { (real().accept4)(fd, (&raw mut sun).cast(), &mut len, flags) })?;
    Ok((nfd, sockaddr::abstract_name(&sun, len)))
}

/// The abstract AF_UNIX name of `fd`'s own end (`peer`: of its peer), if it has one.
pub fn unix_name(fd: c_int, peer: bool) -> Option<Vec<u8>> {
    let mut sun = sockaddr::unix_storage();
    let mut len = size_of::<libc::sockaddr_un>() as socklen_t;
    let f = if peer {
        real().getpeername
    } else {
        real().getsockname
    };
    // SAFETY: the buffer is ours and sized as declared.
    if unsafe { f(fd, (&raw mut sun).cast(), &mut len) } != 0 {
        return None;
    }
    sockaddr::abstract_name(&sun, len)
}

/// The kernel's own address of the INET socket `fd` (libc's getsockname, not ours).
pub fn inet_name(fd: c_int) -> Result<SocketAddr, c_int> {
    let mut st = sockaddr::storage();
    let mut len = size_of::<libc::sockaddr_storage>() as socklen_t;
    // SAFETY: buffers are ours and sized as declared.
    if unsafe { (real().getsockname)(fd, (&raw mut st).cast(), &mut len) } != 0 {
        return Err(errno());
    }
    sockaddr::decode(&st, len).ok_or(libc::EAFNOSUPPORT)
}

/// Binds the INET socket `fd` (of `family`) to `sa` (libc's bind, not ours).
pub fn bind_inet(fd: c_int, sa: SocketAddr, family: c_int) -> Result<(), c_int> {
    let (st, len) = sockaddr::encode(sa, family);
    // SAFETY: `st` holds `len` valid bytes.
    check(unsafe { (real().bind)(fd, (&raw const st).cast(), len) }).map(drop)
}

/// Connects the INET socket `fd` (of `family`) to `sa` (libc's connect, not ours).
pub fn connect_inet(fd: c_int, sa: SocketAddr, family: c_int) -> Result<(), c_int> {
    let (st, len) = sockaddr::encode(sa, family);
    // SAFETY: `st` holds `len` valid bytes.
    check(unsafe { (real().connect)(fd, (&raw const st).cast(), len) }).map(drop)
}

/// Writes `msg` to stderr (one write, unbuffered, no allocation).
pub fn stderr(msg: &str) {
    // SAFETY: writing a buffer we own to fd 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Ends the process at once with `code`, running no exit handler.
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit never returns and needs nothing of us.
    unsafe { libc::_exit(code) }
}

/// Runs `f` at exit (`atexit`).
pub fn at_exit(f: extern "C" fn()) {
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(f) };
}

/// The program's short name (glibc's `program_invocation_short_name`).
pub fn program_short_name() -> Option<&'static CStr> {
    extern "C" {
        static program_invocation_short_name: *const libc::c_char;
    }
    // SAFETY: glibc sets this to a NUL-terminated string before constructors run;
    // we only read it.
    let p = unsafe { program_invocation_short_name };
    // SAFETY: non-null and NUL-terminated, per glibc, and never freed.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
}

/// Sets this thread's `h_errno` (the error of the `gethostbyname` family).
pub fn set_h_errno(code: c_int) {
    extern "C" {
        fn __h_errno_location() -> *mut c_int;
    }
    // SAFETY: glibc's accessor for this thread's h_errno.
    unsafe { *__h_errno_location() = code };
}

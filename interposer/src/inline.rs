//! The `write` and `send` hooks: a small write on a stream flow's socket may be sent by
//! the writing thread itself, straight into the stack (`runtime`'s
//! `driver/inline.rs`; `RINA_INLINE_SEND=0` turns it off), instead of through the
//! socket pair and the runtime thread.
//!
//! Which descriptors may be flows is kept in a bitmap by fd number ([`mark`] when the
//! socket table records a connected flow, [`unmark`] on close): every other `write`
//! costs one atomic load and goes straight to libc. A mark is only a hint (a `dup2`
//! over the fd leaves it): the flow is read from the socket's peer name each time,
//! and anything that is not this process's flow goes to libc as it came.

use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_int, c_void, size_t, ssize_t};

use crate::detour;
use crate::state;
use crate::sys::real::real;

/// Descriptors below this may be marked (65,536).
const WORDS: usize = 1024;
static MARKS: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

fn slot(fd: c_int) -> Option<(&'static AtomicU64, u64)> {
    let fd = usize::try_from(fd).ok()?;
    Some((MARKS.get(fd / 64)?, 1 << (fd % 64)))
}

/// Marks `fd` as a stream flow's socket.
pub fn mark(fd: c_int) {
    if let Some((w, bit)) = slot(fd) {
        w.fetch_or(bit, Ordering::Relaxed);
    }
}

/// `fd` is being closed, or takes no inline call any more.
#[inline]
pub fn unmark(fd: c_int) {
    if let Some((w, bit)) = slot(fd) {
        if w.load(Ordering::Relaxed) & bit != 0 {
            w.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

/// True if `fd` may be a stream flow's socket (a hint: see the module docs).
#[inline]
pub fn marked(fd: c_int) -> bool {
    slot(fd).is_some_and(|(w, bit)| w.load(Ordering::Relaxed) & bit != 0)
}

/// Sends `n` bytes at `buf` on the flow behind `fd` from this thread, if it is one of
/// this process's flows and the runtime takes them now; `None`: libc's call.
///
/// # Safety
/// `buf` valid for reads of `n` bytes (or `n` zero).
unsafe fn try_inline(fd: c_int, buf: *const c_void, n: size_t) -> Option<ssize_t> {
    if n == 0 || n > runtime::INLINE_MAX || buf.is_null() || !marked(fd) || !state::active() {
        return None;
    }
    if !runtime::inline_sends() {
        return None;
    }
    let sent = detour::choose(
        || {
            let (name, flow) = crate::flow_fd::peer_flow_named(fd)?;
            let pid = std::process::id();
            if flow.pid != pid {
                return None;
            }
            let h = state::runtime_of(pid)?;
            // SAFETY: per the caller, `n` readable bytes at `buf`, for this call.
            let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
            h.send_inline(usize::from(flow.dif), flow.port, &name, bytes)
        },
        // A panic may come after EFCP took the bytes: the call fails (EIO), it never
        // sends them a second time through libc.
        Some(PANICKED),
    )??;
    if sent == PANICKED {
        crate::sys::set_errno(libc::EIO);
        return Some(-1);
    }
    ssize_t::try_from(sent).ok()
}

/// What [`try_inline`]'s decision gives if it panicked.
const PANICKED: usize = usize::MAX;

/// write(2): see the module docs.
///
/// # Safety
/// As write(2).
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    // SAFETY: the caller's buffer, per write(2).
    if let Some(r) = unsafe { try_inline(fd, buf, n) } {
        return r;
    }
    // SAFETY: forwarding the caller's arguments to libc.
    unsafe { (real().write)(fd, buf, n) }
}

/// send(2): see the module docs. Only plain sends (no flags but `MSG_NOSIGNAL` and
/// `MSG_DONTWAIT`) may go inline.
///
/// # Safety
/// As send(2).
#[no_mangle]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, n: size_t, flags: c_int) -> ssize_t {
    if flags & !(libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) == 0 {
        // SAFETY: the caller's buffer, per send(2).
        if let Some(r) = unsafe { try_inline(fd, buf, n) } {
            return r;
        }
    }
    // SAFETY: forwarding the caller's arguments to libc.
    unsafe { (real().send)(fd, buf, n, flags) }
}

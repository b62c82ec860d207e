//! The `read` and `recv` hooks: a thread about to block on a stream flow's socket that
//! holds nothing polls for a short while first, and each poll runs the runtime's
//! receiving side on this thread (`runtime`'s `driver/inline_recv.rs`;
//! `RINA_INLINE_RECV=0` turns it off). An answer that arrives meanwhile is taken from
//! the link, handed to EFCP and written to the socket by this thread, which then reads
//! it without having slept: two cross-core wake-ups fewer per message received.
//!
//! Only a plain read (no flags) of a descriptor marked as a flow (`inline.rs`'s
//! bitmap: every other `read` costs one atomic load and goes straight to libc) that is
//! blocking and empty spins. The read itself is always the kernel's, on the caller's
//! descriptor: what a program sees (bytes, the end of a stream, errno, `SO_RCVTIMEO`,
//! signals while it sleeps) does not change; a stale mark (a `dup2` over the fd)
//! costs at most one spin. The budget adapts per thread as the runtime thread's spin
//! does: a poll that catches the data, or a sleep that ends within the longest spin
//! (200 µs), doubles it; a spin that finds nothing halves it, down to none, so a
//! thread that waits long (an idle connection) soon blocks at once.

use std::cell::Cell;
use std::time::{Duration, Instant};

use libc::{c_int, c_void, size_t, ssize_t, EAGAIN, MSG_DONTWAIT};

use runtime::Spin;

use crate::sys::real::real;
use crate::{detour, inline, state, sys};

/// The longest a thread polls before it blocks, by default (`RINA_INLINE_RECV_US`
/// sets it, for measurements). Longer than the runtime thread's 50 µs: a thread here
/// waits for a whole round trip (the peer's two hand-offs and the link's), and a
/// budget shorter than that never catches an answer, so it would shrink to nothing.
const MAX_SPIN: Duration = Duration::from_micros(200);

std::thread_local! {
    /// This thread's spin budget, adapted as the runtime thread's is (`runtime::Spin`;
    /// it starts at the most: the first wait of a conversation is the one a spin
    /// helps). `None` until the thread's first wait reads the maximum.
    static SPIN: Cell<Option<Spin>> = const { Cell::new(None) };
}

/// Runs `f` on this thread's spin budget.
fn with_spin<R>(f: impl FnOnce(&mut Spin) -> R) -> R {
    SPIN.with(|c| {
        let mut s = c
            .get()
            .unwrap_or_else(|| Spin::from_var("RINA_INLINE_RECV_US", MAX_SPIN));
        let r = f(&mut s);
        c.set(Some(s));
        r
    })
}

/// libc's `recv` of `fd` with `flags`.
///
/// # Safety
/// `buf` valid for writes of `n` bytes.
unsafe fn recv_now(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    // SAFETY: per the caller.
    unsafe { (real().recv)(fd, buf, n, flags) }
}

/// True if a result of `recv` ends the wait: bytes, the end of the stream, or an error
/// other than "nothing yet".
fn settled(r: ssize_t) -> bool {
    r >= 0 || sys::errno() != EAGAIN
}

/// Reads up to `n` bytes of the flow behind `fd` into `buf` as a blocking `recv`
/// without flags would, polling the stack from this thread before it blocks; `None`:
/// not a case for it (libc's call, as the program made it).
///
/// # Safety
/// `buf` valid for writes of `n` bytes.
unsafe fn try_receive(fd: c_int, buf: *mut c_void, n: size_t) -> Option<ssize_t> {
    if n == 0 || buf.is_null() || !inline::marked(fd) || !state::active() {
        return None;
    }
    if !runtime::inline_receives() {
        return None;
    }
    let budget = with_spin(|s| s.budget());
    if budget.is_zero() {
        // SAFETY: per the caller.
        return unsafe { wait(fd, buf, n) };
    }
    // This process's own stack (not a host member's, not a parent's after a fork), if
    // this thread may run it (not the runtime's, not inside a hook).
    let stack = || {
        let h = state::running_runtime()?;
        h.can_receive_inline().then_some(h)
    };
    let h = detour::choose(stack, None)??;
    // SAFETY: per the caller.
    let r = unsafe { recv_now(fd, buf, n, MSG_DONTWAIT) };
    if r < 0 && sys::errno() == libc::ENOTSOCK {
        return None; // a stale mark: the program's read, as it made it
    }
    if settled(r) {
        return Some(r);
    }
    if sys::is_nonblocking(fd) {
        sys::set_errno(EAGAIN);
        return Some(-1);
    }
    let start = Instant::now();
    loop {
        detour::choose(|| h.receive_inline(), false);
        // SAFETY: per the caller.
        let r = unsafe { recv_now(fd, buf, n, MSG_DONTWAIT) };
        if settled(r) {
            with_spin(Spin::caught);
            return Some(r);
        }
        if start.elapsed() >= budget {
            with_spin(Spin::missed);
            break;
        }
        std::thread::yield_now();
    }
    // SAFETY: per the caller.
    unsafe { wait(fd, buf, n) }
}

/// The kernel's read, as the program asked for it (it may block); a read that got
/// bytes within the longest spin grows the budget (a spin would have caught them).
/// `None` for a descriptor that is no socket (a stale mark).
///
/// # Safety
/// `buf` valid for writes of `n` bytes.
unsafe fn wait(fd: c_int, buf: *mut c_void, n: size_t) -> Option<ssize_t> {
    let start = Instant::now();
    // SAFETY: per the caller.
    let r = unsafe { recv_now(fd, buf, n, 0) };
    if r < 0 && sys::errno() == libc::ENOTSOCK {
        return None;
    }
    if r > 0 {
        let slept = start.elapsed();
        with_spin(|s| s.woken_after(slept));
    }
    Some(r)
}

/// read(2): see the module docs.
///
/// # Safety
/// As read(2).
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    // SAFETY: the caller's buffer, per read(2).
    if let Some(r) = unsafe { try_receive(fd, buf, n) } {
        return r;
    }
    // SAFETY: forwarding the caller's arguments to libc.
    unsafe { (real().read)(fd, buf, n) }
}

/// recv(2): see the module docs. Only a plain `recv` (no flags) may poll.
///
/// # Safety
/// As recv(2).
#[no_mangle]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, n: size_t, flags: c_int) -> ssize_t {
    if flags == 0 {
        // SAFETY: the caller's buffer, per recv(2).
        if let Some(r) = unsafe { try_receive(fd, buf, n) } {
            return r;
        }
    }
    // SAFETY: forwarding the caller's arguments to libc.
    unsafe { recv_now(fd, buf, n, flags) }
}

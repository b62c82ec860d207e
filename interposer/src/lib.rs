//! # rina-interposer: the LD_PRELOAD library
//!
//! Hooks the control-plane socket calls (`bind`, `listen`, `connect`, `accept`,
//! `accept4`, `getsockname`, `getpeername`, `getsockopt`, `setsockopt`, `socket`,
//! `close`) and asks the process's rules whether a call goes to RINA (DESIGN.md D1,
//! D4). The fd an application holds is always a real kernel socket, so the data path
//! (`poll`, `epoll`, ...) is not hooked; `write` and `send` ([`inline`]), `read` and
//! `recv` ([`inline_recv`]) are, only to let a thread send or receive a flow's small
//! messages itself, and cost every other descriptor one atomic load.
//!
//! A call goes through three layers:
//! - the shells, the `extern "C"` entry points: [`hooks`], [`msg_hooks`] (the calls
//!   that carry an address with each message), [`lookups`] (host names), [`exec`]
//!   (before an exec, flows go to a keeper process). They wrap the caller's pointers
//!   and hold every `unsafe` outside [`sys`];
//! - [`detour`]: the one way into a hook's own logic: the fast pass-through, the
//!   re-entrancy [`guard`], `catch_unwind`, errno, and the one policy for a panic
//!   (a call a rule may have matched fails; bookkeeping after libc's call is dropped);
//! - the decisions, in safe code: [`ops`], [`options`] (socket options answered as TCP
//!   would), [`dgram`] (datagram sockets, which keep their UDP socket and reach flows
//!   through proxies on loopback), [`names`] (host names that name rules resolve,
//!   without DNS), [`closing`], [`flow_fd`] (a flow's fd in any process).
//!
//! Under them: [`sys`], every raw system call behind safe functions (libc's own
//! functions resolved once, C socket addresses and the callers' buffers);
//! [`synthetic`], the synthetic address ranges (host names, peers, proxies);
//! [`sockets`], what we know of the sockets we took over, keyed by inode; [`state`],
//! the rules and the runtime of this process.

pub mod closing;
pub mod connecting;
pub mod detour;
pub mod dgram;
pub mod exec;
pub mod flow_fd;
pub mod guard;
pub mod hooks;
pub mod inline;
pub mod inline_recv;
pub mod lookups;
pub mod msg_hooks;
pub mod names;
pub mod ops;
pub mod options;
pub mod sockets;
pub mod state;
pub mod synthetic;
pub mod sys;

/// Registers `pthread_atfork` handlers that take `$lock` (a `parking_lot::Mutex`)
/// before `fork` and release it in both processes after, so a child never inherits
/// it held by a thread that does not exist there.
#[macro_export]
macro_rules! hold_across_fork {
    ($lock:expr) => {{
        extern "C" fn prepare() {
            std::mem::forget($lock.lock());
        }
        extern "C" fn release() {
            // SAFETY: `prepare` took the lock in this thread and forgot the guard;
            // this is the matching unlock, in the parent and in the child.
            unsafe { $lock.force_unlock() };
        }
        // SAFETY: registering plain extern "C" functions.
        unsafe { libc::pthread_atfork(Some(prepare), Some(release), Some(release)) };
    }};
}

/// Loads the rules when the library is loaded, so a bad rules file stops the
/// program before it does anything (D4). Starts no thread.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    // Never unwind into the dynamic loader.
    let _ = std::panic::catch_unwind(|| {
        sys::real::resolve();
        state::load_rules();
        if state::active() {
            sockets::register_atfork();
            dgram::register_atfork();
            names::register_atfork();
            state::register_atfork();
        }
    });
}

//! # rina-interposer: the LD_PRELOAD library
//!
//! Hooks the control-plane socket calls (`bind`, `listen`, `connect`, `accept`,
//! `accept4`, `getsockname`, `getpeername`, `getsockopt`, `setsockopt`, `socket`)
//! and asks the process's rules whether a call goes to RINA (DESIGN.md D1, D4).
//! The fd an application holds is always a real kernel socket, so the data path
//! (`read`, `write`, `poll`, `epoll`, ...) is not hooked at all.
//!
//! - [`hooks`]: the `extern "C"` entry points: a re-entrancy check, a fast
//!   pass-through, then [`ops`] inside `catch_unwind`; [`msg_hooks`] for the calls
//!   that carry an address with each message.
//! - [`ops`]: the decisions, in safe code where it can be.
//! - [`exec`]: before an exec, flows go to a keeper process.
//! - [`lookups`], [`names`]: host names that name rules resolve, without DNS.
//! - [`dgram`]: datagram sockets, which keep their UDP socket and reach flows through
//!   proxies on loopback.
//! - [`real`]: libc's own functions, resolved once.
//! - [`sockets`]: what we know of the sockets we took over, keyed by inode.
//! - [`state`]: the rules and the runtime of this process.
//! - [`sockaddr`]: conversions between C socket addresses and Rust ones.

pub mod closing;
pub mod dgram;
pub mod exec;
pub mod flow_fd;
pub mod guard;
pub mod hooks;
pub mod lookups;
pub mod msg_hooks;
pub mod names;
pub mod ops;
pub mod options;
pub mod real;
pub mod sockaddr;
pub mod sockets;
pub mod state;

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
        real::resolve();
        state::load_rules();
        if state::active() {
            sockets::register_atfork();
            dgram::register_atfork();
            names::register_atfork();
            state::register_atfork();
        }
    });
}

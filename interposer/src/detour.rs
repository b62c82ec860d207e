//! The one way into every hook's own logic: what runs between a hook's `extern "C"`
//! shell and the decisions.
//!
//! - **Fast pass-through.** With no rules in this process, on the runtime's own thread,
//!   or on a thread already inside a hook ([`Guard`]), the call goes straight to libc:
//!   no allocation, no lock, no logging on that path.
//! - **Guarded.** Otherwise the hook's logic runs with this thread marked as inside a
//!   hook (the socket calls it makes go straight to libc), inside `catch_unwind` (a
//!   panic never unwinds into C), and with errno saved and restored: a call that
//!   succeeds, or that libc makes after all, leaves errno as the application left it.
//!
//! One policy for a panic inside a hook's logic:
//! - while **deciding** a call ([`decide`], [`choose`]): a rule matched or may have
//!   matched, so the call fails, with -1 and `EIO` or the call's own failure convention
//!   (`EAI_FAIL` for `getaddrinfo`, a null result and `h_errno` for `gethostbyname`): it
//!   never falls back to libc, TCP/IP or DNS (fail closed, D4);
//! - in **bookkeeping** around a call libc makes whatever happens ([`bookkeep`]: after
//!   `socket` and `close`, adoption after `getsockname`, before an exec): libc's result
//!   stands, and the bookkeeping is dropped.

use std::panic::{catch_unwind, AssertUnwindSafe};

use libc::c_int;

use crate::guard::Guard;
use crate::ops::Outcome;
use crate::state;
use crate::sys;

/// Enters a hook's logic: `None` to pass the call through (no rules, the runtime's
/// thread, or already inside a hook).
#[inline]
fn enter() -> Option<Guard> {
    if !state::active() || runtime::on_runtime_thread() {
        return None;
    }
    Guard::enter()
}

/// Runs `f` inside `catch_unwind`, errno saved and restored; a panic gives `on_panic`.
/// The caller holds the [`Guard`].
pub fn guarded<T>(f: impl FnOnce() -> T, on_panic: T) -> T {
    let saved = sys::errno();
    let out = catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic);
    sys::set_errno(saved);
    out
}

/// A hook that returns an int: `decide` says what to do, `pass` is libc's call.
/// A panic while deciding fails the call with `EIO`.
#[inline]
pub fn decide(decide: impl FnOnce() -> Outcome, pass: impl FnOnce() -> c_int) -> c_int {
    let Some(_guard) = enter() else {
        return pass();
    };
    match guarded(decide, Outcome::Fail(libc::EIO)) {
        Outcome::Pass => pass(),
        Outcome::Done(v) => v,
        Outcome::Fail(e) => {
            sys::set_errno(e);
            -1
        }
    }
}

/// A decision of any kind: `None` on the fast pass-through, else what `decide` gave,
/// or `on_panic` (the call's failure, never a pass) if it panicked. The caller acts on
/// it after the guard is released.
#[inline]
pub fn choose<T>(decide: impl FnOnce() -> T, on_panic: T) -> Option<T> {
    let _guard = enter()?;
    Some(guarded(decide, on_panic))
}

/// Bookkeeping around a call libc makes whatever happens: `None` if it did not run
/// (the runtime's thread, already inside a hook) or panicked. Runs whether or not this
/// process has rules (a flow's fd may come from a process that had them); callers that
/// need rules check [`state::active`] first.
#[inline]
pub fn bookkeep<T>(f: impl FnOnce() -> T) -> Option<T> {
    if runtime::on_runtime_thread() {
        return None;
    }
    let _guard = Guard::enter()?;
    let saved = sys::errno();
    let out = catch_unwind(AssertUnwindSafe(f)).ok();
    sys::set_errno(saved);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_deciding_fails_the_call() {
        sys::set_errno(libc::EAGAIN);
        assert_eq!(
            guarded(|| panic!("a bug while deciding"), Outcome::Fail(libc::EIO)),
            Outcome::Fail(libc::EIO)
        );
        assert_eq!(sys::errno(), libc::EAGAIN, "errno restored");
    }

    #[test]
    fn a_panic_in_bookkeeping_is_dropped() {
        sys::set_errno(libc::EAGAIN);
        assert_eq!(bookkeep(|| -> u8 { panic!("a bug after the call") }), None);
        assert_eq!(bookkeep(|| 7), Some(7));
        assert_eq!(sys::errno(), libc::EAGAIN, "errno restored");
    }
}

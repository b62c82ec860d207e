//! A per-thread re-entrancy guard: while a hook runs its own logic, socket calls made
//! on the same thread (by us, or by anything we call) go straight to libc.
//!
//! The flag is a const-initialised `Cell` with no destructor, read with `try_with`,
//! so it works during thread teardown and never allocates.

use std::cell::Cell;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Proof that this thread is inside a hook; clears the flag when dropped.
#[derive(Debug)]
pub struct Guard(());

impl Guard {
    /// Enters a hook; `None` if this thread is already inside one (or its
    /// thread-locals are gone), in which case the caller must pass the call through.
    pub fn enter() -> Option<Self> {
        INSIDE
            .try_with(|c| {
                if c.get() {
                    None
                } else {
                    c.set(true);
                    Some(Self(()))
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|c| c.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_entry_is_refused() {
        let g = Guard::enter().expect("first entry");
        assert!(Guard::enter().is_none());
        drop(g);
        assert!(Guard::enter().is_some());
    }
}

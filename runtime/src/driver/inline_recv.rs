//! Receiving on a stream flow from the application's own thread (on unless
//! `RINA_INLINE_RECV=0`): an application thread about to block on a flow whose socket
//! holds nothing may first poll for a short while, and each poll runs the runtime's
//! receiving side itself: what the links hold is taken, handed to the stack, and what
//! the stack delivers is written to the flows' sockets, its own among them. The answer
//! it waits for then reaches it without two cross-core hand-offs (the runtime thread
//! woken by the link, the application woken by the runtime), as the kernel's busy
//! polling (`SO_BUSY_POLL`) spares a socket reader the interrupt's wake-up.
//!
//! Like an inline send (`inline.rs`) this relaxes DESIGN.md D3: the poll takes the
//! stack's lock only if it is free (the runtime thread holds it except while it waits),
//! never waits for it, and runs only the links' side and the turn that follows
//! (timers, deliveries, sends); commands, the management socket and the host service
//! stay with the runtime thread, and so does everything once the process is exiting or
//! handing its flows over. The caller (the interposer's `read` and `recv` hooks) spins
//! within a budget that adapts as the runtime thread's own spin does (`spin.rs`), then
//! blocks in the kernel as before.

use std::sync::OnceLock;

use rina_core::node::LinkId;

use super::{Driver, Shared};

/// True unless `RINA_INLINE_RECV` is 0 (read once): application threads may run the
/// receiving side themselves before they block on an empty flow.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RINA_INLINE_RECV").is_none_or(|v| v != "0"))
}

impl Shared {
    /// Runs the receiving side of the stack on the calling thread if its lock is free
    /// now; true if it ran.
    pub(crate) fn receive_inline(&self) -> bool {
        let Some(stack) = self.stack.get().and_then(std::sync::Weak::upgrade) else {
            return false;
        };
        let Some(mut d) = stack.try_lock() else {
            return false;
        };
        d.receive_inline()
    }
}

impl Driver {
    /// Takes what every link holds, then runs a turn (deliveries, acknowledgements,
    /// timers due); tells the runtime thread what it must hear of (`after_inline`).
    fn receive_inline(&mut self) -> bool {
        if self.exiting.is_some() || self.stopped || self.keeper.is_some() {
            return false;
        }
        let now = self.now();
        for link in 0..self.stack.links.len() {
            self.receive_link(now, LinkId(link));
        }
        self.turn(now);
        self.inline_receives += 1;
        if self.busy {
            self.shared.wake();
        } else {
            self.after_inline(now);
        }
        true
    }
}

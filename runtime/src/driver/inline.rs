//! Sending on a stream flow from the application's own thread (on unless
//! `RINA_INLINE_SEND=0`): a small write is handed to EFCP and sent on the link by the
//! thread that made it, instead of going through the socket pair and waking the
//! runtime thread (one cross-core hand-off fewer per message). This relaxes DESIGN.md
//! D3 ("one runtime thread owns the stack"): the runtime thread still runs everything
//! else, and owns the stack whenever it is not waiting.
//!
//! The runtime thread holds the stack's lock except while it waits; an application
//! thread only ever `try_lock`s it, so it never blocks (a busy runtime, or a signal
//! handler that interrupted a send on its own thread, means the normal path). A write
//! goes inline only when it cannot pass anything the application wrote before:
//! nothing is left unread in its socket pair (a peek at the runtime's end finds
//! nothing, not even the application's shutdown; and the runtime never holds bytes it
//! read back), the flow is up, its window open, and the write fits one SDU. Everything else (larger writes, a full window, a flow closing)
//! takes the socket pair, as before, so semantics (blocking, back-pressure, EPIPE
//! after a shutdown seen by the runtime) are unchanged.
//!
//! Timers: a send may arm an earlier deadline than the one the sleeping runtime thread
//! waits for (a retransmission); the runtime's timer fd is then set to it, without
//! waking the thread now.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rina_core::node::DifId;
use rina_core::{Instant, PortId};
use rustix::net::RecvFlags;
use rustix::time::{Itimerspec, TimerfdTimerFlags};

use parking_lot::{Mutex, MutexGuard};

use super::{Driver, Shared};
use crate::link::Link;
use crate::transmits::Transmits;

/// The largest write sent inline (a small message; a bulk transfer keeps the pump, so
/// an application thread never does a transfer's EFCP work).
pub const INLINE_MAX: usize = 4 << 10;

/// True unless `RINA_INLINE_SEND` is 0 (read once): application threads may send
/// small writes on stream flows themselves.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("RINA_INLINE_SEND").is_none_or(|v| v != "0"))
}

impl Shared {
    /// Sends `buf` on stream flow `port` of DIF `dif` from the calling thread, if that
    /// is possible now without passing anything the application wrote before to the
    /// flow's socket, whose runtime end is bound to `name` (what the caller's end shows
    /// as its peer: a flow of an earlier runtime of this pid, after an exec, has the
    /// same port-id but another name). `None`: write it to the socket as usual.
    ///
    /// The stack is locked only to hand the SDU to EFCP and take the PDUs it makes; they
    /// go out on the link after the lock is released.
    pub(crate) fn send_inline(
        &self,
        dif: usize,
        port: PortId,
        name: &[u8],
        buf: &[u8],
    ) -> Option<usize> {
        if buf.is_empty() || buf.len() > INLINE_MAX {
            return None;
        }
        let stack = self.stack.get()?.upgrade()?;
        let (mut out, links) = take(&stack)?.send_inline(DifId(dif), port, name, buf)?;
        out.send(&links);
        Some(buf.len())
    }
}

/// How many times a send tries the lock, yielding between tries, before it takes the
/// socket pair: the runtime thread usually finishes its turn within a few.
const TRIES: usize = 8;

/// The stack's lock, if it comes free within [`TRIES`] tries (never a blocking wait).
fn take(stack: &Mutex<Driver>) -> Option<MutexGuard<'_, Driver>> {
    for _ in 1..TRIES {
        if let Some(g) = stack.try_lock() {
            return Some(g);
        }
        std::thread::yield_now();
    }
    stack.try_lock()
}

impl Driver {
    /// Hands `buf` to EFCP on flow `port` if it may go inline now: the PDUs to send and
    /// the links to send them on.
    fn send_inline(
        &mut self,
        dif: DifId,
        port: PortId,
        name: &[u8],
        buf: &[u8],
    ) -> Option<(Transmits, Arc<Vec<Link>>)> {
        if self.exiting.is_some() || self.stopped || self.keeper.is_some() {
            return None;
        }
        let token = *self.by_port.get(&(dif, port))?;
        let f = self.flows.get(&token)?;
        if f.app_eof || f.app_gone || f.reset || !named(&f.sock, name) {
            return None;
        }
        if !drained(&f.sock) {
            return None;
        }
        if buf.len() > self.stack.node.dif(dif).stream_sdu() {
            return None;
        }
        let now = self.now();
        let ipcp = self.stack.node.ipcp_mut(dif);
        if !ipcp.can_write(port) {
            return None;
        }
        ipcp.write(now, port, buf).ok()?;
        self.inline_sends += 1;
        let mut out = Transmits::default();
        let mut pdu = Vec::new();
        while let Some(t) = self.stack.node.poll_transmit(now, &mut pdu) {
            pdu = out.push(t, std::mem::take(&mut pdu)).0;
        }
        self.after_inline(now);
        Some((out, self.stack.links.clone()))
    }

    /// After an inline send: the runtime thread must hear of what the stack has for it
    /// (events: wake it) and of an earlier deadline (its timer fd).
    pub(super) fn after_inline(&mut self, now: Instant) {
        if self.stack.node.has_pending_output() {
            self.shared.wake();
            return;
        }
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if self.asleep_until.is_some_and(|t| t <= deadline) {
            return;
        }
        self.asleep_until = Some(deadline);
        let Some(timer) = self.timer.as_ref() else {
            self.shared.wake();
            return;
        };
        // At least a nanosecond: a zero value would disarm the timer.
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: super::timespec(Duration::ZERO),
            it_value: super::timespec(wait),
        };
        if rustix::time::timerfd_settime(timer.as_fd(), TimerfdTimerFlags::empty(), &spec).is_err()
        {
            self.shared.wake();
        }
    }

    /// The timer fd fired: its expiry is read (the turn that follows handles the
    /// deadlines).
    pub(super) fn timer_fired(&mut self) {
        if let Some(t) = &self.timer {
            let mut b = [0u8; 8];
            if rustix::io::read(t, &mut b).is_ok() {
                self.inline_timer_wakes += 1;
            }
        }
    }
}

/// True if `sock` is bound to the abstract name `name`.
fn named(sock: &OwnedFd, name: &[u8]) -> bool {
    rustix::net::getsockname(sock)
        .ok()
        .and_then(|a| rustix::net::SocketAddrUnix::try_from(a).ok())
        .is_some_and(|a| a.abstract_name() == Some(name))
}

/// True if everything the application wrote to its end of the socket pair has been
/// read (and so handed to EFCP: the pump does both under the lock), and it has not
/// shut its end for writing: a peek at this end finds nothing, not even the end.
fn drained(sock: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    matches!(
        rustix::net::recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Err(rustix::io::Errno::AGAIN)
    )
}

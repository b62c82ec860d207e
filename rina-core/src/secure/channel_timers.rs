//! A secured N-1 flow's timers: handshakes tried again with doubling waits, a
//! session replaced after its bound of time or messages, one past its hard limit
//! retired, a peer that never finished its first handshake dropped.

use super::{Channel, Ctx};
use crate::secure::Security;
use crate::Instant;

impl Channel {
    /// When [`Channel::handle_timeout`] must run next.
    pub fn poll_timeout(&self, sec: &Security) -> Option<Instant> {
        if self.done {
            return None;
        }
        let retry = self
            .pending
            .as_ref()
            .filter(|p| p.attempts > 0)
            .map(|p| p.retry_at);
        let age = self.current.as_ref().map(|s| {
            let l = &sec.limits;
            let limit = if self.initiator && self.pending.is_none() {
                l.rekey_after_time
            } else {
                l.reject_after_time
            };
            s.born + limit
        });
        let prove = self.prove_by.filter(|_| !self.up);
        crate::time::earliest(crate::time::earliest(retry, age), prove)
    }

    /// Retries handshakes, starts rekeying, retires sessions too old.
    pub fn handle_timeout(&mut self, cx: &mut Ctx<'_>) {
        if self.done {
            return;
        }
        let limits = cx.sec.limits;
        if !self.up && self.prove_by.is_some_and(|t| cx.now >= t) {
            return self.fail("no handshake in time");
        }
        if let Some(s) = &self.current {
            if cx.now >= s.born + limits.reject_after_time {
                return self.fail("no new session in time");
            }
        }
        if self.pending.is_none() && self.initiator && self.rekey_due(cx) {
            return self.start_handshake(cx);
        }
        let Some(p) = self.pending.as_mut().filter(|p| p.attempts > 0) else {
            return;
        };
        if cx.now < p.retry_at {
            return;
        }
        if p.attempts >= limits.handshake_attempts {
            if self.current.is_some() {
                // A rekeying that does not finish (its messages lost or spoiled): a
                // new one, while the session in use goes on.
                return self.start_handshake(cx);
            }
            let why = if p.answered_us {
                "the neighbour did not accept our key (not trusted there?)"
            } else {
                "no answer to the handshake (wrong DIF secret, or not a secured member?)"
            };
            return self.fail(why);
        }
        p.attempts = p.attempts.saturating_add(1);
        p.wait = (p.wait * 2).min(core::time::Duration::from_secs(2));
        p.retry_at = cx.now + p.wait;
        self.outbox.push_back(p.last.clone());
    }

    fn rekey_due(&self, cx: &Ctx<'_>) -> bool {
        self.current.as_ref().is_some_and(|s| {
            cx.now >= s.born + cx.sec.limits.rekey_after_time
                || s.messages >= cx.sec.limits.rekey_after_messages
        })
    }

    /// Starts rekeying now if the session sealed or opened enough messages (checked
    /// by the node after traffic, so a count bound needs no timer).
    pub fn rekey_if_due(&mut self, cx: &mut Ctx<'_>) {
        if !self.done && self.initiator && self.pending.is_none() && self.rekey_due(cx) {
            self.start_handshake(cx);
        }
    }
}

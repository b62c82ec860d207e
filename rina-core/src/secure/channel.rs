//! One secured N-1 flow: its handshakes (the first, then one per rekeying), its live
//! sessions, and the messages it has to send of its own (handshake messages, retries,
//! confirmations, an authenticated close).
//!
//! The member that made the flow (the initiator) starts every handshake; the other
//! only answers. After the final message the responder switches to the new session at
//! once and says so (a sealed `Confirm`); the initiator keeps sealing with the old one
//! until that confirmation opens, resending its final message meanwhile, so neither a
//! lost message nor a rekeying ever leaves a moment without a working session. A
//! session of the other slot stays for opening what was sealed before the switch.

use std::collections::VecDeque;
use std::ops::Range;

use super::handshake::Handshake;
use super::session::{OpenError, Session};
use super::wire::{self, Control, Message, FINAL, HEADER, INITIATION, RESPONSE, TAG};
use super::{Counters, PublicKey, SecureRng, Security};
use crate::Instant;

/// Initiations a responder keeps answers for (see `Channel::answering`).
const ANSWERING: usize = 4;

/// What a channel's handlers need from the node.
pub struct Ctx<'a> {
    /// The DIF's policy.
    pub sec: &'a Security,
    /// Randomness for handshakes.
    pub rng: &'a mut SecureRng,
    /// The DIF's counters.
    pub counters: &'a mut Counters,
    /// The time.
    pub now: Instant,
}

/// What a channel tells the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The first handshake finished with a trusted peer: the flow carries PDUs.
    Up(PublicKey),
    /// The peer's key is not trusted (or changed): the flow is done.
    Refused(PublicKey),
    /// The first handshake did not finish: why.
    Failed(&'static str),
    /// The flow is done: the peer closed it, or no new session came in time.
    Closed(&'static str),
}

/// A handshake in progress.
#[derive(Debug)]
struct Pending {
    /// `None` once finished (the initiator waits for the confirmation).
    hs: Option<Handshake>,
    /// Our last handshake message, sent again on the timer (the initiator) or for a
    /// repeated initiation (the responder).
    last: Vec<u8>,
    /// The initiation it answers (the responder).
    answered: Vec<u8>,
    /// A response was read (the initiator).
    answered_us: bool,
    retry_at: Instant,
    wait: core::time::Duration,
    attempts: u32,
}

/// One secured N-1 flow.
#[derive(Debug)]
pub struct Channel {
    initiator: bool,
    /// The session that seals.
    current: Option<Session>,
    /// The other slot's session: the previous one (opens only), or the initiator's next
    /// one waiting for its confirmation.
    other: Option<Session>,
    /// The initiator's handshake in progress.
    pending: Option<Pending>,
    /// The responder's: the last few initiations it answered (a replayed or injected
    /// initiation adds one, and never replaces the real one).
    answering: VecDeque<Pending>,
    /// The last final message that finished a handshake here (a copy of it, and only
    /// that, is answered with a confirmation again).
    last_final: Vec<u8>,
    peer: Option<PublicKey>,
    up: bool,
    done: bool,
    /// The slot of the next session.
    next_slot: u8,
    /// A responder's deadline for its first handshake.
    prove_by: Option<Instant>,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<ChannelEvent>,
}

impl Channel {
    fn empty(initiator: bool) -> Self {
        Self {
            initiator,
            current: None,
            other: None,
            pending: None,
            answering: VecDeque::new(),
            last_final: Vec::new(),
            peer: None,
            up: false,
            done: false,
            next_slot: 0,
            prove_by: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The flow's maker: sends the initiation.
    pub fn initiator(cx: &mut Ctx<'_>) -> Self {
        let mut c = Self::empty(true);
        c.start_handshake(cx);
        c
    }

    /// The other end: waits for an initiation, until `prove_by`.
    pub fn responder(prove_by: Instant) -> Self {
        Self {
            prove_by: Some(prove_by),
            ..Self::empty(false)
        }
    }

    /// The peer's key, once its handshake showed it.
    pub fn peer(&self) -> Option<PublicKey> {
        self.peer
    }

    /// True if this end made the flow (and starts its handshakes).
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// True if its peer sent a verified initiation or finished a handshake (so the
    /// node keeps it over ports that proved nothing).
    pub fn has_shown_itself(&self) -> bool {
        self.up || !self.answering.is_empty()
    }

    /// True once the first handshake finished.
    pub fn is_up(&self) -> bool {
        self.up
    }

    fn start_handshake(&mut self, cx: &mut Ctx<'_>) {
        let Ok(mut hs) = Handshake::new(&cx.sec.creds, true, cx.rng.seed32()) else {
            return self.fail("cannot start a handshake");
        };
        let mut msg = vec![INITIATION];
        if hs.write(&mut msg).is_err() {
            return self.fail("cannot start a handshake");
        }
        // The previous session goes: its slot is the next one's.
        if self.current.is_some() {
            self.other = None;
        }
        self.outbox.push_back(msg.clone());
        let wait = cx.sec.limits.handshake_retry;
        self.pending = Some(Pending {
            hs: Some(hs),
            last: msg,
            answered: Vec::new(),
            answered_us: false,
            retry_at: cx.now + wait,
            wait,
            attempts: 1,
        });
    }

    fn fail(&mut self, why: &'static str) {
        if !self.done {
            self.done = true;
            self.pending = None;
            self.answering.clear();
            self.events.push_back(if self.up {
                ChannelEvent::Closed(why)
            } else {
                ChannelEvent::Failed(why)
            });
        }
    }

    fn refuse(&mut self, cx: &mut Ctx<'_>, peer: PublicKey) {
        cx.counters.handshakes_refused += 1;
        self.done = true;
        self.pending = None;
        self.answering.clear();
        self.current = None;
        self.other = None;
        self.events.push_back(ChannelEvent::Refused(peer));
    }

    /// Handles a message that came up the flow (in place): the range of a PDU for the
    /// IPC process, if it was one.
    pub fn handle(&mut self, cx: &mut Ctx<'_>, msg: &mut [u8]) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        match wire::classify(msg) {
            Some(Message::Handshake(kind, body)) => {
                let body = body.to_vec();
                match (kind, self.initiator) {
                    (INITIATION, false) => self.on_initiation(cx, &msg[..], &body),
                    (RESPONSE, true) => self.on_response(cx, &body),
                    (FINAL, false) => self.on_final(cx, &msg[..], &body),
                    _ => cx.counters.handshakes_refused += 1,
                }
                None
            }
            Some(Message::Sealed {
                control,
                slot,
                counter,
            }) => self.on_sealed(cx, control, slot, counter, msg),
            None => {
                cx.counters.opens_failed += 1;
                None
            }
        }
    }

    fn on_initiation(&mut self, cx: &mut Ctx<'_>, whole: &[u8], body: &[u8]) {
        // A repeated initiation (our response was lost): the same response again, no
        // new state and no new work.
        if let Some(p) = self.answering.iter().find(|p| p.answered == whole) {
            self.outbox.push_back(p.last.clone());
            return;
        }
        let answer = Handshake::new(&cx.sec.creds, false, cx.rng.seed32()).and_then(|mut hs| {
            hs.read(body)?;
            let mut msg = vec![RESPONSE];
            hs.write(&mut msg)?;
            Ok((hs, msg))
        });
        let Ok((hs, msg)) = answer else {
            // Not from a holder of the DIF's secret, or not an initiation.
            cx.counters.handshakes_refused += 1;
            return;
        };
        self.outbox.push_back(msg.clone());
        if self.answering.len() == ANSWERING {
            self.answering.pop_front();
        }
        self.answering.push_back(Pending {
            hs: Some(hs),
            last: msg,
            answered: whole.to_vec(),
            answered_us: false,
            // The responder does not retry.
            retry_at: Instant::ZERO,
            wait: core::time::Duration::ZERO,
            attempts: 0,
        });
    }

    fn on_response(&mut self, cx: &mut Ctx<'_>, body: &[u8]) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        let Some(hs) = p.hs.as_mut() else {
            return; // A repeated response: our final message is on its way again.
        };
        if hs.read(body).is_err() {
            cx.counters.handshakes_refused += 1;
            return;
        }
        let peer = hs.peer().unwrap_or_default();
        if !cx.sec.trusts(&peer) || self.peer.is_some_and(|p| p != peer) {
            return self.refuse(cx, peer);
        }
        let mut msg = vec![FINAL];
        let Some(mut hs) = p.hs.take() else {
            return;
        };
        if hs.write(&mut msg).is_err() {
            return self.fail("the handshake failed");
        }
        let (i2r, r2i) = hs.keys();
        self.peer = Some(peer);
        self.other = Some(Session::new(&i2r, &r2i, self.next_slot, cx.now));
        self.outbox.push_back(msg.clone());
        p.last = msg;
        p.answered_us = true;
        p.attempts = 1;
        p.wait = cx.sec.limits.handshake_retry;
        p.retry_at = cx.now + p.wait;
    }

    fn on_final(&mut self, cx: &mut Ctx<'_>, whole: &[u8], body: &[u8]) {
        // The handshake this final message finishes, if any (a failed read leaves a
        // handshake as it was: a forged final spoils nothing).
        let mut done = None;
        for i in 0..self.answering.len() {
            let Some(hs) = self.answering[i].hs.as_mut() else {
                continue;
            };
            if hs.read(body).is_ok() {
                done = self.answering.remove(i).and_then(|p| p.hs);
                break;
            }
        }
        let Some(hs) = done else {
            // The initiator did not see our confirmation: say it again, to the same
            // final message only (anything else gets nothing).
            if whole == self.last_final.as_slice() {
                if let Some(cur) = self.current.as_mut() {
                    self.outbox.push_back(sealed_control(cur, Control::Confirm));
                }
            } else {
                cx.counters.handshakes_refused += 1;
            }
            return;
        };
        self.answering.clear();
        let peer = hs.peer().unwrap_or_default();
        if !cx.sec.trusts(&peer) || self.peer.is_some_and(|p| p != peer) {
            return self.refuse(cx, peer);
        }
        self.last_final = whole.to_vec();
        let (i2r, r2i) = hs.keys();
        self.peer = Some(peer);
        self.install(cx, Session::new(&r2i, &i2r, self.next_slot, cx.now));
        if let Some(cur) = self.current.as_mut() {
            self.outbox.push_back(sealed_control(cur, Control::Confirm));
        }
    }

    /// `s` becomes the sealing session; the one it replaces stays for opening.
    fn install(&mut self, cx: &mut Ctx<'_>, s: Session) {
        cx.counters.handshakes += 1;
        self.next_slot ^= 1;
        self.other = self.current.replace(s);
        if !self.up {
            self.up = true;
            self.events
                .push_back(ChannelEvent::Up(self.peer.unwrap_or_default()));
        }
    }

    fn on_sealed(
        &mut self,
        cx: &mut Ctx<'_>,
        control: bool,
        slot: u8,
        counter: u64,
        msg: &mut [u8],
    ) -> Option<Range<usize>> {
        let in_current = self.current.as_ref().is_some_and(|s| s.slot == slot);
        let session = if in_current {
            self.current.as_mut()
        } else {
            self.other.as_mut().filter(|s| s.slot == slot)
        };
        let Some(session) = session else {
            cx.counters.opens_failed += 1;
            return None;
        };
        let range = match session.open(counter, msg) {
            Ok(r) => r,
            Err(OpenError::Forged) => {
                cx.counters.opens_failed += 1;
                return None;
            }
            Err(OpenError::Replayed) => {
                cx.counters.replays += 1;
                return None;
            }
        };
        // Anything the peer sealed with the session waiting for its confirmation
        // confirms it.
        if !in_current && self.initiator && self.pending.as_ref().is_some_and(|p| p.answered_us) {
            self.pending = None;
            if let Some(next) = self.other.take() {
                self.install(cx, next);
            }
        }
        if !control {
            return self.up.then_some(range);
        }
        if msg[range].first().copied().and_then(Control::from_byte) == Some(Control::Close) {
            self.done = true;
            self.events
                .push_back(ChannelEvent::Closed("the neighbour closed the flow"));
        }
        None
    }

    /// Seals the PDU in `buf` (which becomes the message to send); false if the flow
    /// has no session yet (or any more), and the PDU is lost as on a link.
    pub fn seal(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.seal_detached(buf) {
            Some(header) => {
                buf.splice(0..0, header);
                true
            }
            None => false,
        }
    }

    /// Seals the PDU in `buf` where it lies, its tag appended: the header to send
    /// before it (`None`: no session, and the PDU is lost as on a link).
    pub fn seal_detached(&mut self, buf: &mut Vec<u8>) -> Option<[u8; HEADER]> {
        let s = self
            .current
            .as_mut()
            .filter(|s| !self.done && !s.exhausted())?;
        let (header, tag) = s.seal_detached(false, buf);
        buf.extend_from_slice(&tag);
        Some(header)
    }

    /// Seals in place a PDU already framed as a sealed message (a relayed PDU, opened
    /// and changed in the buffer it came in): false as for [`Channel::seal`].
    pub fn seal_in_place(&mut self, msg: &mut [u8]) -> bool {
        match self
            .current
            .as_mut()
            .filter(|s| !self.done && !s.exhausted())
        {
            Some(s) => {
                s.seal(false, msg);
                true
            }
            None => false,
        }
    }

    /// An authenticated close for the peer (none if the flow has no session).
    pub fn close(&mut self) -> Option<Vec<u8>> {
        self.done = true;
        self.pending = None;
        self.answering.clear();
        self.current
            .as_mut()
            .map(|s| sealed_control(s, Control::Close))
    }

    /// The next message of the channel's own to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }

    /// True while there is something to say.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// True while there is something to send or to say.
    pub fn has_pending_output(&self) -> bool {
        !self.outbox.is_empty() || !self.events.is_empty()
    }

    /// The peer's key is no longer trusted: the flow ends now.
    pub fn distrust(&mut self, cx: &mut Ctx<'_>) -> Option<Vec<u8>> {
        let peer = self.peer?;
        let close = self.close();
        self.refuse(cx, peer);
        close
    }
}

fn sealed_control(s: &mut Session, c: Control) -> Vec<u8> {
    let mut m = vec![0u8; HEADER + 1 + TAG];
    m[HEADER] = c as u8;
    s.seal(true, &mut m);
    m
}

#[path = "channel_timers.rs"]
mod timers;

#[cfg(test)]
#[path = "channel_tests.rs"]
mod tests;

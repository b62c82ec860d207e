//! The secured N-1 ports of a node (issue 11): each N-1 flow of a secured DIF is a
//! [`Channel`], between the flow below and the DIF's IPC process. The IPC process
//! learns of the port only once the handshake proved a trusted peer; every PDU then
//! goes up opened and down sealed; a failed or refused handshake ends the flow (and
//! the join, or the kept adjacency, that wanted it) with its reason.

use std::collections::BTreeSet;
use std::ops::Range;

use crate::node::{DifId, Header, LinkAddr, LowerFlow, Node, NodeEvent, Transmit};
use crate::secure::{Channel, ChannelEvent, Counters, Ctx, PublicKey, SecureRng, Security};
use crate::{Instant, N1Port};

/// A secured DIF's policy and counters at this member.
#[derive(Debug)]
pub(crate) struct Guard {
    pub(crate) sec: Security,
    pub(crate) counters: Counters,
}

/// At most this many N-1 ports of a DIF whose peer has not finished its handshake;
/// a new one drops the oldest.
pub const MAX_UNPROVEN: usize = 64;

impl Node {
    /// Seeds the generator of handshakes' ephemeral keys (32 bytes from the OS in a
    /// real driver; a node with a secured DIF and no seed cannot make handshakes).
    pub fn seed_security(&mut self, seed: [u8; 32]) {
        self.secure_rng = Some(SecureRng::from_seed(seed));
    }

    /// The counters of a secured DIF (`None`: it is open).
    pub fn security_counters(&self, dif: DifId) -> Option<Counters> {
        self.difs.get(dif.0)?.guard.as_ref().map(|g| g.counters)
    }

    /// The key of the neighbour on `port`, if its DIF is secured and it proved it.
    pub fn neighbor_key(&self, port: N1Port) -> Option<PublicKey> {
        self.channels.get(&port)?.peer()
    }

    /// Replaces the keys DIF `dif` trusts: adjacencies with a key no longer trusted
    /// end now (with an authenticated close), and it is refused at its next attempt.
    pub fn set_trusted(&mut self, now: Instant, dif: DifId, keys: BTreeSet<PublicKey>) {
        let Some(g) = self.difs.get_mut(dif.0).and_then(|d| d.guard.as_mut()) else {
            return;
        };
        g.sec.trusted = keys;
        let gone: Vec<N1Port> = self
            .channels
            .iter()
            .filter(|(p, c)| {
                self.n1.get(p).is_some_and(|(d, _)| *d == dif)
                    && c.peer().is_some_and(|k| !g.sec.trusts(&k))
            })
            .map(|(p, _)| *p)
            .collect();
        for port in gone {
            // An authenticated close for the peer, then the channel's Refused ends the
            // adjacency (see `on_channel_event`).
            let close = self
                .guard_ctx(now, port, |ch, cx| ch.distrust(cx))
                .flatten();
            if let (Some(msg), Some(&(_, below))) = (close, self.n1.get(&port)) {
                self.send_below(now, below, msg);
            }
            self.guard_events(now);
        }
    }

    /// Runs `f` on the channel of `port` with its DIF's context.
    fn guard_ctx<T>(
        &mut self,
        now: Instant,
        port: N1Port,
        f: impl FnOnce(&mut Channel, &mut Ctx<'_>) -> T,
    ) -> Option<T> {
        let (dif, _) = *self.n1.get(&port)?;
        let ch = self.channels.get_mut(&port)?;
        let g = self.difs[dif.0].guard.as_mut()?;
        let rng = self.secure_rng.as_mut()?;
        let mut cx = Ctx {
            sec: &g.sec,
            rng,
            counters: &mut g.counters,
            now,
        };
        Some(f(ch, &mut cx))
    }

    /// True if DIF `dif` is secured.
    pub(crate) fn is_secured(&self, dif: DifId) -> bool {
        self.difs[dif.0].guard.is_some()
    }

    /// A new N-1 port of a secured DIF on the flow `below`: its handshake starts (we
    /// made the flow) or is awaited.
    pub(crate) fn guard_port(
        &mut self,
        now: Instant,
        dif: DifId,
        port: N1Port,
        below: LowerFlow,
        initiator: bool,
    ) {
        if let LowerFlow::Shim(l, id) = below {
            self.shims[l.0].protect(id);
        }
        if !initiator {
            self.drop_unproven(now, dif);
        }
        // Fail closed: a port with no channel never reaches the IPC process.
        let (Some(g), Some(rng)) = (self.difs[dif.0].guard.as_mut(), self.secure_rng.as_mut())
        else {
            return self.refuse_n1(now, port);
        };
        let ch = if initiator {
            let mut cx = Ctx {
                sec: &g.sec,
                rng,
                counters: &mut g.counters,
                now,
            };
            Channel::initiator(&mut cx)
        } else {
            Channel::responder(now + g.sec.limits.unproven_for)
        };
        self.channels.insert(port, ch);
    }

    /// Past [`MAX_UNPROVEN`] ports of `dif` whose peer has not proved itself, the
    /// oldest is dropped without a word.
    fn drop_unproven(&mut self, now: Instant, dif: DifId) {
        let unproven: Vec<(N1Port, bool)> = self
            .unproven(dif)
            .map(|(p, c)| (p, c.has_shown_itself()))
            .collect();
        if unproven.len() >= MAX_UNPROVEN {
            // The oldest that sent nothing verifiable goes first: spoofed allocations
            // cannot push out a peer in the middle of its handshake.
            let victim = unproven
                .iter()
                .find(|(_, shown)| !shown)
                .unwrap_or(&unproven[0]);
            self.drop_guarded(now, victim.0);
        }
    }

    /// Forgets a secured port quietly (its peer proved nothing, or was refused).
    fn drop_guarded(&mut self, now: Instant, port: N1Port) {
        self.channels.remove(&port);
        self.refuse_n1(now, port);
    }

    /// Opens a message that came up secured `port`, in place: the PDU's range in
    /// `msg`, if it carried one.
    pub(crate) fn guard_open(
        &mut self,
        now: Instant,
        port: N1Port,
        msg: &mut [u8],
    ) -> Option<Range<usize>> {
        if !self.admit(now, port, msg) {
            return None;
        }
        self.guard_ctx(now, port, |ch, cx| {
            let r = ch.handle(cx, msg);
            ch.rekey_if_due(cx);
            r
        })?
    }

    /// Runs `seal` on the channel of secured `port`, then starts rekeying if the
    /// session is due (a bound of messages needs no timer).
    fn sealing<T>(
        &mut self,
        now: Instant,
        port: N1Port,
        seal: impl FnOnce(&mut Channel) -> T,
    ) -> Option<T> {
        self.guard_ctx(now, port, |ch, cx| {
            let out = seal(ch);
            ch.rekey_if_due(cx);
            out
        })
    }

    /// Seals the PDU in `buf` for secured `port`, its header in `buf` too (for a flow
    /// of a DIF below, which takes one buffer): false if it cannot go (no session).
    pub(crate) fn guard_seal(&mut self, now: Instant, port: N1Port, buf: &mut Vec<u8>) -> bool {
        self.sealing(now, port, |ch| ch.seal(buf)).unwrap_or(false)
    }

    /// Seals the PDU in `buf` for secured `port` where it lies (its tag appended): the
    /// header to send before it, `None` if it cannot go.
    pub(crate) fn guard_seal_detached(
        &mut self,
        now: Instant,
        port: N1Port,
        buf: &mut Vec<u8>,
    ) -> Option<[u8; crate::secure::wire::HEADER]> {
        self.sealing(now, port, |ch| ch.seal_detached(buf))
            .flatten()
    }

    /// Seals in place a relayed PDU already framed in `msg`.
    pub(crate) fn guard_seal_in_place(
        &mut self,
        now: Instant,
        port: N1Port,
        msg: &mut [u8],
    ) -> bool {
        self.sealing(now, port, |ch| ch.seal_in_place(msg))
            .unwrap_or(false)
    }

    /// Before a secured port goes: an authenticated close for its peer.
    pub(crate) fn guard_close(&mut self, now: Instant, port: N1Port) {
        let Some(mut ch) = self.channels.remove(&port) else {
            return;
        };
        if let (Some(msg), Some(&(_, below))) = (ch.close(), self.n1.get(&port)) {
            self.send_below(now, below, msg);
        }
    }

    /// Sends a channel's own message down the flow `below`.
    fn send_below(&mut self, now: Instant, below: LowerFlow, msg: Vec<u8>) {
        match below {
            LowerFlow::Shim(l, id) => {
                if let Some((to, header)) = self.shims[l.0].data_header(id) {
                    self.guard_out.push_back((l, to, header, msg));
                }
            }
            LowerFlow::Dif(d, p) => {
                let _ = self.difs[d.0].ipcp.write(now, p, &msg);
            }
        }
    }

    /// The next message of the channels' own (handshakes, confirmations, closes).
    pub(crate) fn guard_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let ports: Vec<N1Port> = self
            .channels
            .iter()
            .filter(|(_, c)| c.has_pending_output())
            .map(|(p, _)| *p)
            .collect();
        for port in ports {
            let Some(&(_, below)) = self.n1.get(&port) else {
                continue;
            };
            while let Some(msg) = self
                .channels
                .get_mut(&port)
                .and_then(Channel::poll_transmit)
            {
                self.send_below(now, below, msg);
            }
        }
        let (link, to, header, msg): (_, LinkAddr, Header, _) = self.guard_out.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&msg);
        Some(Transmit {
            link,
            to,
            header,
            payload: 0..buf.len(),
        })
    }

    /// Handles what the channels say; true if any said something.
    pub(crate) fn guard_events(&mut self, now: Instant) -> bool {
        let mut moved = false;
        // (Called on every turn of the node's event loop: nothing allocated when
        // nothing is to be said.)
        let ports: Vec<N1Port> = self
            .channels
            .iter()
            .filter(|(_, c)| c.has_events())
            .map(|(p, _)| *p)
            .collect();
        for port in ports {
            while let Some(ev) = self.channels.get_mut(&port).and_then(Channel::poll_event) {
                moved = true;
                self.on_channel_event(now, port, ev);
            }
        }
        moved
    }

    /// The handshake on `port` failed for a reason seen outside its channel.
    pub(crate) fn guard_failed(&mut self, now: Instant, port: N1Port, why: &'static str) {
        self.on_channel_event(now, port, ChannelEvent::Failed(why));
    }

    fn on_channel_event(&mut self, now: Instant, port: N1Port, ev: ChannelEvent) {
        let Some(&(dif, below)) = self.n1.get(&port) else {
            return;
        };
        let initiator = self.channels.get(&port).is_some_and(Channel::is_initiator);
        let was_up = self.channels.get(&port).is_some_and(Channel::is_up);
        let failed = matches!(ev, ChannelEvent::Failed(_));
        let why = match ev {
            ChannelEvent::Up(key) => {
                let mtu = self
                    .lower_max_sdu(below.layer())
                    .saturating_sub(crate::secure::wire::OVERHEAD);
                let ipcp = &mut self.difs[dif.0].ipcp;
                ipcp.add_n1_port(now, port, mtu, initiator);
                ipcp.set_n1_key(port, key);
                return;
            }
            ChannelEvent::Refused(key) => format!(
                "the neighbour's key {} is not trusted",
                crate::secure::fingerprint(&key)
            ),
            ChannelEvent::Failed(why) => why.to_owned(),
            ChannelEvent::Closed(_) => {
                // The IPC process knew the port: it loses the neighbour as it would
                // (and says so).
                self.channels.remove(&port);
                self.n1_gone_quietly(now, port);
                return;
            }
        };
        // A peer that proved nothing costs no more than dropping it (a flood of them
        // would flood the log too); refusals and our own failures are said.
        if initiator || !failed {
            self.events.push_back(NodeEvent::NeighborRefused {
                dif,
                why: why.clone(),
            });
        }
        if was_up {
            // The IPC process knew the port (a key no longer trusted, or changed at a
            // rekeying): it loses the neighbour now, and a kept adjacency comes back.
            self.channels.remove(&port);
            return self.n1_gone_quietly(now, port);
        }
        self.drop_guarded(now, port);
        if initiator {
            if self.difs[dif.0].enrolling == Some(below) {
                self.difs[dif.0].enrolling = None;
                self.join_failed(now, dif, why);
            } else {
                self.keep_lost(now, dif, port);
            }
        }
    }

    /// When the channels' timers run next.
    pub(crate) fn guard_timeout(&self) -> Option<Instant> {
        let mut t = None;
        for (port, ch) in &self.channels {
            let Some((dif, _)) = self.n1.get(port) else {
                continue;
            };
            if let Some(g) = &self.difs[dif.0].guard {
                t = crate::time::earliest(t, ch.poll_timeout(&g.sec));
            }
        }
        t
    }

    /// Runs the channels' timers that are due.
    pub(crate) fn guard_handle_timeout(&mut self, now: Instant) {
        let due: Vec<N1Port> = self
            .channels
            .iter()
            .filter(|(p, c)| {
                let guard = self
                    .n1
                    .get(p)
                    .and_then(|(d, _)| self.difs[d.0].guard.as_ref());
                guard.is_some_and(|g| c.poll_timeout(&g.sec).is_some_and(|t| t <= now))
            })
            .map(|(p, _)| *p)
            .collect();
        for port in due {
            self.guard_ctx(now, port, |ch, cx| ch.handle_timeout(cx));
        }
    }

    /// True while a channel has something to send or say.
    pub(crate) fn guard_pending(&self) -> bool {
        !self.guard_out.is_empty() || self.channels.values().any(Channel::has_pending_output)
    }
}

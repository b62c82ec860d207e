//! Handshakes under load (issue 11): what a flood of valid initiations may cost a
//! secured DIF's member. A spoofed source never gets this far (it never learns the
//! shim flow id that the allocation's answer, sent to the real address, carries), so
//! each initiation comes from a peer at its address. While a DIF holds many ports
//! whose peers have not finished a handshake, each peer address may start only a few
//! handshakes a second; the rest are dropped before any Diffie-Hellman work, and
//! counted.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::node::{DifId, LinkAddr, LowerFlow, Node};
use crate::secure::wire::INITIATION;
use crate::secure::Channel;
use crate::{Instant, N1Port};

/// Unproven ports of a DIF from which on it is under load.
pub const LOAD: usize = 16;
/// Handshakes a peer address may start per second under load.
pub const PER_SECOND: u32 = 8;
/// Peer addresses remembered; past this, the oldest windows go.
const REMEMBERED: usize = 4096;

/// Handshakes started per peer address in the current one-second window.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    by_peer: BTreeMap<LinkAddr, (Instant, u32)>,
}

impl Node {
    /// True if the message `msg` on secured `port` may be handled: anything but an
    /// initiation, or an initiation from a peer address within its budget (or while
    /// the DIF is not under load).
    pub(crate) fn admit(&mut self, now: Instant, port: N1Port, msg: &[u8]) -> bool {
        if msg.first() != Some(&INITIATION) {
            return true;
        }
        let Some(&(dif, LowerFlow::Shim(l, id))) = self.n1.get(&port) else {
            return true; // a flow of a DIF below: its own DIF answers for its peers
        };
        if self.unproven(dif).count() < LOAD {
            return true;
        }
        let Some((peer, _)) = self.shims[l.0].data_header(id) else {
            return true;
        };
        let t = &mut self.throttle.by_peer;
        if t.len() >= REMEMBERED && !t.contains_key(&peer) {
            t.retain(|_, (start, _)| {
                now.saturating_duration_since(*start) < Duration::from_secs(1)
            });
        }
        // Past the addresses it can remember, a new one gets no handshake this second.
        let room = t.len() < REMEMBERED || t.contains_key(&peer);
        let allowed = room && {
            let w = t.entry(peer).or_insert((now, 0));
            if now.saturating_duration_since(w.0) >= Duration::from_secs(1) {
                *w = (now, 0);
            }
            w.1 = w.1.saturating_add(1);
            w.1 <= PER_SECOND
        };
        if !allowed {
            if let Some(g) = self.difs[dif.0].guard.as_mut() {
                g.counters.handshakes_limited += 1;
            }
        }
        allowed
    }

    /// The ports of `dif` whose peer has not finished a handshake, oldest first.
    pub(crate) fn unproven(&self, dif: DifId) -> impl Iterator<Item = (N1Port, &Channel)> {
        self.channels
            .iter()
            .filter(move |(p, c)| !c.is_up() && self.n1.get(p).is_some_and(|(d, _)| *d == dif))
            .map(|(p, c)| (*p, c))
    }
}

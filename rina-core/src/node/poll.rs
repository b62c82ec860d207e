//! The driver's side of a node: what arrives on its links, its timers, and what it
//! has to send and to say.

use crate::node::link::ShimLayer;
use crate::node::{DifId, Header, LinkAddr, LinkId, LowerFlow, Node, NodeEvent, Transmit};
use crate::time::earliest;
use crate::Instant;

impl Node {
    /// Handles a datagram or frame that arrived on `link` from `from`. A PDU this
    /// member relays at once over a link comes back as a [`Transmit`] whose payload is
    /// in `bytes` (changed in place): send it before the next call.
    pub fn handle_link(
        &mut self,
        now: Instant,
        link: LinkId,
        from: LinkAddr,
        bytes: &mut [u8],
    ) -> Option<Transmit> {
        let base = bytes.as_ptr() as usize;
        let (id, range) = {
            let (id, pdu) = self.shims.get_mut(link.0)?.handle_input(now, from, bytes)?;
            let start = pdu.as_ptr() as usize - base;
            (id, start..start + pdu.len())
        };
        let port = *self.by_lower.get(&LowerFlow::Shim(link, id))?;
        let (dif, _) = *self.n1.get(&port)?;
        // A secured port's message is opened in place: the PDU is inside it.
        let secured = self.channels.contains_key(&port);
        let pdu_range = if secured {
            let r = self.guard_open(now, port, &mut bytes[range.clone()])?;
            range.start + r.start..range.start + r.end
        } else {
            range.clone()
        };
        let pdu = &mut bytes[pdu_range.clone()];
        // A PDU for another member goes on at once, from this buffer (sealed again in
        // the same place for a secured port: the DIF's ports are all secured).
        let out = self.difs[dif.0].ipcp.handle_pdu_in_place(now, port, pdu)?;
        let payload = if secured {
            if !self.guard_seal_in_place(now, out, &mut bytes[range.clone()]) {
                return None;
            }
            range
        } else {
            pdu_range
        };
        match *self.n1.get(&out)? {
            (_, LowerFlow::Shim(l, id)) => {
                let (to, header) = self.shims[l.0].data_header(id)?;
                Some(Transmit {
                    link: l,
                    to,
                    header,
                    payload,
                })
            }
            (_, LowerFlow::Dif(low, p)) => {
                // A full flow below loses it, as a link would.
                let _ = self.difs[low.0].ipcp.write(now, p, &bytes[payload]);
                None
            }
        }
    }

    /// The link said nothing listens at `peer`: flows being made to it fail at once.
    pub fn peer_unreachable(&mut self, link: LinkId, peer: LinkAddr) {
        if let Some(s) = self.shims.get_mut(link.0) {
            s.peer_unreachable(peer);
        }
    }

    /// The next datagram or frame to send, its payload in `buf` (the DIFs on top
    /// first, so what they hand to the DIFs below goes out in the same pass).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some(t) = self.guard_transmit(now, buf) {
            return Some(t);
        }
        for d in (0..self.difs.len()).rev() {
            while let Some(port) = self.difs[d].ipcp.poll_transmit(now, buf) {
                let secured = self.channels.contains_key(&port);
                match self.n1.get(&port) {
                    Some(&(_, LowerFlow::Shim(l, id))) => {
                        // A flow not up yet loses it, as a link would.
                        if let Some((to, mut header)) = self.shims[l.0].data_header(id) {
                            // A secured port seals it where it lies: the seal header
                            // goes out after the shim's (or it is lost, no session yet).
                            if secured {
                                let Some(h) = self.guard_seal_detached(now, port, buf) else {
                                    continue;
                                };
                                header.push(&h);
                            }
                            let payload = 0..buf.len();
                            return Some(Transmit {
                                link: l,
                                to,
                                header,
                                payload,
                            });
                        }
                    }
                    Some(&(_, LowerFlow::Dif(low, p))) => {
                        if secured && !self.guard_seal(now, port, buf) {
                            continue;
                        }
                        let _ = self.difs[low.0].ipcp.write(now, p, buf);
                    }
                    None => {}
                }
            }
        }
        for (i, s) in self.shims.iter_mut().enumerate() {
            if let Some((to, bytes)) = s.poll_transmit() {
                buf.clear();
                buf.extend_from_slice(&bytes);
                return Some(Transmit {
                    link: LinkId(i),
                    to,
                    header: Header::EMPTY,
                    payload: 0..buf.len(),
                });
            }
        }
        None
    }

    /// When [`Node::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = None;
        for s in &self.shims {
            t = earliest(t, s.poll_timeout());
        }
        for d in &self.difs {
            t = earliest(t, d.ipcp.poll_timeout());
            t = earliest(t, d.retry_at);
        }
        t = earliest(t, self.guard_timeout());
        earliest(t, self.keep_deadline())
    }

    /// Runs what is due: attempts to join and to set adjacencies up again, and the
    /// protocols' timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start_enrollments(now);
        self.lower_failed(now);
        self.maintain_adjacencies(now);
        for s in &mut self.shims {
            s.handle_timeout(now);
        }
        self.guard_handle_timeout(now);
        for d in &mut self.difs {
            if d.ipcp.poll_timeout().is_some_and(|t| t <= now) {
                d.ipcp.handle_timeout(now);
            }
        }
    }

    /// The next event for the driver. Handles on the way what the node handles
    /// itself (N-1 flows, enrollment, the SDUs of the N-1 flows of DIFs over DIFs).
    pub fn poll_event(&mut self, now: Instant) -> Option<NodeEvent> {
        // Bounded, so that the driver's other work gets turns; what is left shows in
        // `has_pending_output`.
        for _ in 0..64 {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            let mut moved = false;
            for l in 0..self.shims.len() {
                while let Some(n) = self.shims[l].poll_notice() {
                    moved = true;
                    self.on_shim_notice(now, LinkId(l), n);
                }
            }
            for d in 0..self.difs.len() {
                while let Some(ev) = self.difs[d].ipcp.poll_event() {
                    moved = true;
                    self.on_ipcp_event(now, DifId(d), ev);
                }
            }
            moved |= self.receive_lower(now);
            moved |= self.guard_events(now);
            if !moved && self.events.is_empty() {
                return None;
            }
        }
        self.events.pop_front()
    }

    /// True while the node has something for its driver (events, PDUs, datagrams):
    /// the driver must not sleep.
    pub fn has_pending_output(&self) -> bool {
        !self.events.is_empty()
            || !self.lower_readable.is_empty()
            || self.difs.iter().any(|d| d.ipcp.has_pending_output())
            || self.shims.iter().any(ShimLayer::has_pending_output)
            || self.guard_pending()
    }
}

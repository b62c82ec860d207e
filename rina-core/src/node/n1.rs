//! The N-1 port table of a node: the flows below (shim flows, and flows of the normal
//! DIFs below for DIFs over DIFs) that carry each DIF's PDUs. Their allocation,
//! arrival and loss, and the SDUs that come up the flows of a DIF below.

use crate::ipcp::{AllocError, Event, FlowKind, ReadResult};
use crate::node::dif::KeepState;
use crate::node::link::Notice;
use crate::node::{DifId, Layer, LinkId, LowerFlow, Node};
use crate::shim::{AllocFailure, ShimEvent};
use crate::wire::PCI_LEN;
use crate::{Instant, N1Port};

impl Node {
    /// A new N-1 port of `dif` on the flow `below`.
    fn bind_n1(&mut self, dif: DifId, below: LowerFlow) -> N1Port {
        self.next_n1 = self.next_n1.wrapping_add(1);
        let port = N1Port(self.next_n1);
        self.n1.insert(port, (dif, below));
        self.by_lower.insert(below, port);
        port
    }

    /// Forgets an N-1 port and releases the flow below it.
    pub(crate) fn release_n1(&mut self, now: Instant, port: N1Port) {
        // A secured flow ends with a sealed close (its peer ignores a shim release).
        let secured = self.channels.contains_key(&port);
        self.guard_close(now, port);
        if let Some((_, below)) = self.n1.remove(&port) {
            self.by_lower.remove(&below);
            self.lower_readable.remove(&below);
            match below {
                LowerFlow::Shim(s, id) if secured => self.shims[s.0].forget(id),
                _ => self.release_lower(now, below),
            }
        }
    }

    /// A secured N-1 port whose peer closed it: the IPC process loses the neighbour;
    /// the flow below is forgotten (the peer already has).
    pub(crate) fn n1_gone_quietly(&mut self, now: Instant, port: N1Port) {
        let Some((dif, below)) = self.n1.remove(&port) else {
            return;
        };
        self.by_lower.remove(&below);
        self.lower_readable.remove(&below);
        self.difs[dif.0].ipcp.remove_n1_port(now, port);
        match below {
            LowerFlow::Shim(s, id) => self.shims[s.0].forget(id),
            LowerFlow::Dif(d, p) => self.difs[d.0].ipcp.deallocate(now, p),
        }
    }

    /// An N-1 port whose peer never said who it is is dropped: its flow below is
    /// forgotten without a word to the peer (a shim flow), or released (a flow of a
    /// DIF below, whose peer that DIF knows).
    pub(crate) fn refuse_n1(&mut self, now: Instant, port: N1Port) {
        self.channels.remove(&port);
        let Some((_, below)) = self.n1.remove(&port) else {
            return;
        };
        self.by_lower.remove(&below);
        self.lower_readable.remove(&below);
        match below {
            LowerFlow::Shim(s, id) => self.shims[s.0].forget(id),
            LowerFlow::Dif(d, p) => self.difs[d.0].ipcp.deallocate(now, p),
        }
    }

    /// Releases a flow of the layer below.
    fn release_lower(&mut self, now: Instant, below: LowerFlow) {
        match below {
            LowerFlow::Shim(s, id) => self.shims[s.0].deallocate(id),
            LowerFlow::Dif(d, p) => self.difs[d.0].ipcp.deallocate(now, p),
        }
    }

    /// The largest PDU a flow of layer `lower` carries whole.
    pub(crate) fn lower_max_sdu(&self, lower: Layer) -> usize {
        match lower {
            Layer::Link(s) => self.shims[s.0].max_sdu(),
            Layer::Dif(d) => self.difs[d.0]
                .ipcp
                .max_pdu()
                .map_or(1400, |m| m.saturating_sub(PCI_LEN)),
        }
    }

    /// True if `f` is being made for a DIF above to enroll or keep an adjacency.
    fn is_n1_attempt(&self, f: LowerFlow) -> bool {
        self.difs.iter().any(|d| d.enrolling == Some(f)) || self.keep_allocating(f).is_some()
    }

    /// Handles what a shim layer reports: N-1 flows and name resolution.
    pub(crate) fn on_shim_notice(&mut self, now: Instant, link: LinkId, notice: Notice) {
        let ev = match notice {
            Notice::Flow(ev) => ev,
            Notice::Resolved(name) => return self.resolved(now, link, &name),
            Notice::Unresolved(name) => return self.unresolved(now, link, &name),
        };
        match ev {
            ShimEvent::Allocated { id } => self.n1_allocated(now, LowerFlow::Shim(link, id)),
            ShimEvent::AllocationFailed { id, why } => {
                self.n1_failed(now, LowerFlow::Shim(link, id), why);
            }
            ShimEvent::Incoming { id, local, .. } => {
                match self.upper_for(Layer::Link(link), &local) {
                    Some(dif) => self.n1_incoming(now, dif, LowerFlow::Shim(link, id)),
                    None => self.shims[link.0].deallocate(id),
                }
            }
            ShimEvent::Deallocated { id } => self.n1_gone(now, LowerFlow::Shim(link, id)),
        }
    }

    /// An event of DIF `low` about one of its flows that is an N-1 flow of a DIF
    /// above, handled here; false if the event is about something else.
    pub(crate) fn on_lower_dif_event(&mut self, now: Instant, low: DifId, ev: &Event) -> bool {
        match *ev {
            Event::FlowAllocated { port } => {
                let f = LowerFlow::Dif(low, port);
                if !self.is_n1_attempt(f) {
                    return false;
                }
                self.n1_allocated(now, f);
            }
            Event::FlowAllocationFailed { port, error } => {
                let f = LowerFlow::Dif(low, port);
                if !self.is_n1_attempt(f) {
                    return false;
                }
                let why = if error == AllocError::NoSuchApplication {
                    AllocFailure::Refused
                } else {
                    AllocFailure::TimedOut
                };
                self.n1_failed(now, f, why);
            }
            Event::IncomingFlow {
                port,
                ref local_app,
                ref remote_app,
                kind: FlowKind::Unreliable,
                ..
            } => {
                let Some(up) = self.upper_for(Layer::Dif(low), local_app) else {
                    return false;
                };
                // A member is not its own neighbour.
                let me = *remote_app == self.difs[up.0].ipcp.config().name;
                self.difs[low.0].ipcp.answer_flow(now, port, !me);
                if !me {
                    self.n1_incoming(now, up, LowerFlow::Dif(low, port));
                }
            }
            Event::FlowClosed { port, .. } => {
                let f = LowerFlow::Dif(low, port);
                if !self.by_lower.contains_key(&f) {
                    return false;
                }
                self.n1_gone(now, f);
            }
            Event::Readable { port } => {
                let f = LowerFlow::Dif(low, port);
                if !self.by_lower.contains_key(&f) {
                    return false;
                }
                self.lower_readable.insert(f);
            }
            Event::Writable { port } => {
                return self.by_lower.contains_key(&LowerFlow::Dif(low, port));
            }
            _ => return false,
        }
        true
    }

    /// The N-1 flow `f`, asked for to enroll or for a kept adjacency, is up: it becomes
    /// an N-1 port of its DIF, which starts enrolling or connecting on it.
    fn n1_allocated(&mut self, now: Instant, f: LowerFlow) {
        let enrolling = self.difs.iter().position(|d| d.enrolling == Some(f));
        let (dif, keep) = match (enrolling, self.keep_allocating(f)) {
            // The adjacency enrolled through is the first one kept.
            (Some(dif), _) => (DifId(dif), self.difs[dif].enroll.as_ref().map(|_| 0)),
            (None, Some((dif, k))) => (dif, Some(k)),
            (None, None) => return self.release_lower(now, f),
        };
        let port = self.bind_n1(dif, f);
        let mtu = self.lower_max_sdu(f.layer());
        let d = &mut self.difs[dif.0];
        if let Some(k) = keep.and_then(|k| d.keep.get_mut(k)) {
            k.state = KeepState::Up(port);
        }
        // A member already enrolled (joining again after losing every neighbour) says
        // hello on the new port rather than enrolling: no `Enrolled` will end this
        // attempt, so it ends here.
        if d.ipcp.is_enrolled() && d.enrolling == Some(f) {
            d.enrolling = None;
        }
        if d.guard.is_some() {
            return self.guard_port(now, dif, port, f, true);
        }
        d.ipcp.add_n1_port(now, port, mtu, true);
    }

    /// The N-1 flow `f` could not be made.
    fn n1_failed(&mut self, now: Instant, f: LowerFlow, why: AllocFailure) {
        if let Some((d, k)) = self.keep_allocating(f) {
            return self.keep_down(now, d, k);
        }
        let Some(i) = self.difs.iter().position(|d| d.enrolling == Some(f)) else {
            return;
        };
        let d = &self.difs[i];
        let peer = d
            .enroll
            .as_ref()
            .map_or_else(|| "the neighbour".to_owned(), |p| p.peer.to_string());
        let why = match why {
            AllocFailure::Refused => format!("{peer} does not serve DIF {}", d.name),
            AllocFailure::TimedOut => format!("no answer from {peer}"),
            AllocFailure::NothingThere => format!("nothing listens at {peer} (port unreachable)"),
        };
        self.join_failed(now, DifId(i), why);
    }

    /// A neighbour made the N-1 flow `f` to DIF `dif`'s member.
    fn n1_incoming(&mut self, now: Instant, dif: DifId, f: LowerFlow) {
        let port = self.bind_n1(dif, f);
        if self.is_secured(dif) {
            return self.guard_port(now, dif, port, f, false);
        }
        let mtu = self.lower_max_sdu(f.layer());
        self.difs[dif.0].ipcp.add_n1_port(now, port, mtu, false);
    }

    /// The N-1 flow `f` is gone (released below): so is its N-1 port.
    fn n1_gone(&mut self, now: Instant, f: LowerFlow) {
        self.lower_readable.remove(&f);
        // A secured port whose handshake had not finished: the IPC process never knew
        // it; the attempt that made it fails.
        if let Some(&port) = self.by_lower.get(&f) {
            if self.channels.get(&port).is_some_and(|c| !c.is_up()) {
                return self.guard_failed(now, port, "the flow below closed");
            }
            self.channels.remove(&port);
        }
        if let Some(port) = self.by_lower.remove(&f) {
            if let Some((dif, _)) = self.n1.remove(&port) {
                self.difs[dif.0].ipcp.remove_n1_port(now, port);
            }
        }
    }

    /// Hands the SDUs waiting on the N-1 flows of normal DIFs that turned readable to
    /// the DIFs above them; true if any moved.
    pub(crate) fn receive_lower(&mut self, now: Instant) -> bool {
        let mut moved = false;
        for f in std::mem::take(&mut self.lower_readable) {
            let (Some(&port), LowerFlow::Dif(low, p)) = (self.by_lower.get(&f), f) else {
                continue;
            };
            let Some(&(up, _)) = self.n1.get(&port) else {
                continue;
            };
            // Bounded per flow and turn: a flow with more stays listed (its `Readable`
            // comes again only after a read that finds nothing).
            let mut drained = false;
            for _ in 0..256 {
                match self.difs[low.0].ipcp.read(now, p) {
                    ReadResult::Sdu(mut pdu) => {
                        moved = true;
                        let range = if self.channels.contains_key(&port) {
                            match self.guard_open(now, port, &mut pdu) {
                                Some(r) => r,
                                None => continue,
                            }
                        } else {
                            0..pdu.len()
                        };
                        self.difs[up.0].ipcp.handle_pdu(now, port, &pdu[range]);
                    }
                    ReadResult::WouldBlock | ReadResult::Eof | ReadResult::Closed => {
                        drained = true;
                        break;
                    }
                }
            }
            if !drained {
                self.lower_readable.insert(f);
            }
        }
        moved
    }
}

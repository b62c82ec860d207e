//! The N-1 flows of the normal DIFs: shim flows and flows of the normal DIFs below
//! (recursion). Their allocation, arrival and loss, and the PDUs that cross them, up
//! (a PDU received below is handed to the DIF above) and down (a PDU a DIF sends goes
//! out as an SDU of the flow below).

use rina_core::ipcp::{AllocError, Event, ReadResult};
use rina_core::shim::{AllocFailure, ShimEvent};
use rina_core::Instant;

use super::Driver;
use crate::shim::ShimNotice;
use crate::stack::{KeepState, Lower, LowerFlow};

impl Driver {
    /// Receives what shim `shim` has and hands each PDU to the DIF above.
    pub(super) fn receive_shim(&mut self, now: Instant, shim: usize) {
        // Bounded, so one busy link cannot starve the rest of the loop.
        for _ in 0..256 {
            let Some(s) = self.stack.shims.get_mut(shim) else {
                return;
            };
            let (id, pdu) = match s.receive(now, &mut self.rx) {
                Ok(Some(Some(r))) => r,
                Ok(Some(None)) => continue,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("shim {}: receive failed: {e}", s.name);
                    return;
                }
            };
            let Some(&port) = self.stack.by_lower.get(&LowerFlow::Shim(shim, id)) else {
                continue;
            };
            let Some(&(dif, _)) = self.stack.n1.get(&port) else {
                continue;
            };
            let pdu = &mut self.rx[pdu];
            // A PDU for another member goes on at once, from this buffer.
            if let Some(out) = self.stack.difs[dif]
                .ipcp
                .handle_pdu_in_place(now, port, pdu)
            {
                self.stack.send_n1(now, out, pdu);
            }
        }
        // More may be waiting; come back after the rest of the loop has had a turn.
        let _ = rustix::io::write(&self.shared.waker, &1u64.to_ne_bytes());
    }

    /// Hands the SDUs waiting on the N-1 flows of normal DIFs that turned readable to
    /// the DIFs above them.
    pub(super) fn receive_lower_dif(&mut self, now: Instant) -> bool {
        let mut progress = false;
        for f in std::mem::take(&mut self.lower_readable) {
            let (Some(&port), LowerFlow::Dif(low, p)) = (self.stack.by_lower.get(&f), f) else {
                continue;
            };
            let Some(&(up, _)) = self.stack.n1.get(&port) else {
                continue;
            };
            // Bounded per flow and turn, as for a shim: a flow with more stays listed
            // (its `Readable` comes again only after a read that finds nothing).
            let mut drained = false;
            for _ in 0..256 {
                match self.stack.difs[low].ipcp.read(now, p) {
                    ReadResult::Sdu(pdu) => {
                        progress = true;
                        self.stack.difs[up].ipcp.handle_pdu(now, port, &pdu);
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
        progress
    }

    /// Sends every PDU and shim message that is ready: the DIFs on top first, so that
    /// what they hand to the DIFs below goes out in the same pass.
    pub(super) fn flush(&mut self, now: Instant) -> bool {
        let mut progress = false;
        for dif in (0..self.stack.difs.len()).rev() {
            while let Some(port) = self.stack.difs[dif].ipcp.poll_transmit(now, &mut self.tx) {
                progress = true;
                self.stack.send_n1(now, port, &self.tx);
            }
        }
        for s in &mut self.stack.shims {
            progress |= s.flush();
        }
        progress
    }

    /// Handles what the shims report: N-1 flows and name resolution.
    pub(super) fn handle_shim_events(&mut self, now: Instant) -> bool {
        let mut progress = false;
        for shim in 0..self.stack.shims.len() {
            while let Some(notice) = self.stack.shims[shim].poll_notice() {
                progress = true;
                let ev = match notice {
                    ShimNotice::Flow(ev) => ev,
                    ShimNotice::Resolved(name) => {
                        self.stack.resolved(now, shim, &name);
                        continue;
                    }
                    ShimNotice::Unresolved(name) => {
                        self.stack.unresolved(now, shim, &name);
                        self.fail_pending(now);
                        continue;
                    }
                };
                match ev {
                    ShimEvent::Allocated { id } => {
                        self.n1_allocated(now, LowerFlow::Shim(shim, id))
                    }
                    ShimEvent::AllocationFailed { id, why } => {
                        self.n1_failed(now, LowerFlow::Shim(shim, id), why);
                    }
                    ShimEvent::Incoming { id, local, .. } => {
                        match self.stack.upper_for(Lower::Shim(shim), &local) {
                            Some(dif) => self.n1_incoming(now, dif, LowerFlow::Shim(shim, id)),
                            None => self.stack.shims[shim].deallocate(id),
                        }
                    }
                    ShimEvent::Deallocated { id } => self.n1_gone(now, LowerFlow::Shim(shim, id)),
                }
            }
        }
        progress
    }

    /// An event of DIF `low` about one of its flows that is an N-1 flow of a DIF
    /// above, handled here; false if the event is about something else.
    pub(super) fn on_lower_dif_event(&mut self, now: Instant, low: usize, ev: &Event) -> bool {
        match *ev {
            Event::FlowAllocated { port } => {
                let f = LowerFlow::Dif(low, port);
                if !self.stack.is_n1_attempt(f) {
                    return false;
                }
                self.n1_allocated(now, f);
            }
            Event::FlowAllocationFailed { port, error } => {
                let f = LowerFlow::Dif(low, port);
                if !self.stack.is_n1_attempt(f) {
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
                reliable: false,
                ..
            } => {
                let Some(up) = self.stack.upper_for(Lower::Dif(low), local_app) else {
                    return false;
                };
                // A member is not its own neighbour.
                let me = *remote_app == self.stack.difs[up].ipcp.config().name;
                self.stack.difs[low].ipcp.answer_flow(now, port, !me);
                if me {
                    return true;
                }
                self.n1_incoming(now, up, LowerFlow::Dif(low, port));
            }
            Event::FlowClosed { port, .. } => {
                let f = LowerFlow::Dif(low, port);
                if !self.stack.by_lower.contains_key(&f) {
                    return false;
                }
                self.n1_gone(now, f);
            }
            Event::Readable { port } => {
                let f = LowerFlow::Dif(low, port);
                if !self.stack.by_lower.contains_key(&f) {
                    return false;
                }
                self.lower_readable.insert(f);
            }
            Event::Writable { port } => {
                return self.stack.by_lower.contains_key(&LowerFlow::Dif(low, port));
            }
            _ => return false,
        }
        true
    }

    /// The N-1 flow `f`, asked for to enroll or for a kept adjacency, is up: it becomes
    /// an N-1 port of its DIF, which starts enrolling or connecting on it.
    fn n1_allocated(&mut self, now: Instant, f: LowerFlow) {
        let enrolling = self.stack.difs.iter().position(|d| d.enrolling == Some(f));
        let (dif, keep) = match (enrolling, self.stack.keep_allocating(f)) {
            // The adjacency enrolled through is the first one kept.
            (Some(dif), _) => (dif, self.stack.difs[dif].enroll.as_ref().map(|_| 0)),
            (None, Some((dif, k))) => (dif, Some(k)),
            (None, None) => {
                self.stack.release_lower(now, f);
                return;
            }
        };
        let port = self.stack.bind_n1(dif, f);
        let mtu = self.stack.lower_max_sdu(f.lower());
        let d = &mut self.stack.difs[dif];
        if let Some(k) = keep.and_then(|k| d.keep.get_mut(k)) {
            k.state = KeepState::Up(port);
        }
        // A member already enrolled (joining again after losing every neighbour) says
        // hello on the new port rather than enrolling: no `Enrolled` will end this
        // attempt, so it ends here.
        if d.ipcp.is_enrolled() && d.enrolling == Some(f) {
            d.enrolling = None;
        }
        d.ipcp.add_n1_port(now, port, mtu, true);
    }

    /// The N-1 flow `f` could not be made (`refused`: nobody there serves the DIF).
    fn n1_failed(&mut self, now: Instant, f: LowerFlow, why: AllocFailure) {
        if self.stack.keep_failed(now, f) {
            return;
        }
        if let Some(d) = self.stack.difs.iter_mut().find(|d| d.enrolling == Some(f)) {
            let peer = d
                .enroll
                .as_ref()
                .map_or_else(|| "the neighbour".to_owned(), |p| p.peer.to_string());
            let why = match why {
                AllocFailure::Refused => format!("{peer} does not serve DIF {}", d.name),
                AllocFailure::TimedOut => format!("no answer from {peer}"),
                AllocFailure::NothingThere => {
                    format!("nothing listens at {peer} (port unreachable)")
                }
            };
            d.schedule_retry(now, why);
            self.fail_pending(now);
        }
    }

    /// A neighbour made the N-1 flow `f` to DIF `dif`'s member.
    fn n1_incoming(&mut self, now: Instant, dif: usize, f: LowerFlow) {
        let port = self.stack.bind_n1(dif, f);
        let mtu = self.stack.lower_max_sdu(f.lower());
        self.stack.difs[dif].ipcp.add_n1_port(now, port, mtu, false);
    }

    /// The N-1 flow `f` is gone (released below): so is its N-1 port.
    fn n1_gone(&mut self, now: Instant, f: LowerFlow) {
        if let Some(port) = self.stack.by_lower.remove(&f) {
            if let Some((dif, _)) = self.stack.n1.remove(&port) {
                self.stack.difs[dif].ipcp.remove_n1_port(now, port);
            }
        }
    }
}

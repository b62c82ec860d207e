//! Relaying and multiplexing (RMT): PDUs for other members go on by the forwarding
//! table, a flow's PDU without a copy when it can; management this member sends
//! to a member that is not a neighbour is routed the same way.

use crate::wire::mgmt::MgmtMessage;
use crate::wire::{Pci, PduType};
use crate::{Address, CepId, Instant, N1Port};

use super::{IpcProcess, SPARE_PDUS};

impl IpcProcess {
    /// Handles a PDU that arrived on N-1 port `port`, in a buffer the caller owns. A
    /// flow's PDU for another member is relayed without a copy: its TTL is decremented
    /// in place and the N-1 port to send it on is returned, for the caller to send
    /// `pdu` as it is now, before anything else. Anything else is handled as by
    /// [`IpcProcess::handle_pdu`] (`None`).
    pub fn handle_pdu_in_place(
        &mut self,
        now: Instant,
        port: N1Port,
        pdu: &mut [u8],
    ) -> Option<N1Port> {
        // Only flows' PDUs, and only when nothing waits in the queue: a relayed
        // management message (a flow request, say) must not overtake this member's own
        // advertisements that give the way back, nor a PDU relayed before it.
        let dst = match Pci::parse(pdu) {
            Ok((pci, _))
                if pci.dst_addr != Address::NONE
                    && Some(pci.dst_addr) != self.address
                    && !self.cfg.leaf
                    && pci.pdu_type != PduType::Management
                    && self.out.is_empty() =>
            {
                pci.dst_addr
            }
            _ => {
                self.handle_pdu(now, port, pdu);
                return None;
            }
        };
        self.clock = now;
        self.counters.pdus_in += 1;
        if let Some(n) = self.neighbors.get_mut(&port) {
            n.last_heard = now;
        }
        match (self.port_toward(dst), crate::wire::pci::decrement_ttl(pdu)) {
            (Some(out), Some(_)) => {
                self.counters.pdus_relayed += 1;
                self.count_out(out);
                Some(out)
            }
            _ => {
                self.counters.pdus_dropped += 1;
                None
            }
        }
    }

    /// Counts a PDU handed to N-1 port `p`.
    pub(super) fn count_out(&mut self, p: N1Port) {
        self.counters.pdus_out += 1;
        if self.neighbors.get(&p).is_some_and(|n| !n.leaf) {
            self.counters.pdus_to_members += 1;
        }
    }

    pub(super) fn relay(&mut self, pdu: &[u8]) {
        let Ok((pci, _)) = Pci::parse(pdu) else {
            return;
        };
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(pdu);
        match (
            self.port_toward(pci.dst_addr),
            crate::wire::pci::decrement_ttl(&mut v),
        ) {
            (Some(p), Some(_)) => {
                self.counters.pdus_relayed += 1;
                self.out.push_back((p, v));
            }
            _ => {
                self.counters.pdus_dropped += 1;
                if self.spare.len() < SPARE_PDUS {
                    self.spare.push(v);
                }
            }
        }
    }

    /// Sends a whole PDU toward its destination address (or to this member itself).
    pub(super) fn route(&mut self, pdu: Vec<u8>, dst: Address) -> bool {
        if Some(dst) == self.address {
            self.loopback.push_back(pdu);
            return true;
        }
        match self.port_toward(dst) {
            Some(p) => {
                self.out.push_back((p, pdu));
                true
            }
            None => {
                self.counters.pdus_dropped += 1;
                false
            }
        }
    }

    /// Sends a routed management message to `dst`.
    pub(super) fn send_routed(&mut self, dst: Address, msg: &MgmtMessage) -> bool {
        let Some(src) = self.address else {
            return false;
        };
        let pci = Pci {
            pdu_type: PduType::Management,
            flags: 0,
            ttl: crate::wire::pci::DEFAULT_TTL,
            dst_addr: dst,
            src_addr: src,
            dst_cep: CepId(0),
            src_cep: CepId(0),
            seq: 0,
        };
        let pdu = pci.to_pdu(&msg.encode());
        self.route(pdu, dst)
    }
}

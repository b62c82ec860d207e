//! The links' side of the loop: what arrives on a link goes to the node (a PDU it
//! relays goes out again at once, from the same buffer), what the node has to send
//! goes out on its link, and what the node reports is handled.

use rina_core::node::{LinkId, NodeEvent};
use rina_core::Instant;

use super::Driver;

impl Driver {
    /// The link's socket reported an error: the peers it names as unreachable (nothing
    /// listens there) fail the flows being made to them at once.
    pub(super) fn link_error(&mut self, link: LinkId) {
        let Some(l) = self.stack.links.get(link.0) else {
            return;
        };
        for peer in l.unreachable_peers() {
            tracing::debug!("{}: nothing listens at {peer:?}", l.describe());
            self.stack.node.peer_unreachable(link, peer);
        }
    }

    /// Receives what link `link` has and hands it to the node.
    pub(super) fn receive_link(&mut self, now: Instant, link: LinkId) {
        // Bounded (256 datagrams or frames), so one busy link cannot starve the rest
        // of the loop.
        let mut budget = 256usize;
        while budget > 0 {
            let Some(l) = self.stack.links.get(link.0) else {
                return;
            };
            let drained = match l.recv(&mut self.rx, &mut self.stack.dropped[link.0]) {
                Ok(Some(drained)) => drained,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("{}: receive failed: {e}", l.describe());
                    return;
                }
            };
            budget = budget.saturating_sub(self.rx.items.len().max(1));
            for (from, range) in self.rx.items.drain(..) {
                let bytes = &mut self.rx.buf[range];
                if let Some(t) = self.stack.node.handle_link(now, link, from, bytes) {
                    if let Some(out) = self.stack.link(t.link) {
                        out.send(t.to, &t.header, &bytes[t.payload]);
                    }
                }
            }
            if drained {
                return; // epoll (level-triggered) says when more comes
            }
        }
        // More may be waiting; come back after the rest of the loop has had a turn.
        self.shared.wake();
    }

    /// Sends everything the node has ready, in batches (`transmits`); true if
    /// anything went.
    pub(super) fn flush(&mut self, now: Instant) -> bool {
        let mut sent = false;
        while let Some(t) = self.stack.node.poll_transmit(now, &mut self.tx) {
            sent = true;
            let pdu = std::mem::take(&mut self.tx);
            let (next, full) = self.transmits.push(t, pdu);
            self.tx = next;
            if full {
                self.transmits.send(&self.stack.links);
            }
        }
        self.transmits.send(&self.stack.links);
        sent
    }

    /// Handles what the node reports; true if it reported anything.
    pub(super) fn handle_node_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(ev) = self.stack.node.poll_event(now) {
            any = true;
            match ev {
                NodeEvent::Flow(dif, ev) => self.on_flow_event(now, dif, ev),
                NodeEvent::Joined { dif, address } => {
                    let name = self.stack.node.dif(dif).name();
                    tracing::info!("enrolled in DIF {name} with address {address}");
                    self.expire_listens(now);
                }
                NodeEvent::JoinFailed { dif, why, retry_in } => {
                    let name = self.stack.node.dif(dif).name();
                    tracing::info!("DIF {name}: cannot join: {why}; trying again in {retry_in:?}");
                    self.fail_pending(now);
                }
                NodeEvent::AdjacencyDown {
                    dif,
                    peer,
                    retry_in,
                } => {
                    let name = self.stack.node.dif(dif).name();
                    tracing::info!(
                        "DIF {name}: adjacency to {peer} down; trying again in {retry_in:?}"
                    );
                }
                NodeEvent::NeighborUp { port, name, .. } => {
                    tracing::info!("neighbour {name} up on N-1 port {port}");
                }
                NodeEvent::NeighborLost { port, .. } => {
                    tracing::info!("neighbour on N-1 port {port} lost");
                }
                NodeEvent::NeighborRefused { dif, why } => {
                    let name = self.stack.node.dif(dif).name();
                    tracing::warn!("DIF {name}: neighbour refused: {why}");
                }
            }
        }
        any
    }
}

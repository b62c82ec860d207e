//! The PDUs a loop turn has ready for the links, held until the turn has drained the
//! core (or a batch is full) and then sent with one `sendmmsg` per link and batch
//! (`shims::batch`). Each queued PDU keeps the buffer the core wrote it into; sent
//! buffers come back as spares for the next ones, so nothing is copied.

use std::ops::Range;

use rina_core::node::{Header, LinkAddr, LinkId, Transmit};
use shims::batch::{Outgoing, BATCH};

use crate::link::Link;

/// Bytes queued before a batch goes out without waiting for the end of the turn
/// (bounds the buffers kept: at most this much, plus one PDU, is ever held).
const MAX_QUEUED_BYTES: usize = 512 << 10;

/// One PDU waiting for its link.
#[derive(Debug)]
struct Queued {
    link: LinkId,
    to: LinkAddr,
    header: Header,
    pdu: Vec<u8>,
    payload: Range<usize>,
}

/// The PDUs waiting for their links, and spare buffers.
#[derive(Debug, Default)]
pub(crate) struct Transmits {
    queued: Vec<Queued>,
    bytes: usize,
    spare: Vec<Vec<u8>>,
}

impl Transmits {
    /// Queues `t`, whose payload lies in `pdu`; returns a buffer for the next one (a
    /// spare, or a fresh one) and whether the batch is full and should be sent now.
    pub(crate) fn push(&mut self, t: Transmit, pdu: Vec<u8>) -> (Vec<u8>, bool) {
        self.bytes += t.payload.len() + t.header.as_slice().len();
        self.queued.push(Queued {
            link: t.link,
            to: t.to,
            header: t.header,
            pdu,
            payload: t.payload,
        });
        let next = self.spare.pop().unwrap_or_default();
        let full = self.queued.len() >= BATCH || self.bytes >= MAX_QUEUED_BYTES;
        (next, full)
    }

    /// Sends everything queued, one batch per run of PDUs for the same link, in the
    /// order they were queued; what a link refuses is lost, as on a link.
    pub(crate) fn send(&mut self, links: &[Link]) {
        let mut start = 0;
        while start < self.queued.len() {
            let link = self.queued[start].link;
            let end = self.queued[start..]
                .iter()
                .position(|q| q.link != link)
                .map_or(self.queued.len(), |n| start + n);
            if let Some(l) = links.get(link.0) {
                send_run(l, &self.queued[start..end]);
            }
            start = end;
        }
        self.bytes = 0;
        for q in self.queued.drain(..) {
            if self.spare.len() < BATCH {
                let mut pdu = q.pdu;
                pdu.clear();
                self.spare.push(pdu);
            }
        }
    }
}

/// Sends PDUs that all go out on `link`.
fn send_run(link: &Link, run: &[Queued]) {
    let outcome = match link {
        Link::Udp(l) => l.send_batch(&outgoing(run, |to| match to {
            LinkAddr::Udp(a) => Some(a),
            LinkAddr::Eth(_) => None,
        })),
        Link::Eth(l) => l.send_batch(&outgoing(run, |to| match to {
            LinkAddr::Eth(mac) => Some(mac),
            LinkAddr::Udp(_) => None,
        })),
    };
    if let Some(e) = outcome.error {
        tracing::debug!("{}: send failed: {e}", link.describe());
    }
}

/// The PDUs of `run` as the link's socket takes them, each to its address in the
/// link's kind (`to`; one of another kind is skipped).
fn outgoing<A>(run: &[Queued], to: impl Fn(LinkAddr) -> Option<A>) -> Vec<Outgoing<'_, A>> {
    run.iter()
        .filter_map(|q| {
            Some(Outgoing {
                to: to(q.to)?,
                header: q.header.as_slice(),
                payload: &q.pdu[q.payload.clone()],
            })
        })
        .collect()
}

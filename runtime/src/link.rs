//! The links under a process's shim layers: a UDP socket or a raw Ethernet socket
//! each, as the node ([`rina_core::node`]) numbers them. Only I/O lives here: what
//! goes over a link, and how a peer is named, is the node's shim protocol.

use std::ops::Range;
use std::os::fd::BorrowedFd;

use rina_core::node::{Header, LinkAddr};
use shims::eth::EthLink;
use shims::udp::UdpLink;

/// What one receive brought: each datagram's or frame's sender and where its payload
/// lies in `buf`.
#[derive(Debug)]
pub(crate) struct Received {
    /// Where the datagrams or frames were written.
    pub(crate) buf: Vec<u8>,
    /// Each one's sender and payload.
    pub(crate) items: Vec<(LinkAddr, Range<usize>)>,
    frames: Vec<shims::eth::Received>,
}

impl Default for Received {
    fn default() -> Self {
        Self {
            buf: vec![0; 65536], // the largest UDP datagram
            items: Vec::new(),
            frames: Vec::new(),
        }
    }
}

/// One link's socket.
#[derive(Debug)]
pub(crate) enum Link {
    /// A UDP tunnel.
    Udp(UdpLink),
    /// Raw Ethernet.
    Eth(EthLink),
}

impl Link {
    /// The socket, for readiness.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Udp(l) => l.fd(),
            Self::Eth(l) => l.fd(),
        }
    }

    /// Receives what waits, in one system call: a UDP datagram, or up to
    /// [`shims::eth::RECV_BATCH`] frames (`recvmmsg`), into `rx`. `None` when nothing
    /// waited; else whether the socket was drained (fewer frames than a batch: no
    /// need to ask again before epoll says so). Frames not for this protocol are
    /// counted in `dropped`.
    ///
    /// # Errors
    /// The socket's receive error.
    pub(crate) fn recv(
        &self,
        rx: &mut Received,
        dropped: &mut u64,
    ) -> std::io::Result<Option<bool>> {
        rx.items.clear();
        match self {
            Self::Udp(l) => {
                let Some((n, from)) = l.recv(&mut rx.buf)? else {
                    return Ok(None);
                };
                rx.items.push((LinkAddr::Udp(from), 0..n));
                Ok(Some(false))
            }
            Self::Eth(l) => {
                let slot = l.mtu().saturating_add(shims::eth::ETH_HEADER_LEN);
                let want = slot.saturating_mul(shims::eth::RECV_BATCH);
                if rx.buf.len() < want {
                    rx.buf.resize(want, 0);
                }
                rx.frames.clear();
                let Some(n) = l.recv_batch(&mut rx.buf, slot, &mut rx.frames, dropped)? else {
                    return Ok(None);
                };
                let frames = rx.frames.iter();
                rx.items
                    .extend(frames.map(|r| (LinkAddr::Eth(r.src), r.start..r.end)));
                Ok(Some(n < shims::eth::RECV_BATCH))
            }
        }
    }

    /// Sends `header` then `payload` to `to` (a full socket or a link error loses it,
    /// as a link would: the DIF above recovers what it must).
    pub(crate) fn send(&self, to: LinkAddr, header: &Header, payload: &[u8]) {
        let r = match (self, to) {
            (Self::Udp(l), LinkAddr::Udp(a)) => l.send(a, header.as_slice(), payload),
            (Self::Eth(l), LinkAddr::Eth(mac)) => l.send(mac, header.as_slice(), payload),
            _ => return,
        };
        if let Err(e) = r {
            tracing::debug!("{}: send failed: {e}", self.describe());
        }
    }

    /// What the link reported about peers nothing listens at (its error queue, after
    /// `EPOLLERR`).
    pub(crate) fn unreachable_peers(&self) -> Vec<LinkAddr> {
        match self {
            Self::Udp(l) => l
                .unreachable_peers()
                .into_iter()
                .map(LinkAddr::Udp)
                .collect(),
            Self::Eth(_) => Vec::new(),
        }
    }

    /// Where the link is, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Udp(l) => format!("UDP {}", l.local_addr()),
            Self::Eth(l) => format!("interface {}", l.interface()),
        }
    }
}

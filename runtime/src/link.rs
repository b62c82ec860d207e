//! The links under a process's shim layers: a UDP socket or a raw Ethernet socket
//! each, as the node ([`rina_core::node`]) numbers them. Only I/O lives here: what
//! goes over a link, and how a peer is named, is the node's shim protocol.

use std::ops::Range;
use std::os::fd::BorrowedFd;

use rina_core::node::{Header, LinkAddr};
use shims::eth::EthLink;
use shims::udp::UdpLink;

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

    /// Receives one datagram or frame into `buf`: who sent it and where its payload
    /// is; `None` when nothing waits. Frames not for this protocol are counted in
    /// `dropped`.
    ///
    /// # Errors
    /// The socket's receive error.
    pub(crate) fn recv(
        &self,
        buf: &mut [u8],
        dropped: &mut u64,
    ) -> std::io::Result<Option<(LinkAddr, Range<usize>)>> {
        Ok(match self {
            Self::Udp(l) => l.recv(buf)?.map(|(n, from)| (LinkAddr::Udp(from), 0..n)),
            Self::Eth(l) => l
                .recv(buf, dropped)?
                .map(|r| (LinkAddr::Eth(r.src), r.start..r.end)),
        })
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

//! Datagram flows: an unreliable RINA flow joined to the application's own UDP socket
//! through a proxy UDP socket on loopback.
//!
//! The application keeps its real `SOCK_DGRAM` socket, bound to a loopback address.
//! Each flow has a proxy socket owned by the runtime: SDUs from the flow are sent from
//! the proxy to the application's address, and datagrams the application sends to the
//! proxy go into the flow, one SDU each. So message boundaries, `recvfrom` addresses,
//! `MSG_PEEK`, `connect` to a peer, poll and epoll are all the kernel's own.
//!
//! Addresses: a proxy for a flow from (or to) application `X` is bound to `X`'s
//! synthetic address in `127.128.0.0/9` ([`crate::synthetic::proxy_ip`]) with a port the
//! kernel picks, so a server sees each remote application at a stable address and each
//! of its flows at its own port. A proxy for an IPv6-only application socket is bound
//! to `[::1]`. Only datagrams from the application's address are taken into the flow.
//!
//! Back-pressure is the UDP kind: the proxy is read only while the flow can take an
//! SDU (the kernel drops what overflows the proxy's buffer, as it would for any UDP
//! socket); an SDU the application's socket cannot take is held until it can.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rina_core::ipcp::{IpcProcess, ReadResult, WriteError};
use rina_core::node::DifId;
use rina_core::{ApplicationName, Instant, PortId};
use shims::udp::UdpLink;

/// One datagram flow and its proxy socket.
#[derive(Debug)]
pub(crate) struct DatagramFlow {
    pub(crate) dif: DifId,
    pub(crate) port: PortId,
    pub(crate) proxy: UdpLink,
    /// The application socket's address, as the proxy sees it.
    pub(crate) app: SocketAddr,
    /// The proxy may have datagrams to read.
    pub(crate) readable: bool,
    /// The proxy may take a datagram.
    pub(crate) writable: bool,
    /// An SDU the application's socket has not taken yet.
    held: Option<Vec<u8>>,
    /// The flow may have datagrams for the proxy (the stack said `Readable`), until a
    /// read finds none.
    deliverable: bool,
}

/// What pumping a datagram flow found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct DatagramOutcome {
    /// Something moved.
    pub(crate) progress: bool,
    /// The flow is gone.
    pub(crate) closed: bool,
}

/// Binds a proxy for a flow with `remote` for an application socket at `app`. An
/// `app` off loopback (a gateway's egress to a server elsewhere) gets a proxy bound
/// to the wildcard address, so that the kernel picks the route's source address.
pub(crate) fn bind_proxy(remote: &ApplicationName, app: SocketAddr) -> std::io::Result<UdpLink> {
    let ip = match app {
        SocketAddr::V4(a) if !a.ip().is_loopback() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(a) if !a.ip().is_loopback() && a.ip().to_ipv4_mapped().is_none() => {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        }
        SocketAddr::V4(_) => IpAddr::V4(crate::synthetic::proxy_ip(remote)),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    UdpLink::bind(SocketAddr::new(ip, 0))
}

impl DatagramFlow {
    pub(crate) fn new(dif: DifId, port: PortId, proxy: UdpLink, app: SocketAddr) -> Self {
        Self {
            dif,
            port,
            proxy,
            app,
            readable: true,
            writable: true,
            held: None,
            deliverable: true,
        }
    }

    /// The stack has something for this flow's proxy, or may have.
    pub(crate) fn may_deliver(&mut self) {
        self.deliverable = true;
    }

    /// Nothing can move until an event says so (see `AppFlow::is_idle`).
    pub(crate) fn is_idle(&self) -> bool {
        !self.readable && !self.deliverable && self.writable && self.held.is_none()
    }

    /// Moves what can move, both ways.
    pub(crate) fn pump(
        &mut self,
        now: Instant,
        ipcp: &mut IpcProcess,
        buf: &mut [u8],
    ) -> DatagramOutcome {
        let mut out = DatagramOutcome::default();
        self.flow_to_app(now, ipcp, &mut out);
        self.app_to_flow(now, ipcp, buf, &mut out);
        out
    }

    /// The application's socket is closing: takes into the flow what it sent before
    /// (the proxy's queue), as far as the flow takes it now.
    pub(crate) fn take_last(&mut self, now: Instant, ipcp: &mut IpcProcess, buf: &mut [u8]) {
        self.readable = true;
        self.app_to_flow(now, ipcp, buf, &mut DatagramOutcome::default());
    }

    fn flow_to_app(&mut self, now: Instant, ipcp: &mut IpcProcess, out: &mut DatagramOutcome) {
        while self.writable {
            let sdu = match self.held.take() {
                Some(sdu) => sdu,
                None => match ipcp.read(now, self.port) {
                    ReadResult::Sdu(sdu) => sdu,
                    ReadResult::Eof | ReadResult::WouldBlock => {
                        self.deliverable = false;
                        return;
                    }
                    ReadResult::Closed => {
                        out.closed = true;
                        return;
                    }
                },
            };
            match self.proxy.send(self.app, &[], &sdu) {
                Ok(true) => out.progress = true,
                Ok(false) => {
                    self.writable = false;
                    self.held = Some(sdu);
                }
                Err(e) => {
                    // The application's socket is gone (or the datagram is too large
                    // for it); UDP semantics: the datagram is lost.
                    tracing::debug!("flow {}: datagram to {} lost: {e}", self.port, self.app);
                    out.progress = true;
                }
            }
        }
    }

    fn app_to_flow(
        &mut self,
        now: Instant,
        ipcp: &mut IpcProcess,
        buf: &mut [u8],
        out: &mut DatagramOutcome,
    ) {
        while self.readable && ipcp.can_write(self.port) {
            let (n, from) = match self.proxy.recv(buf) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.readable = false;
                    return;
                }
                Err(e) => {
                    tracing::debug!("flow {}: proxy receive failed: {e}", self.port);
                    self.readable = false;
                    return;
                }
            };
            out.progress = true;
            // Datagrams from addresses other than the application's, or too large for
            // the flow, are dropped.
            if from != self.app {
                continue;
            }
            match ipcp.write(now, self.port, &buf[..n]) {
                Ok(()) | Err(WriteError::TooLarge) => {}
                Err(WriteError::WouldBlock) => {
                    debug_assert!(false, "write refused after can_write");
                }
                Err(WriteError::Closed) => {
                    out.closed = true;
                    return;
                }
            }
        }
    }
}

/// The address a proxy must send to for an application socket whose own address is
/// `local` (as `getsockname` gives it), and whether that socket is IPv6-only: an
/// unspecified address is reached on loopback, an IPv4-mapped one as IPv4.
pub fn app_address(local: SocketAddr, v6_only: bool) -> SocketAddr {
    let port = local.port();
    match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
        }
        IpAddr::V4(_) => local,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), port),
            None if v6_only => {
                let ip = if v6.is_unspecified() {
                    Ipv6Addr::LOCALHOST
                } else {
                    v6
                };
                SocketAddr::new(IpAddr::V6(ip), port)
            }
            None if v6.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            None => local,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_addresses_as_a_proxy_reaches_them() {
        let a = |s: &str, v6: bool| app_address(s.parse().unwrap(), v6).to_string();
        assert_eq!(a("0.0.0.0:5", false), "127.0.0.1:5");
        assert_eq!(a("127.0.0.1:5", false), "127.0.0.1:5");
        assert_eq!(a("[::]:5", false), "127.0.0.1:5");
        assert_eq!(a("[::ffff:127.0.0.1]:5", false), "127.0.0.1:5");
        assert_eq!(a("[::]:5", true), "[::1]:5");
        assert_eq!(a("[::1]:5", true), "[::1]:5");
    }

    #[test]
    fn proxies_bind_to_the_remote_synthetic_address() {
        let remote = ApplicationName::new("some-client");
        let p = bind_proxy(&remote, "127.0.0.1:9".parse().unwrap()).unwrap();
        assert_eq!(
            p.local_addr().ip(),
            IpAddr::V4(crate::synthetic::proxy_ip(&remote))
        );
        assert_ne!(p.local_addr().port(), 0);
        let p6 = bind_proxy(&remote, "[::1]:9".parse().unwrap()).unwrap();
        assert_eq!(p6.local_addr().ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
}

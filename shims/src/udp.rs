//! The UDP tunnel link: one nonblocking UDP socket per shim DIF.
//!
//! Sends are one `sendmsg` per datagram with the shim header and the PDU as two
//! I/O slices (no copy to join them). Receives are nonblocking `recvfrom` into a
//! caller-owned buffer; [`UdpLink::recv`] reports would-block as `Ok(None)`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    self, AddressFamily, RecvFlags, SendAncillaryBuffer, SendFlags, SocketFlags, SocketType,
};

/// A bound UDP socket carrying a shim DIF.
#[derive(Debug)]
pub struct UdpLink {
    fd: OwnedFd,
    local: SocketAddr,
}

impl UdpLink {
    /// Binds a nonblocking, close-on-exec UDP socket to `addr` (port 0 picks one).
    ///
    /// # Errors
    /// The bind error (address in use, not available, no permission).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let family = if addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let fd = net::socket_with(
            family,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        crate::size_buffers(&fd);
        net::bind(&fd, &addr)?;
        let local = net::getsockname(&fd)?
            .try_into()
            .map_err(|_| io::Error::other("unexpected local address family"))?;
        Ok(Self { fd, local })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The socket, for readiness polling.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Sends `header` followed by `payload` as one datagram. `Ok(false)`: the socket
    /// buffer is full (try again when writable).
    ///
    /// # Errors
    /// Any other send error (e.g. no route, message too long).
    pub fn send(&self, to: SocketAddr, header: &[u8], payload: &[u8]) -> io::Result<bool> {
        let iov = [IoSlice::new(header), IoSlice::new(payload)];
        let mut control = SendAncillaryBuffer::default();
        match net::sendmsg_addr(&self.fd, &to, &iov, &mut control, SendFlags::empty()) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            // A peer that is not (yet) listening answers ICMP port unreachable, which
            // the next send reports; that is the peer's problem, not the link's.
            Err(rustix::io::Errno::CONNREFUSED) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives one datagram into `buf`. `Ok(None)`: nothing waiting.
    ///
    /// # Errors
    /// Receive errors other than would-block and ICMP-reported refusals.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        loop {
            match net::recvfrom(&self.fd, &mut *buf, RecvFlags::empty()) {
                Ok((_, n, Some(from))) => {
                    if let Ok(from) = SocketAddr::try_from(from) {
                        return Ok(Some((n.min(buf.len()), from)));
                    }
                }
                Ok((_, _, None)) => {}
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(rustix::io::Errno::CONNREFUSED | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trip_v4_and_v6() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let a = UdpLink::bind(bind.parse().unwrap()).unwrap();
            let b = UdpLink::bind(bind.parse().unwrap()).unwrap();
            assert!(a.send(b.local_addr(), &[0, 0, 0, 7], b"hello").unwrap());
            let mut buf = [0u8; 64];
            let mut got = None;
            for _ in 0..1000 {
                if let Some(r) = b.recv(&mut buf).unwrap() {
                    got = Some(r);
                    break;
                }
                std::thread::yield_now();
            }
            let (n, from) = got.expect("datagram arrives on loopback");
            assert_eq!(&buf[..n], b"\0\0\0\x07hello");
            assert_eq!(from, a.local_addr());
            assert_eq!(b.recv(&mut buf).unwrap(), None);
        }
    }
}

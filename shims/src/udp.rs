//! The UDP tunnel link: one nonblocking UDP socket per shim DIF.
//!
//! Sends carry the shim header and the PDU as two I/O slices (no copy to join them),
//! one `sendmsg` per datagram or many in one `sendmmsg` ([`UdpLink::send_batch`]). Receives are nonblocking `recvfrom` into a
//! caller-owned buffer; [`UdpLink::recv`] reports would-block as `Ok(None)`.
//!
//! The socket asks for ICMP errors (`IP_RECVERR`, `IPV6_RECVERR`): a datagram sent to
//! a port nobody listens on comes back as an entry in its error queue, which
//! [`UdpLink::unreachable_peers`] reads, so that a join toward an endpoint with nothing
//! behind it fails at once instead of after its time-out.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::batch::{Outcome, Outgoing, BATCH};

use rustix::io::Errno;
use rustix::net::addr::SocketAddrArg;
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
        let fd = crate::high_fd::move_high(fd);
        crate::size_buffers(&fd);
        let (level, name) = if addr.is_ipv4() {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        } else {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        };
        let on: libc::c_int = 1;
        // SAFETY: an int option on a socket we own; the value outlives the call. A raw
        // system call (rustix has no such option), never libc's hooked setsockopt.
        unsafe {
            libc::syscall(
                libc::SYS_setsockopt,
                fd.as_raw_fd(),
                level,
                name,
                (&raw const on).cast::<libc::c_void>(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
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
        // A peer that is not (yet) listening answers ICMP port unreachable, which the
        // next send reports, whoever it goes to, and that datagram is not sent: the
        // error is an earlier datagram's, so this one is sent again.
        for _ in 0..2 {
            match net::sendmsg_addr(&self.fd, &to, &iov, &mut control, SendFlags::empty()) {
                Ok(_) => return Ok(true),
                Err(Errno::AGAIN) => return Ok(false),
                Err(Errno::CONNREFUSED) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Sends `datagrams` in as few system calls as the kernel takes (one `sendmmsg`
    /// per [`BATCH`]). What the socket refuses is lost and counted.
    pub fn send_batch(&self, datagrams: &[Outgoing<'_, SocketAddr>]) -> Outcome {
        let mut out = Outcome::default();
        for chunk in datagrams.chunks(BATCH) {
            let addrs: Vec<net::SocketAddrAny> = chunk.iter().map(|d| d.to.as_any()).collect();
            let iovs: Vec<[IoSlice<'_>; 2]> = chunk
                .iter()
                .map(|d| [IoSlice::new(d.header), IoSlice::new(d.payload)])
                .collect();
            let slices: Vec<&[IoSlice<'_>]> = iovs.iter().map(|i| &i[..]).collect();
            // A peer not (yet) listening: its ICMP refusal stops a later send.
            let stale = [Errno::CONNREFUSED];
            let full = [Errno::AGAIN];
            let o = crate::batch::send_all(self.fd.as_fd(), &slices, Some(&addrs), &stale, &full);
            out.lost += o.lost;
            out.error = out.error.or(o.error);
        }
        out
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
                Err(Errno::AGAIN) => return Ok(None),
                Err(Errno::CONNREFUSED | Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl UdpLink {
    /// The peers that the kernel said nothing listens at (ICMP port unreachable) since
    /// the last call, read from the socket's error queue (which `epoll` reports as
    /// `EPOLLERR`).
    pub fn unreachable_peers(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for _ in 0..64 {
            // SAFETY: plain data buffers of ours, sized as declared to the kernel;
            // recvmsg writes within them and reports the lengths it used.
            let got = unsafe {
                let mut name: libc::sockaddr_storage = std::mem::zeroed();
                let mut control = [0u64; 64];
                let mut data = [0u8; 64];
                let mut iov = libc::iovec {
                    iov_base: data.as_mut_ptr().cast(),
                    iov_len: data.len(),
                };
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_name = (&raw mut name).cast();
                msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = size_of_val(&control);
                let fd = self.fd.as_raw_fd();
                // A raw system call (rustix reads no error queue), never libc's hooked
                // recvmsg.
                let flags = libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT;
                if libc::syscall(libc::SYS_recvmsg, fd, &raw mut msg, flags) < 0 {
                    None
                } else {
                    Some(refused_destination(&msg, &name))
                }
            };
            match got {
                None => break,
                Some(Some(peer)) => out.push(peer),
                Some(None) => {}
            }
        }
        out
    }
}

/// The destination of an error-queue message if it reports a refusal (port
/// unreachable).
///
/// # Safety
/// `msg` was filled by `recvmsg` with `name` as its name buffer.
unsafe fn refused_destination(
    msg: &libc::msghdr,
    name: &libc::sockaddr_storage,
) -> Option<SocketAddr> {
    // SAFETY: walking the control messages the kernel wrote into `msg`'s buffer.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    let mut refused = false;
    while !cmsg.is_null() {
        // SAFETY: a control message header within the buffer, per CMSG_NXTHDR.
        let (level, ty) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
        if (level == libc::IPPROTO_IP && ty == libc::IP_RECVERR)
            || (level == libc::IPPROTO_IPV6 && ty == libc::IPV6_RECVERR)
        {
            // SAFETY: the kernel puts a sock_extended_err in these messages.
            let e = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::sock_extended_err>())
            };
            refused |= e.ee_errno == libc::ECONNREFUSED as u32;
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    if !refused {
        return None;
    }
    let len = msg.msg_namelen as usize;
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: an AF_INET name of that length.
            let a = unsafe {
                std::ptr::read_unaligned(
                    (name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                )
            };
            Some(SocketAddr::from((
                u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: an AF_INET6 name of that length.
            let a = unsafe {
                std::ptr::read_unaligned(
                    (name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                )
            };
            Some(SocketAddr::from((
                a.sin6_addr.s6_addr,
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_nobody_listens_on_is_reported() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let a = UdpLink::bind(bind.parse().unwrap()).unwrap();
            // A port that was just free: nobody listens there.
            let gone = UdpLink::bind(bind.parse().unwrap()).unwrap().local_addr();
            assert!(a.send(gone, &[0, 0, 0, 0], b"anyone?").unwrap());
            let mut seen = Vec::new();
            for _ in 0..1000 {
                seen = a.unreachable_peers();
                if !seen.is_empty() {
                    break;
                }
                std::thread::yield_now();
            }
            assert_eq!(seen, vec![gone], "{bind}");
            assert!(a.unreachable_peers().is_empty());
        }
    }

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

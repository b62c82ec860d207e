//! The application socket of a datagram flow in the gateway and the tunnel: a UDP
//! socket on loopback, which the runtime's proxy for the flow sends to (and which is
//! connected to that proxy once the flow is up).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use rustix::net::{self, SocketFlags};

/// What the socket may queue: a burst of a flow's largest datagrams (a tunnel's TSO
/// packets are up to 60 kB), which the default (about 200 kB) drops.
const RECV_BUFFER: usize = 4 << 20;

/// A nonblocking UDP socket on 127.0.0.1 with a port of the kernel's choice, and its
/// address.
pub(crate) fn udp_socket() -> Option<(OwnedFd, SocketAddr)> {
    let sock = net::socket_with(
        net::AddressFamily::INET,
        net::SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .ok()?;
    net::bind(&sock, &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).ok()?;
    // Forced when privileged (a gateway or tunnel often is), else up to the limit.
    if net::sockopt::set_socket_recv_buffer_size_force(&sock, RECV_BUFFER).is_err() {
        let _ = net::sockopt::set_socket_recv_buffer_size(&sock, RECV_BUFFER);
    }
    let at = net::getsockname(&sock)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())?;
    Some((sock, at))
}

//! The application socket of a datagram flow in the gateway: a UDP socket on
//! loopback, which the runtime's proxy for the flow sends to (and which is
//! connected to that proxy once the flow is up).

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;

use rustix::net::{self, SocketFlags};

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
    let at = net::getsockname(&sock)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())?;
    Some((sock, at))
}

//! The synthetic addresses the interposer hands out and recognises. The ranges and
//! how an address is picked in them are the runtime's ([`runtime::synthetic`]),
//! shared with the processes on the other end of a flow; this module is the
//! interposer's one way to them.
//!
//! - **Host names** a `[[name]]` rule matches resolve to `127.64.0.0/10`
//!   ([`host_address`]), only ever reached on loopback.
//! - **Peers** of a flow show at their listen rule's range ([`PeerRange`], by default
//!   `100.64.0.0/10`), and a connecting application that bound nothing shows at the
//!   default range's address for its name with an ephemeral port ([`own_address`]).
//! - **Datagram proxies** are bound in `127.128.0.0/9` ([`is_proxy`]); a datagram from
//!   one shows at the peer range's address of the remote application
//!   ([`shown_for_proxy`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rina_core::ApplicationName;
use runtime::synthetic::{self, shown_on};
pub use runtime::synthetic::{host_address, next_host_address, PeerRange};

/// The host-name address `sa` is (IPv4, or IPv4-mapped), if it is one.
pub fn as_host_address(sa: SocketAddr) -> Option<Ipv4Addr> {
    match sa.ip().to_canonical() {
        IpAddr::V4(v4) if synthetic::is_host_address(v4) => Some(v4),
        _ => None,
    }
}

/// True for an address a datagram proxy may have: `127.128.0.0/9` (IPv4 or
/// IPv4-mapped). Datagrams to these go to the kernel untouched.
pub fn is_proxy(sa: SocketAddr) -> bool {
    synthetic::is_proxy_ip(sa.ip())
}

/// Where the proxy of an incoming flow shows on a server socket (IPv6 if `v6`) whose
/// listen rule puts peers in `peers`: the proxy's bits in the range (the proxy's
/// address comes from the remote application's name, so one application keeps one
/// address; the default range if `peers` cannot show on the socket), and the proxy's
/// port (one per flow).
pub fn shown_for_proxy(
    proxy: SocketAddr,
    peers: &PeerRange,
    v6: bool,
    v6_only: bool,
) -> Option<SocketAddr> {
    let bits = synthetic::proxy_bits(proxy.ip())?;
    let ip = shown_on(peers.address_from_bits(bits), v6, v6_only)
        .or_else(|| shown_on(PeerRange::DEFAULT.address_from_bits(bits), v6, v6_only))?;
    Some(SocketAddr::new(ip, proxy.port()))
}

/// What a connecting application `app` that bound no address shows as its own (on an
/// IPv6 socket if `v6`): the address a server shows for it by default, and an
/// ephemeral port.
pub fn own_address(app: &ApplicationName, v6: bool) -> SocketAddr {
    SocketAddr::new(synthetic::own_ip(app, v6), ephemeral_port())
}

/// A port for a socket bound to port 0, from the ephemeral range.
pub fn ephemeral_port() -> u16 {
    synthetic::ephemeral_port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_range() {
        let p = |s: &str| is_proxy(s.parse().unwrap());
        assert!(p("127.128.0.1:9"));
        assert!(p("127.255.1.1:9"));
        assert!(p("[::ffff:127.200.1.1]:9"));
        assert!(!p("127.0.0.1:9"));
        assert!(!p("127.127.255.255:9"));
        assert!(!p("10.128.0.1:9"));
        assert!(!p("[::1]:9"));
    }

    #[test]
    fn host_addresses_wrap_in_their_range() {
        let last = Ipv4Addr::new(127, 127, 255, 255);
        assert_eq!(next_host_address(last), Ipv4Addr::new(127, 64, 0, 1));
        let a = host_address("echo.rina");
        assert_eq!(as_host_address(SocketAddr::from((a, 7))), Some(a));
        let mapped = SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), 7);
        assert_eq!(as_host_address(mapped), Some(a));
        assert_eq!(as_host_address("127.0.0.1:7".parse().unwrap()), None);
    }
}

//! What a flow looks like to socket programs: the addresses each end shows as its own
//! and as its peer's (from the synthetic ranges of [`crate::synthetic`]).
//!
//! - A remote application shows at an address of its listen rule's peer range
//!   ([`PeerRange`]; by default RFC 6598's `100.64.0.0/10`, outside loopback, so a
//!   server that trusts local clients does not trust every member of the DIF): a
//!   hash of its name picks the address, so one application keeps one address. On an
//!   IPv6 socket an IPv4 address shows IPv4-mapped, or in RFC 8215's local-use prefix
//!   `64:ff9b:1::/96` on a socket that is IPv6 only.
//! - Each flow has its own port: the connecting side picks an ephemeral port (or keeps
//!   the one it bound) and tells the other side in the flow request's allocation info
//!   ([`RequestInfo`]), with the address it connected to. So, by default, what a
//!   client shows as its own address is what the server shows as its peer, and the
//!   other way round, as over TCP.
//! - The runtime's end of every stream flow's socket pair is bound to an abstract
//!   AF_UNIX name ([`flow_name`]) that carries the flow and both addresses: any process
//!   that holds the application's end (after exec, fork or `SCM_RIGHTS`) reads them
//!   with `getpeername` on it.
//! - Datagram flows are reached through proxies bound in `127.128.0.0/9`
//!   ([`proxy_ip`](crate::synthetic::proxy_ip)); the interposer shows them at the peer range's addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rina_core::{ApplicationName, PortId};

use crate::synthetic::{app_hash, peer_ip, shown_on, PeerRange};

/// The two addresses of one end of a stream flow, as its application sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowView {
    /// Its own address (`getsockname`).
    pub local: SocketAddr,
    /// Its peer's (`getpeername`, `accept`).
    pub peer: SocketAddr,
}

/// What a connecting end tells the accepting end (a flow request's allocation info).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// The requester's own address, as it shows it.
    pub src: SocketAddr,
    /// The address it connected to.
    pub dst: SocketAddr,
}

/// Version of the [`RequestInfo`] and [`flow_name`] encodings.
const VIEW_VERSION: u8 = 1;
/// Bytes of one encoded socket address.
const ADDR_LEN: usize = 19;

fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    let mut ip = [0u8; 16];
    match a.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            ip[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            ip = v6.octets();
        }
    }
    out.extend_from_slice(&ip);
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn get_addr(b: &[u8]) -> Option<SocketAddr> {
    let b: &[u8; ADDR_LEN] = b.get(..ADDR_LEN)?.try_into().ok()?;
    let port = u16::from_be_bytes([b[17], b[18]]);
    let ip = match b[0] {
        4 => IpAddr::V4(Ipv4Addr::new(b[1], b[2], b[3], b[4])),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[1..17]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl RequestInfo {
    /// The bytes a flow request carries.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + 2 * ADDR_LEN);
        v.push(VIEW_VERSION);
        put_addr(&mut v, self.src);
        put_addr(&mut v, self.dst);
        v
    }

    /// Reads [`RequestInfo::encode`]'s bytes; `None` for anything else (a requester
    /// that sent none, another version).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 1 + 2 * ADDR_LEN || b[0] != VIEW_VERSION {
            return None;
        }
        Some(Self {
            src: get_addr(&b[1..])?,
            dst: get_addr(&b[1 + ADDR_LEN..])?,
        })
    }
}

/// What a listening socket tells the runtime about the flows it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenView {
    /// The address the listener is bound to, as the application sees it.
    pub local: SocketAddr,
    /// Where remote applications show.
    pub peers: PeerRange,
    /// The listener is an IPv6-only socket.
    pub v6_only: bool,
    /// The receive buffer the application asked for (`SO_RCVBUF` on the listener,
    /// inherited by accepted flows); `None`: the default.
    pub recv_buffer: Option<usize>,
}

impl ListenView {
    /// The view of a flow from `remote` accepted on this listener: the peer at its
    /// range's address with the port it chose; this end at the listener's address
    /// (a wildcard replaced by the address the peer connected to, as TCP shows the
    /// address a connection came in on).
    pub fn accepted(&self, remote: &ApplicationName, info: Option<RequestInfo>) -> FlowView {
        let v6 = self.local.is_ipv6();
        let ip = peer_ip(&self.peers, remote, v6, self.v6_only);
        let port = info.map_or_else(
            || 1024 + (app_hash(remote) % u64::from(u16::MAX - 1024)) as u16,
            |i| i.src.port(),
        );
        let mut local = self.local;
        if local.ip().is_unspecified() {
            let dst = info
                .and_then(|i| shown_on(i.dst.ip(), v6, self.v6_only))
                .filter(|ip| !ip.is_unspecified());
            local.set_ip(dst.unwrap_or(if v6 {
                IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }));
        }
        FlowView {
            local,
            peer: SocketAddr::new(ip, port),
        }
    }
}

/// Prefix of the abstract names of the runtime's ends of stream flows.
const FLOW_NAME_PREFIX: &[u8] = b"rina-flow/";

/// A stream flow as its abstract name ([`flow_name`]) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowName {
    /// The process whose runtime (or keeper, after it) serves the flow.
    pub pid: u32,
    /// The DIF, as an index into that runtime's rules.
    pub dif: u16,
    /// The flow's port-id there.
    pub port: PortId,
    /// The addresses the application's end shows.
    pub view: FlowView,
}

/// An address in as few bytes as its family needs: 4 or 6, the address, the port.
fn put_compact(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Reads [`put_compact`]'s bytes from the front of `b`: the address and what is left.
fn get_compact(b: &[u8]) -> Option<(SocketAddr, &[u8])> {
    let (ip, rest) = match *b.first()? {
        4 => {
            let o: [u8; 4] = b.get(1..5)?.try_into().ok()?;
            (IpAddr::V4(Ipv4Addr::from(o)), b.get(5..)?)
        }
        6 => {
            let o: [u8; 16] = b.get(1..17)?.try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(o)), b.get(17..)?)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?);
    Some((SocketAddr::new(ip, port), &rest[2..]))
}

/// The abstract AF_UNIX name (without the leading NUL) the runtime binds its end of a
/// stream flow's socket to: the prefix, then the flow and its addresses in hex, so
/// that the name is printable (`/proc/net/unix`, `ss`) and, for two IPv6 addresses,
/// exactly fits the 107 bytes an abstract name may have.
pub fn flow_name(f: &FlowName) -> Vec<u8> {
    let mut b = Vec::with_capacity(48);
    b.extend_from_slice(&f.pid.to_be_bytes());
    b.extend_from_slice(&f.dif.to_be_bytes());
    b.extend_from_slice(&f.port.0.to_be_bytes());
    put_compact(&mut b, f.view.local);
    put_compact(&mut b, f.view.peer);
    let mut v = FLOW_NAME_PREFIX.to_vec();
    for byte in b {
        v.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    v
}

/// Reads a [`flow_name`]; `None` for any other name.
pub fn parse_flow_name(name: &[u8]) -> Option<FlowName> {
    let hex = name.strip_prefix(FLOW_NAME_PREFIX)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let b: Vec<u8> = hex
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect::<Option<_>>()?;
    let pid = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?);
    let dif = u16::from_be_bytes(b.get(4..6)?.try_into().ok()?);
    let port = PortId(u32::from_be_bytes(b.get(6..10)?.try_into().ok()?));
    let (local, rest) = get_compact(&b[10..])?;
    let (peer, rest) = get_compact(rest)?;
    rest.is_empty().then_some(FlowName {
        pid,
        dif,
        port,
        view: FlowView { local, peer },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{own_ip, proxy_bits, proxy_ip};

    fn app(s: &str) -> ApplicationName {
        ApplicationName::new(s)
    }

    #[test]
    fn infos_and_names_round_trip() {
        let info = RequestInfo {
            src: "100.64.3.4:40001".parse().unwrap(),
            dst: "[fd00::1]:80".parse().unwrap(),
        };
        assert_eq!(RequestInfo::decode(&info.encode()), Some(info));
        assert!(info.encode().len() <= rina_core::wire::mgmt::MAX_FLOW_INFO);
        assert_eq!(RequestInfo::decode(b""), None);
        assert_eq!(RequestInfo::decode(&[9; 39]), None);
        let f = FlowName {
            pid: 4_194_304,
            dif: 3,
            port: PortId(77),
            view: FlowView {
                local: "[::ffff:127.0.0.1]:5000".parse().unwrap(),
                peer: "[64:ff9b:1::6440:102]:33000".parse().unwrap(),
            },
        };
        let n = flow_name(&f);
        assert!(n.len() <= 107, "fits an abstract AF_UNIX name");
        assert!(n.iter().all(|c| c.is_ascii_graphic()), "printable");
        assert_eq!(parse_flow_name(&n), Some(f));
        assert_eq!(parse_flow_name(b"rina-listen/1/2"), None);
        assert_eq!(parse_flow_name(&n[..n.len() - 1]), None);
    }

    #[test]
    fn an_accepted_flow_shows_what_the_client_shows() {
        let l = ListenView {
            local: "0.0.0.0:5000".parse().unwrap(),
            peers: PeerRange::DEFAULT,
            v6_only: false,
            recv_buffer: None,
        };
        let client = app("nc");
        let info = RequestInfo {
            src: SocketAddr::new(own_ip(&client, false), 41000),
            dst: "127.0.0.1:5000".parse().unwrap(),
        };
        let v = l.accepted(&client, Some(info));
        assert_eq!(v.peer, info.src);
        assert_eq!(v.local, info.dst);
        // A v6 listener shows the same addresses IPv4-mapped.
        let l6 = ListenView {
            local: "[::]:5000".parse().unwrap(),
            ..l
        };
        let v6 = l6.accepted(&client, Some(info));
        assert_eq!(v6.peer.port(), 41000);
        assert_eq!(
            v6.local,
            "[::ffff:127.0.0.1]:5000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn datagrams_and_streams_of_one_application_show_at_one_address() {
        for range in ["100.64.0.0/10", "10.1.0.0/16", "192.0.2.7", "fd00:9::/64"] {
            let r: PeerRange = range.parse().unwrap();
            for name in ["a", "curl", "some-longer-name"] {
                let bits = proxy_bits(IpAddr::V4(proxy_ip(&app(name)))).unwrap();
                assert_eq!(
                    r.address_from_bits(bits),
                    r.address_of(&app(name)),
                    "{range} {name}"
                );
            }
        }
    }

    proptest::proptest! {
        /// What a peer sends (allocation info) and what any socket's peer is named are
        /// read without panicking, whatever the bytes.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            let _ = RequestInfo::decode(&bytes);
            let _ = parse_flow_name(&bytes);
            let mut named = FLOW_NAME_PREFIX.to_vec();
            named.extend_from_slice(&bytes);
            let _ = parse_flow_name(&named);
        }
    }
}

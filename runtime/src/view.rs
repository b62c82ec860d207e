//! What a flow looks like to socket programs: the addresses each end shows as its own
//! and as its peer's, and the synthetic address ranges they come from.
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
//!   ([`proxy_ip`]); the interposer shows them at the peer range's addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use rina_core::{ApplicationName, PortId};

/// A range of addresses remote applications show at (`prefix` bits of `base` fixed;
/// a full-length prefix is one fixed address for every peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerRange {
    base: IpAddr,
    prefix: u8,
}

impl PeerRange {
    /// RFC 6598's shared address space, `100.64.0.0/10`.
    pub const DEFAULT: Self = Self {
        base: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)),
        prefix: 10,
    };

    /// The range of `base`/`prefix` (host bits of `base` are ignored); `None` for a
    /// prefix longer than the address.
    pub fn new(base: IpAddr, prefix: u8) -> Option<Self> {
        let max = if base.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { base, prefix })
    }

    /// The address `app` shows at: [`app_bits`] in the host bits.
    pub fn address_of(&self, app: &ApplicationName) -> IpAddr {
        self.address_from_bits(app_bits(app))
    }

    /// The address for an application's [`app_bits`] (also read back from a datagram
    /// proxy's address, so that datagrams and streams from one application show at
    /// one address): as many of their top bits as the range has host bits.
    pub fn address_from_bits(&self, bits: u32) -> IpAddr {
        let bits = u128::from(bits & APP_BITS_MASK);
        match self.base {
            IpAddr::V4(b) => {
                let host = 32 - u32::from(self.prefix);
                let mask = if host == 0 {
                    0
                } else {
                    u32::MAX >> (32 - host)
                };
                let mut h = shift_bits(bits, host) as u32 & mask;
                if host >= 2 && (h == 0 || h == mask) {
                    h = 1; // not the network's or the broadcast address
                }
                IpAddr::V4(Ipv4Addr::from((u32::from(b) & !mask) | h))
            }
            IpAddr::V6(b) => {
                let host = 128 - u32::from(self.prefix);
                let mask = if host == 0 {
                    0
                } else {
                    u128::MAX >> (128 - host)
                };
                let mut h = shift_bits(bits, host) & mask;
                if host >= 1 && h == 0 {
                    h = 1;
                }
                IpAddr::V6(Ipv6Addr::from((u128::from(b) & !mask) | h))
            }
        }
    }
}

/// How many bits of an application's hash stand for it in addresses ([`app_bits`]).
const APP_BITS: u32 = 23;
const APP_BITS_MASK: u32 = (1 << APP_BITS) - 1;

/// `bits` (of [`APP_BITS`]) cut or widened to `host` bits: the top ones when there are
/// fewer host bits, all of them at the bottom otherwise.
fn shift_bits(bits: u128, host: u32) -> u128 {
    if host < APP_BITS {
        bits >> (APP_BITS - host)
    } else {
        bits
    }
}

/// The bits of an application's name that its addresses come from: the top
/// 23 bits of [`app_hash`].
pub fn app_bits(app: &ApplicationName) -> u32 {
    (app_hash(app) >> (64 - APP_BITS)) as u32
}

impl std::fmt::Display for PeerRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl Default for PeerRange {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for PeerRange {
    type Err = String;

    /// `ADDRESS/PREFIX`, or one `ADDRESS` (every peer shows at it).
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{p:?} is not a prefix length (0 to {max})"))?,
        };
        Self::new(ip, prefix).ok_or_else(|| "bad range".into())
    }
}

/// A stable 64-bit hash of an application name (FNV-1a: the same across runs,
/// processes and hosts).
pub fn app_hash(app: &ApplicationName) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in app.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// How `ip` shows on a socket: as it is on one of its own family; an IPv4 address on
/// an IPv6 socket IPv4-mapped, or in `64:ff9b:1::/96` if the socket is IPv6 only;
/// `None` for an IPv6 address on an IPv4 socket.
pub fn shown_on(ip: IpAddr, v6_socket: bool, v6_only: bool) -> Option<IpAddr> {
    match (ip, v6_socket) {
        (IpAddr::V4(v4), false) => Some(IpAddr::V4(v4)),
        (IpAddr::V4(v4), true) if v6_only => {
            let o = v4.octets();
            Some(IpAddr::V6(Ipv6Addr::new(
                0x64,
                0xff9b,
                1,
                0,
                0,
                0,
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([o[2], o[3]]),
            )))
        }
        (IpAddr::V4(v4), true) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        (IpAddr::V6(v6), true) => Some(IpAddr::V6(v6)),
        (IpAddr::V6(_), false) => None,
    }
}

/// The address `app` shows at on a socket through `range`, falling back to the
/// default range when the range's family cannot show on the socket.
pub fn peer_ip(range: &PeerRange, app: &ApplicationName, v6_socket: bool, v6_only: bool) -> IpAddr {
    shown_on(range.address_of(app), v6_socket, v6_only).unwrap_or_else(|| {
        shown_on(PeerRange::DEFAULT.address_of(app), v6_socket, v6_only)
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    })
}

/// The address a connecting application shows as its own when it did not bind one:
/// the address a server shows for it by default.
pub fn own_ip(app: &ApplicationName, v6_socket: bool) -> IpAddr {
    peer_ip(&PeerRange::DEFAULT, app, v6_socket, false)
}

/// Linux's ephemeral port range.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// A port for a connection that did not bind one: the next of a per-process sequence
/// through the ephemeral range, from a random start (so that two processes of one
/// program seldom show the same port).
pub fn ephemeral_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let mut b = [0u8; 4];
        let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
        let _ = NEXT.compare_exchange(
            u32::MAX,
            u32::from_ne_bytes(b) % span,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % span;
    EPHEMERAL.start() + n as u16
}

/// The proxy address of a datagram flow with `remote`, in `127.128.0.0/9`: its
/// [`app_bits`] (so the interposer shows datagrams from it where its streams show).
pub fn proxy_ip(remote: &ApplicationName) -> Ipv4Addr {
    Ipv4Addr::from(0x7f80_0000 | app_bits(remote).max(1))
}

/// The [`app_bits`] a proxy's address carries.
pub fn proxy_bits(ip: IpAddr) -> Option<u32> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    is_proxy_ip(IpAddr::V4(v4)).then_some(u32::from(v4) & APP_BITS_MASK)
}

/// True for an address a datagram proxy may have: `127.128.0.0/9` (IPv4 or
/// IPv4-mapped).
pub fn is_proxy_ip(ip: IpAddr) -> bool {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return false,
        },
    };
    v4.octets()[0] == 127 && v4.octets()[1] & 0x80 != 0
}

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

    fn app(s: &str) -> ApplicationName {
        ApplicationName::new(s)
    }

    #[test]
    fn peers_show_outside_loopback_one_address_per_application() {
        let a = PeerRange::DEFAULT.address_of(&app("curl"));
        assert_eq!(a, PeerRange::DEFAULT.address_of(&app("curl")));
        assert_ne!(a, PeerRange::DEFAULT.address_of(&app("wget")));
        let IpAddr::V4(v4) = a else { panic!() };
        assert_eq!(
            u32::from(v4) >> 22,
            u32::from(Ipv4Addr::new(100, 64, 0, 0)) >> 22
        );
        assert!(!v4.is_loopback());
        let fixed: PeerRange = "192.0.2.7".parse().unwrap();
        assert_eq!(
            fixed.address_of(&app("x")),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        let v6: PeerRange = "fd00:99::/64".parse().unwrap();
        let IpAddr::V6(a6) = v6.address_of(&app("x")) else {
            panic!()
        };
        assert_eq!(a6.segments()[..4], [0xfd00, 0x99, 0, 0]);
        assert!("10.0.0.0/33".parse::<PeerRange>().is_err());
        assert!("nonsense/8".parse::<PeerRange>().is_err());
    }

    #[test]
    fn addresses_show_on_each_kind_of_socket() {
        let v4: IpAddr = "100.64.1.2".parse().unwrap();
        assert_eq!(shown_on(v4, false, false), Some(v4));
        assert_eq!(
            shown_on(v4, true, false),
            Some("::ffff:100.64.1.2".parse().unwrap())
        );
        assert_eq!(
            shown_on(v4, true, true),
            Some("64:ff9b:1::6440:102".parse().unwrap())
        );
        assert_eq!(shown_on("fd00::1".parse().unwrap(), false, false), None);
        // A v6 range on an IPv4 socket falls back to the default range.
        let r: PeerRange = "fd00::/64".parse().unwrap();
        assert_eq!(
            peer_ip(&r, &app("x"), false, false),
            PeerRange::DEFAULT.address_of(&app("x"))
        );
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

    #[test]
    fn ephemeral_ports_are_in_range_and_differ() {
        let a = ephemeral_port();
        let b = ephemeral_port();
        assert!(EPHEMERAL.contains(&a) && EPHEMERAL.contains(&b));
        assert_ne!(a, b);
        assert!(is_proxy_ip(IpAddr::V4(proxy_ip(&app("x")))));
        assert!(!is_proxy_ip("127.0.0.1".parse().unwrap()));
    }
}

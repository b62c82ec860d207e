//! The synthetic addresses of RINA flows, in one place: the ranges, and how an
//! address is picked in each (the same in every process, so both ends of a flow and
//! every process of a program agree).
//!
//! - **Host names** a `[[name]]` rule matches resolve to `127.64.0.0/10`
//!   ([`host_address`]): a hash of the name, only ever reached on loopback.
//! - **Peers** of a flow show at their listen rule's range ([`PeerRange`]; by
//!   default RFC 6598's `100.64.0.0/10`, outside loopback, so a server that trusts
//!   local clients does not trust every member of the DIF): a hash of the remote
//!   application's name picks the address. On an IPv6 socket an IPv4 address shows
//!   IPv4-mapped, or in RFC 8215's local-use prefix `64:ff9b:1::/96` on a socket that
//!   is IPv6 only ([`shown_on`]).
//! - **Datagram proxies** are bound in `127.128.0.0/9` ([`proxy_ip`]).
//! - **Ports** a connecting side picks come from the ephemeral range
//!   ([`ephemeral_port`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use rina_core::ApplicationName;

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

/// The synthetic IPv4 address a host name resolves to: `127.64.0.0/10` plus a hash
/// of the name, the same in every process.
pub fn host_address(host: &str) -> Ipv4Addr {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    let mut h: u32 = 0x811c_9dc5; // FNV-1a
    for b in host.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let bits = h & 0x003f_ffff; // 22 bits under the /10
    let ip = u32::from(Ipv4Addr::new(127, 64, 0, 0)) | bits;
    // Avoid .0 and .255 in the last octet (some programs treat them specially).
    let ip = if ip & 0xff == 0 || ip & 0xff == 0xff {
        ip ^ 0x01
    } else {
        ip
    };
    Ipv4Addr::from(ip)
}

/// True for an address in the host-name range `127.64.0.0/10`.
pub fn is_host_address(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 127 && (o[1] & 0xc0) == 0x40
}

/// The host-name address after `ip`, wrapping round in the range (for another name
/// whose hash took `ip` already).
pub fn next_host_address(ip: Ipv4Addr) -> Ipv4Addr {
    let mut next = u32::from(ip).wrapping_add(1);
    // Not .255 or .0 in the last octet, as `host_address` never gives.
    if next & 0xff == 0xff {
        next = next.wrapping_add(2);
    }
    let next = Ipv4Addr::from(next);
    if is_host_address(next) {
        next
    } else {
        Ipv4Addr::new(127, 64, 0, 1)
    }
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
    fn ephemeral_ports_are_in_range_and_differ() {
        let a = ephemeral_port();
        let b = ephemeral_port();
        assert!(EPHEMERAL.contains(&a) && EPHEMERAL.contains(&b));
        assert_ne!(a, b);
        assert!(is_proxy_ip(IpAddr::V4(proxy_ip(&app("x")))));
        assert!(!is_proxy_ip("127.0.0.1".parse().unwrap()));
    }
    #[test]
    fn synthetic_hosts_are_stable_and_in_range() {
        let a = host_address("echo.rina");
        assert_eq!(a, host_address("ECHO.rina."));
        assert_ne!(a, host_address("other.rina"));
        assert!(is_host_address(a), "{a}");
        assert!(!is_host_address(Ipv4Addr::new(127, 128, 0, 1)));
        assert!(!is_host_address(Ipv4Addr::LOCALHOST));
        for i in 0..1000 {
            let ip = host_address(&format!("h{i}.rina"));
            assert!(is_host_address(ip));
            assert!(ip.octets()[3] != 0 && ip.octets()[3] != 255);
        }
    }
    #[test]
    fn the_next_host_address_stays_in_the_range() {
        let last = Ipv4Addr::new(127, 127, 255, 254);
        assert_eq!(next_host_address(last), Ipv4Addr::new(127, 64, 0, 1));
        let a = Ipv4Addr::new(127, 64, 0, 9);
        assert_eq!(next_host_address(a), Ipv4Addr::new(127, 64, 0, 10));
        let a = Ipv4Addr::new(127, 64, 0, 254);
        assert_eq!(next_host_address(a), Ipv4Addr::new(127, 64, 1, 1));
    }
}

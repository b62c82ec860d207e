//! The PROXY protocol version 2 header (HAProxy's specification) that a gateway's
//! egress writes first on each TCP connection, so that a server behind it sees the
//! address the client connected from and the address it connected to, as the
//! ingress side saw them.
//!
//! Only what an egress needs: the `PROXY` command for TCP over IPv4 or IPv6 (an IPv4
//! address next to an IPv6 one is written IPv4-mapped), and the `LOCAL` command when
//! the flow came with no addresses (a program that is not a gateway, say), which
//! tells the server to use the connection's own addresses.

use std::net::{IpAddr, SocketAddr};

use crate::view::RequestInfo;

/// The twelve bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2, `PROXY` command.
const PROXY: u8 = 0x21;
/// Version 2, `LOCAL` command.
const LOCAL: u8 = 0x20;
/// Address family and transport: TCP over IPv4, TCP over IPv6, unspecified.
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
const UNSPEC: u8 = 0x00;

/// The header for a connection from `info.src` to `info.dst`, or a `LOCAL` header
/// when there is no `info`.
pub fn encode(info: Option<&RequestInfo>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    let Some(info) = info else {
        out.extend_from_slice(&[LOCAL, UNSPEC, 0, 0]);
        return out;
    };
    match (info.src.ip(), info.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[PROXY, TCP4, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.extend_from_slice(&[PROXY, TCP6, 0, 36]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&info.src.port().to_be_bytes());
    out.extend_from_slice(&info.dst.port().to_be_bytes());
    out
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Reads a header [`encode`] wrote: the source and destination, `None` for `LOCAL`,
/// and the header's length; `Err` if `b` does not start with a whole header.
/// (For tests and tools: an egress only writes headers.)
#[allow(clippy::type_complexity)]
pub fn decode(b: &[u8]) -> Result<(Option<(SocketAddr, SocketAddr)>, usize), &'static str> {
    if b.len() < 16 || b[..12] != SIGNATURE {
        return Err("no PROXY v2 signature");
    }
    let len = usize::from(u16::from_be_bytes([b[14], b[15]]));
    let body = b.get(16..16 + len).ok_or("truncated header")?;
    let total = 16 + len;
    match (b[12], b[13]) {
        (LOCAL, _) => Ok((None, total)),
        (PROXY, TCP4) if len >= 12 => {
            let ip =
                |o: usize| IpAddr::from(<[u8; 4]>::try_from(&body[o..o + 4]).unwrap_or_default());
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            let src = SocketAddr::new(ip(0), port(8));
            let dst = SocketAddr::new(ip(4), port(10));
            Ok((Some((src, dst)), total))
        }
        (PROXY, TCP6) if len >= 36 => {
            let ip =
                |o: usize| IpAddr::from(<[u8; 16]>::try_from(&body[o..o + 16]).unwrap_or_default());
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            let src = SocketAddr::new(ip(0), port(32));
            let dst = SocketAddr::new(ip(16), port(34));
            Ok((Some((src, dst)), total))
        }
        _ => Err("not a TCP PROXY or LOCAL header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(src: &str, dst: &str) -> RequestInfo {
        RequestInfo {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    #[test]
    fn an_ipv4_header_is_the_specifications_bytes() {
        let h = encode(Some(&info("192.0.2.7:40000", "198.51.100.1:443")));
        let mut want = SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 198, 51, 100, 1]);
        want.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        assert_eq!(h, want);
        let (addrs, len) = decode(&h).unwrap();
        assert_eq!(len, 28);
        assert_eq!(
            addrs,
            Some((
                "192.0.2.7:40000".parse().unwrap(),
                "198.51.100.1:443".parse().unwrap()
            ))
        );
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let h = encode(Some(&info("192.0.2.7:1", "[2001:db8::1]:2")));
        assert_eq!(h.len(), 16 + 36);
        let (addrs, _) = decode(&h).unwrap();
        let (src, dst) = addrs.unwrap();
        assert_eq!(src, "[::ffff:192.0.2.7]:1".parse().unwrap());
        assert_eq!(dst, "[2001:db8::1]:2".parse().unwrap());
    }

    #[test]
    fn no_addresses_make_a_local_header() {
        let h = encode(None);
        assert_eq!(&h[12..], &[0x20, 0, 0, 0]);
        assert_eq!(decode(&h), Ok((None, 16)));
    }

    #[test]
    fn the_decoder_refuses_what_is_not_a_whole_header() {
        let h = encode(Some(&info("192.0.2.7:1", "192.0.2.8:2")));
        for cut in 0..h.len() {
            assert!(decode(&h[..cut]).is_err(), "{cut} bytes");
        }
        assert!(decode(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}

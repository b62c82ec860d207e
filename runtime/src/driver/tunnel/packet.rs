//! What the tunnel reads of the packets it carries: an IP packet's addresses, and
//! whether a packet from a peer may reach the host's IP stack (its source within
//! the peer's routes, its `virtio_net_hdr` describing it), as WireGuard checks its
//! peers' allowed addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::segment::{GSO_NONE, GSO_TCPV4, GSO_TCPV6, NEEDS_CSUM, VNET_HDR};

/// `virtio_net_hdr` flags this tunnel accepts: the checksum is to be filled in, or
/// was checked.
const VNET_FLAGS: u8 = NEEDS_CSUM | 0x02;

/// True if `sdu` (a `header`-byte `virtio_net_hdr`, when `header` is 10, then an IP
/// packet) may go to the device: an IPv4 or IPv6 packet from an address in `routes`,
/// whose offload header describes it (a known segmentation type of its family, a
/// checksum position inside it).
pub(super) fn admit(sdu: &[u8], header: usize, routes: &[crate::config::tun::Prefix]) -> bool {
    let Some(ip) = sdu.get(header..) else {
        return false;
    };
    let Some(src) = source(ip) else { return false };
    if !routes.iter().any(|r| r.contains(src)) {
        return false;
    }
    if header != VNET_HDR {
        return header == 0;
    }
    let le = |at: usize| usize::from(u16::from_le_bytes([sdu[at], sdu[at + 1]]));
    let (flags, gso) = (sdu[0], sdu[1]);
    let family_ok = match gso {
        GSO_NONE => true,
        GSO_TCPV4 => src.is_ipv4() && le(4) > 0,
        GSO_TCPV6 => src.is_ipv6() && le(4) > 0,
        _ => false,
    };
    let csum_ok = flags & NEEDS_CSUM == 0 || le(6) + le(8) + 2 <= ip.len();
    flags & !VNET_FLAGS == 0 && family_ok && csum_ok
}

/// The source address of an IPv4 or IPv6 packet.
fn source(packet: &[u8]) -> Option<IpAddr> {
    address(packet, 12, 8)
}

/// The destination address of an IPv4 or IPv6 packet.
pub(super) fn destination(packet: &[u8]) -> Option<IpAddr> {
    address(packet, 16, 24)
}

/// The address at byte `v4` of an IPv4 header or `v6` of an IPv6 one, if the packet
/// is long enough to hold its whole header's addresses.
fn address(packet: &[u8], v4: usize, v6: usize) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let b: [u8; 4] = packet.get(v4..v4 + 4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 if packet.len() >= 40 => {
            let b: [u8; 16] = packet.get(v6..v6 + 16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{admit, destination};
    use crate::config::tun::Prefix;

    /// An IPv4 packet from `src` after a virtio_net_hdr of `flags`, `gso`, `gso_size`,
    /// `csum_start`, `csum_offset`.
    fn sdu(src: [u8; 4], hdr: [u16; 5]) -> Vec<u8> {
        let mut v = vec![hdr[0] as u8, hdr[1] as u8];
        for f in &hdr[2..] {
            v.extend_from_slice(&f.to_le_bytes());
        }
        v.extend_from_slice(&0u16.to_le_bytes()); // csum_offset
        let mut ip = vec![0x45u8; 60];
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&[10, 77, 0, 1]);
        v.extend_from_slice(&ip);
        v
    }

    #[test]
    fn only_a_peers_addresses_with_a_sound_header_are_admitted() {
        let routes = [Prefix::parse("10.77.0.2/32").unwrap()];
        // flags, gso_type, hdr_len, gso_size, csum_start (csum_offset follows).
        let plain = sdu([10, 77, 0, 2], [0, 0, 0, 0, 0]);
        assert!(admit(&plain, 10, &routes));
        assert!(
            !admit(&sdu([10, 77, 0, 9], [0, 0, 0, 0, 0]), 10, &routes),
            "spoofed"
        );
        assert!(
            !admit(&sdu([10, 77, 0, 2], [4, 0, 0, 0, 0]), 10, &routes),
            "flags"
        );
        assert!(
            !admit(&sdu([10, 77, 0, 2], [0, 4, 0, 1400, 0]), 10, &routes),
            "TCPv6 on v4"
        );
        assert!(
            !admit(&sdu([10, 77, 0, 2], [0, 1, 0, 0, 0]), 10, &routes),
            "no gso_size"
        );
        assert!(admit(&sdu([10, 77, 0, 2], [0, 1, 0, 1400, 0]), 10, &routes));
        assert!(
            !admit(&sdu([10, 77, 0, 2], [1, 0, 0, 0, 59]), 10, &routes),
            "csum beyond"
        );
        assert!(!admit(&plain[..12], 10, &routes), "truncated");
        assert!(!admit(&[], 10, &routes));
    }

    #[test]
    fn destinations_of_both_families() {
        let mut v4 = vec![0x45u8; 20];
        v4[16..20].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(destination(&v4), Some("10.77.0.2".parse().unwrap()));
        let mut v6 = vec![0x60u8; 40];
        v6[24..40].copy_from_slice(&"fd77::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(destination(&v6), Some("fd77::2".parse().unwrap()));
        assert_eq!(destination(&v4[..19]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(destination(&[]), None);
    }
}

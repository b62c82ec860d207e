//! The tunnel's rules (`rina tun`, `[tun]`): a TUN device with addresses, the name this
//! host's tunnel registers, and which destination prefixes go to which other host's
//! tunnel (`[[tun.peer]]`), each over one unreliable flow.

use std::net::IpAddr;

use rina_core::ApplicationName;

use super::DifIndex;

/// `[tun]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunConfig {
    /// The device's name (`rina0` by default).
    pub name: String,
    /// The DIF the flows are in.
    pub dif: DifIndex,
    /// The name this host's tunnel registers: other hosts' tunnels send to it.
    pub app: ApplicationName,
    /// The device's addresses, each with its prefix (`10.77.0.1/24`).
    pub addresses: Vec<Prefix>,
    /// The device's MTU; `None`: the largest packet one PDU of the DIF carries.
    pub mtu: Option<usize>,
    /// The other hosts' tunnels and the destinations routed to each.
    pub peers: Vec<TunPeer>,
}

/// `[[tun.peer]]`: packets to `routes` go to the tunnel registered as `app`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunPeer {
    /// The other tunnel's name.
    pub app: ApplicationName,
    /// The destinations it serves.
    pub routes: Vec<Prefix>,
}

impl TunConfig {
    /// The peer whose route is the longest prefix holding `dst`.
    pub fn peer_for(&self, dst: IpAddr) -> Option<usize> {
        self.peers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.routes.iter().map(move |r| (i, r)))
            .filter(|(_, r)| r.contains(dst))
            .max_by_key(|(_, r)| r.len)
            .map(|(i, _)| i)
    }
}

/// An address and a prefix length (`10.77.0.0/24`, `fd77::1/64`); a bare address is
/// a whole-length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The address as written (host bits kept: a device address keeps them).
    pub addr: IpAddr,
    /// Bits of `addr` that are the network.
    pub len: u8,
}

impl Prefix {
    /// Reads `ADDR` or `ADDR/LEN`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, len })
    }

    /// True if `ip` (of the same family) is in the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    #[test]
    fn prefixes_hold_what_they_should() {
        assert!(p("10.77.0.0/24").contains("10.77.0.200".parse().unwrap()));
        assert!(!p("10.77.0.0/24").contains("10.77.1.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(p("10.0.0.1").contains("10.0.0.1".parse().unwrap()));
        assert!(!p("10.0.0.1").contains("10.0.0.2".parse().unwrap()));
        assert!(p("fd77::/64").contains("fd77::9".parse().unwrap()));
        assert!(!p("fd77::/64").contains("10.0.0.1".parse().unwrap()));
        assert!(p("::/0").contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "fd::/129", "10.0.0/8", "x/1", "10.0.0.0/-1"] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_longest_route_wins() {
        let peer = |app: &str, routes: &[&str]| TunPeer {
            app: app.parse().unwrap(),
            routes: routes.iter().map(|r| p(r)).collect(),
        };
        let c = TunConfig {
            name: "rina0".into(),
            dif: DifIndex(1),
            app: "me".parse().unwrap(),
            addresses: vec![p("10.77.0.1/24")],
            mtu: None,
            peers: vec![
                peer("wide", &["10.0.0.0/8", "fd00::/8"]),
                peer("narrow", &["10.77.0.2/32"]),
            ],
        };
        assert_eq!(c.peer_for("10.77.0.2".parse().unwrap()), Some(1));
        assert_eq!(c.peer_for("10.77.0.3".parse().unwrap()), Some(0));
        assert_eq!(c.peer_for("fd00::1".parse().unwrap()), Some(0));
        assert_eq!(c.peer_for("192.0.2.1".parse().unwrap()), None);
    }
}

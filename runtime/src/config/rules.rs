//! Rule matching: address patterns, port ranges and application-name templates.
//!
//! Matching is on the path of every `connect` and `bind` of an INET socket: it does
//! not allocate unless a rule matches (then only the application name is built).

use std::net::{IpAddr, SocketAddr};

use rina_core::ApplicationName;

use super::{AppTemplate, DefaultPolicy, DifIndex, Rule};

/// The transport a socket stands for: a stream socket (TCP) or a datagram socket
/// (UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// `SOCK_STREAM`: reliable flows.
    Tcp,
    /// `SOCK_DGRAM`: unreliable flows.
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// A set of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port (inclusive).
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Which socket addresses a rule matches: `HOST:PORTS`.
///
/// HOST is `*`, an IPv4 address or prefix (`10.0.0.0/8`), or an IPv6 address or prefix
/// in brackets (`[fd00::/8]`); PORTS is `*`, a port, or a range `8000-8099`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrPattern {
    /// The network and prefix length; `None` matches any address of either family.
    pub net: Option<(IpAddr, u8)>,
    /// The ports.
    pub ports: PortRange,
}

/// Where a rule sends matching calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTarget {
    /// The DIF (a normal DIF declared in the file).
    pub dif: DifIndex,
    /// The application name: for `connect`, the application a flow is allocated to;
    /// for `listen`, the name registered. `{port}` and `{addr}` are replaced by the
    /// call's port and address.
    pub app: AppTemplate,
    /// For `connect`: the name this process presents as the source of the flow
    /// (default: the program's name).
    pub local_app: Option<ApplicationName>,
    /// For `listen`: the name is served as one of a pool (other members may register
    /// it too if their rules say so as well; flows are spread over them).
    pub pool: bool,
    /// For `listen`: where remote applications show (`accept`, `getpeername`,
    /// `recvfrom`).
    pub peers: crate::synthetic::PeerRange,
}

/// The outcome of matching a call against the rules.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision<'a> {
    /// No rule matched and the default passes: leave the call to libc.
    Pass,
    /// No rule matched and the default denies.
    Deny,
    /// A rule matched: the call goes to RINA.
    Rina {
        /// The rule that matched.
        rule: &'a Rule,
        /// The application name with templates filled in.
        app: ApplicationName,
    },
}

impl AddrPattern {
    /// Parses `HOST:PORTS`.
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (host, ports, bracketed) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: missing ']' after an IPv6 address"))?;
            let p = p
                .strip_prefix(':')
                .ok_or_else(|| format!("{s:?}: expected ':PORT' after ']'"))?;
            (h, p, true)
        } else {
            let (h, p) = s.rsplit_once(':').ok_or_else(|| {
                format!(
                    "{s:?}: expected HOST:PORT (e.g. \"127.0.0.1:5000\", \"[::1]:80\", \"*:*\")"
                )
            })?;
            (h, p, false)
        };
        let net = if host == "*" {
            None
        } else {
            let p = super::tun::Prefix::parse(host).map_err(|e| format!("{s:?}: {e}"))?;
            let (ip, len) = (p.addr, p.len);
            if ip.is_ipv6() != bracketed {
                return Err(if bracketed {
                    format!("{s:?}: only IPv6 addresses go in brackets")
                } else {
                    format!("{s:?}: write IPv6 addresses in brackets, e.g. \"[{ip}]:80\"")
                });
            }
            if masked(ip, len) != ip {
                return Err(format!("{s:?}: host bits set beyond the /{len} prefix"));
            }
            Some((ip, len))
        };
        let ports = if ports == "*" {
            PortRange {
                first: 0,
                last: u16::MAX,
            }
        } else {
            let port = |p: &str| {
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("{s:?}: {p:?} is not a port (1-65535)"))
            };
            match ports.split_once('-') {
                Some((a, b)) => {
                    let (first, last) = (port(a)?, port(b)?);
                    if first > last {
                        return Err(format!("{s:?}: port range {first}-{last} is empty"));
                    }
                    PortRange { first, last }
                }
                None => {
                    let p = port(ports)?;
                    PortRange { first: p, last: p }
                }
            }
        };
        Ok(Self { net, ports })
    }

    /// True if `addr` is in the pattern. An IPv4 pattern also matches the same address
    /// written IPv4-mapped in IPv6 (`::ffff:a.b.c.d`).
    pub fn matches(&self, addr: SocketAddr) -> bool {
        let port = addr.port();
        if port < self.ports.first || port > self.ports.last {
            return false;
        }
        let Some((net, len)) = self.net else {
            return true;
        };
        let ip = match (net, addr.ip()) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (_, ip) => ip,
        };
        ip.is_ipv4() == net.is_ipv4() && masked(ip, len) == net
    }
}

fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

impl std::fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.net {
            None => f.write_str("*")?,
            Some((IpAddr::V4(ip), 32)) => write!(f, "{ip}")?,
            Some((IpAddr::V6(ip), 128)) => write!(f, "[{ip}]")?,
            Some((IpAddr::V4(ip), l)) => write!(f, "{ip}/{l}")?,
            Some((IpAddr::V6(ip), l)) => write!(f, "[{ip}/{l}]")?,
        }
        match self.ports {
            PortRange {
                first: 0,
                last: u16::MAX,
            } => f.write_str(":*"),
            PortRange { first, last } if first == last => write!(f, ":{first}"),
            PortRange { first, last } => write!(f, ":{first}-{last}"),
        }
    }
}

/// Where a call to `addr` on a `proto` socket goes: the first matching rule, else the
/// default.
///
/// Allocates nothing unless a rule matches (then only the application name). A rule's
/// name cannot fail to fill (see [`AppTemplate::fill`]); if it ever did, the call is
/// denied rather than passed to TCP/IP, since a rule said RINA (D4).
pub(super) fn decide(
    rules: &[Rule],
    default: DefaultPolicy,
    addr: SocketAddr,
    proto: Proto,
) -> Decision<'_> {
    match rules
        .iter()
        .find(|r| r.proto.is_none_or(|p| p == proto) && r.pattern.matches(addr))
    {
        Some(rule) => match rule.target.app.fill(addr) {
            Ok(app) => Decision::Rina { rule, app },
            Err(_) => Decision::Deny,
        },
        None => match default {
            DefaultPolicy::Pass => Decision::Pass,
            DefaultPolicy::Deny => Decision::Deny,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, a: &str) -> bool {
        AddrPattern::parse(p).unwrap().matches(a.parse().unwrap())
    }

    #[test]
    fn patterns_match() {
        assert!(m("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!m("127.0.0.1:5000", "127.0.0.1:5001"));
        assert!(m("10.0.0.0/8:*", "10.9.8.7:1"));
        assert!(!m("10.0.0.0/8:*", "11.0.0.1:1"));
        assert!(
            m("10.0.0.0/8:8000-8099", "[::ffff:10.1.2.3]:8050"),
            "v4-mapped"
        );
        assert!(!m("10.0.0.0/8:8000-8099", "10.1.2.3:8100"));
        assert!(m("[fd00::/8]:80", "[fd12::1]:80"));
        assert!(!m("[fd00::/8]:80", "[fe80::1]:80"));
        assert!(!m("[fd00::/8]:80", "10.0.0.1:80"));
        assert!(m("*:*", "[::1]:1"));
        assert!(m("*:443", "1.2.3.4:443"));
        assert!(m("0.0.0.0/0:*", "1.2.3.4:9"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, why) in [
            ("127.0.0.1", "HOST:PORT"),
            ("127.0.0.1:0", "not a port"),
            ("127.0.0.1:70000", "not a port"),
            ("127.0.0.1:9-3", "empty"),
            ("300.1.1.1:80", "not an IP"),
            ("::1:80", "brackets"),
            ("[127.0.0.1]:80", "brackets"),
            ("10.0.0.1/8:80", "host bits"),
            ("10.0.0.0/33:80", "prefix length"),
            ("[::1]80", "':PORT'"),
        ] {
            let e = AddrPattern::parse(p).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = AddrPattern::parse(&s);
        }
    }
}

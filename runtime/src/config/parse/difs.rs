//! Validation of the `[[dif]]` entries: each DIF's kind and settings (UDP and
//! Ethernet shims, normal DIFs with what they are over, how they join and which
//! neighbours they keep).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::raw::{OneOrMany, RawDif, RawEnroll};
use super::{list_or_none, Validator, MAX_DIF_DURATION, R};
use crate::config::{
    DifConfig, DifIndex, DifKind, EthShimConfig, Neighbor, NormalDifConfig, UdpShimConfig,
};
use rina_core::name::MAX_NAME_PART;
use rina_core::ApplicationName;

impl Validator<'_> {
    /// Every DIF, in file order (a normal DIF is over DIFs declared before it).
    pub(super) fn difs(&self, raw: Vec<Spanned<RawDif>>) -> R<Vec<DifConfig>> {
        let all: Vec<String> = raw
            .iter()
            .map(|d| d.get_ref().name.get_ref().clone())
            .collect();
        let mut difs: Vec<DifConfig> = Vec::new();
        for d in raw {
            let span = d.span();
            let d = d.into_inner();
            if difs.iter().any(|x| x.name == *d.name.get_ref()) {
                return Err(self.error(
                    d.name.span(),
                    format!("DIF {:?} is declared twice", d.name.get_ref()),
                ));
            }
            self.dif_name(&d.name)?;
            let kind = match d.kind.get_ref().as_str() {
                "udp" => DifKind::Udp(self.udp(&d, &span)?),
                "ethernet" => DifKind::Ethernet(self.ethernet(&d, &span)?),
                "normal" => DifKind::Normal(Box::new(self.normal(&d, &span, &difs, &all)?)),
                other => {
                    return Err(self.error(
                        d.kind.span(),
                        format!(
                        "unknown DIF type {other:?} (expected \"udp\", \"ethernet\" or \"normal\")"
                    ),
                    ))
                }
            };
            difs.push(DifConfig {
                name: d.name.into_inner(),
                kind,
            });
        }
        Ok(difs)
    }

    pub(super) fn not_for(&self, present: Option<Range<usize>>, key: &str, kind: &str) -> R<()> {
        match present {
            Some(span) => Err(self.error(span, format!("`{key}` does not apply to a {kind} DIF"))),
            None => Ok(()),
        }
    }

    /// Keys of normal DIFs, which a shim DIF of `kind` must not have.
    fn not_normal_keys(&self, d: &RawDif, kind: &str) -> R<()> {
        for (span, key) in [
            (d.over.as_ref().map(Spanned::span), "over"),
            (d.ipcp.as_ref().map(Spanned::span), "ipcp"),
            (d.bootstrap.as_ref().map(Spanned::span), "bootstrap"),
            (d.address.as_ref().map(Spanned::span), "address"),
            (d.enroll_via.as_ref().map(Spanned::span), "enroll-via"),
            (d.neighbors.as_ref().map(Spanned::span), "neighbors"),
            (
                d.enrollment_timeout.as_ref().map(Spanned::span),
                "enrollment-timeout",
            ),
            (
                d.keepalive_interval.as_ref().map(Spanned::span),
                "keepalive-interval",
            ),
            (
                d.keepalive_misses.as_ref().map(Spanned::span),
                "keepalive-misses",
            ),
            (
                d.security.as_ref().map(Spanned::span),
                "security (a shim DIF is secured by the normal DIFs over it)",
            ),
        ] {
            self.not_for(span, key, kind)?;
        }
        Ok(())
    }

    fn ethernet(&self, d: &RawDif, span: &Range<usize>) -> R<EthShimConfig> {
        self.not_normal_keys(d, "ethernet")?;
        self.not_for(d.bind.as_ref().map(Spanned::span), "bind", "ethernet")?;
        self.not_for(
            d.peers.as_ref().map(Spanned::span),
            "peers",
            "ethernet (peers are found by broadcast)",
        )?;
        self.not_for(
            d.mtu.as_ref().map(Spanned::span),
            "mtu",
            "ethernet (the interface's MTU is used)",
        )?;
        let interface = d.interface.as_ref().ok_or_else(|| {
            self.error(
                span.clone(),
                format!(
                    "Ethernet DIF {:?} needs `interface = \"<name>\"`",
                    d.name.get_ref()
                ),
            )
        })?;
        let name = interface.get_ref();
        if name.is_empty()
            || name.len() > 15
            || name.contains(['/', ' '])
            || name == "."
            || name == ".."
        {
            return Err(self.error(
                interface.span(),
                format!("{name:?} is not an interface name (1 to 15 characters, no '/' or space)"),
            ));
        }
        Ok(EthShimConfig {
            interface: name.clone(),
        })
    }

    fn udp(&self, d: &RawDif, span: &Range<usize>) -> R<UdpShimConfig> {
        self.not_normal_keys(d, "udp")?;
        self.not_for(d.interface.as_ref().map(Spanned::span), "interface", "udp")?;
        let bind = d.bind.as_ref().ok_or_else(|| {
            self.error(
                span.clone(),
                format!("UDP DIF {:?} needs `bind = \"IP:PORT\"`", d.name.get_ref()),
            )
        })?;
        let bind_addr = self.endpoint(bind)?;
        let mtu = match &d.mtu {
            None if bind_addr.ip().is_loopback() => 65000,
            None if bind_addr.is_ipv4() => 1452,
            None => 1432,
            Some(m) => {
                let v = *m.get_ref();
                if !(576..=65000).contains(&v) {
                    return Err(
                        self.error(m.span(), format!("mtu {v} is out of range (576..=65000)"))
                    );
                }
                v as usize
            }
        };
        let mut peers = Vec::new();
        if let Some(p) = &d.peers {
            for (name, addr) in p.get_ref() {
                peers.push((name.clone(), self.remote(addr, bind_addr)?));
            }
        }
        Ok(UdpShimConfig {
            bind: bind_addr,
            peers,
            mtu,
        })
    }

    fn normal(
        &self,
        d: &RawDif,
        span: &Range<usize>,
        earlier: &[DifConfig],
        all: &[String],
    ) -> R<NormalDifConfig> {
        self.not_for(d.bind.as_ref().map(Spanned::span), "bind", "normal")?;
        self.not_for(
            d.interface.as_ref().map(Spanned::span),
            "interface",
            "normal",
        )?;
        self.not_for(d.mtu.as_ref().map(Spanned::span), "mtu", "normal")?;
        self.not_for(d.peers.as_ref().map(Spanned::span), "peers", "normal")?;
        let names = self.over(d, span, earlier, all)?;
        let ipcp_name = d.ipcp.as_ref().map(|n| self.name(n)).transpose()?;
        let join = self.join(d, span, &names, earlier)?;
        let (enrollment_timeout, keepalive_interval, keepalive_misses) = self.timers(d)?;
        let mut neighbors = Vec::new();
        if let Some(list) = &d.neighbors {
            for n in list.get_ref() {
                let e = n.get_ref();
                neighbors.push(self.adjacency(d, &names, earlier, e, n.span(), "neighbors")?);
            }
        }
        let over = names.iter().map(|n| index_of(earlier, n)).collect();
        let security = d.security.as_ref().map(|s| self.security(s)).transpose()?;
        let role = self.role(d, &join)?;
        Ok(NormalDifConfig {
            over,
            ipcp_name,
            join,
            neighbors,
            enrollment_timeout,
            keepalive_interval,
            keepalive_misses,
            security,
            role,
        })
    }

    /// The DIFs a normal DIF is over: each declared before it, none twice.
    fn over(
        &self,
        d: &RawDif,
        span: &Range<usize>,
        earlier: &[DifConfig],
        all: &[String],
    ) -> R<Vec<String>> {
        let Some(over) = &d.over else {
            return Err(self.error(
                span.clone(),
                format!(
                    "normal DIF {:?} needs `over = [\"<lower DIF>\"]`",
                    d.name.get_ref()
                ),
            ));
        };
        let listed: Vec<(String, Range<usize>)> = match over.get_ref() {
            OneOrMany::One(s) => vec![(s.clone(), over.span())],
            OneOrMany::Many(v) => v.iter().map(|n| (n.get_ref().clone(), n.span())).collect(),
        };
        if listed.is_empty() {
            return Err(self.error(over.span(), "`over` names no DIF"));
        }
        let mut names: Vec<String> = Vec::with_capacity(listed.len());
        for (n, at) in listed {
            if names.contains(&n) {
                return Err(self.error(at, format!("`over` names {n:?} twice")));
            }
            if !earlier.iter().any(|e| e.name == n) {
                let why = if n == *d.name.get_ref() {
                    "a DIF cannot be over itself".to_owned()
                } else if all.contains(&n) {
                    "it is declared below this one; declare lower DIFs first".to_owned()
                } else {
                    format!(
                        "no such DIF (declared above: {})",
                        list_or_none(earlier.iter().map(|e| e.name.as_str()))
                    )
                };
                return Err(self.error(at, format!("`over` names {n:?}: {why}")));
            }
            names.push(n);
        }
        Ok(names)
    }

    /// Enrollment time-out, keepalive interval and misses (defaults 5 s, 2 s, 3).
    fn timers(&self, d: &RawDif) -> R<(Duration, Duration, u32)> {
        let enrollment_timeout = d
            .enrollment_timeout
            .as_ref()
            .map_or(Ok(Duration::from_secs(5)), |t| {
                self.duration(t, "enrollment-timeout", false, MAX_DIF_DURATION)
            })?;
        let keepalive_interval = d
            .keepalive_interval
            .as_ref()
            .map_or(Ok(Duration::from_secs(2)), |t| {
                self.duration(t, "keepalive-interval", false, MAX_DIF_DURATION)
            })?;
        let keepalive_misses = match &d.keepalive_misses {
            None => 3,
            Some(m) => {
                let v = *m.get_ref();
                if !(1..=1000).contains(&v) {
                    return Err(self.error(m.span(), "keepalive-misses must be 1..=1000"));
                }
                v as u32
            }
        };
        Ok((enrollment_timeout, keepalive_interval, keepalive_misses))
    }

    fn endpoint(&self, s: &Spanned<String>) -> R<SocketAddr> {
        s.get_ref().parse().map_err(|_| {
            self.error(
                s.span(),
                format!(
                    "{:?} is not an IP:PORT endpoint (e.g. \"127.0.0.1:7000\", \"[::1]:7000\")",
                    s.get_ref()
                ),
            )
        })
    }

    /// An endpoint to send to from a shim bound to `bind`.
    fn remote(&self, s: &Spanned<String>, bind: SocketAddr) -> R<SocketAddr> {
        let a = self.endpoint(s)?;
        let problem = if a.port() == 0 {
            Some("port 0 cannot be sent to".to_owned())
        } else if a.ip().is_unspecified() {
            Some(format!("{} is not an address to send to", a.ip()))
        } else if a.is_ipv6() && bind.is_ipv4() {
            Some(format!(
                "an IPv6 endpoint cannot be reached from a shim bound to IPv4 {bind}"
            ))
        } else if a.is_ipv4() && bind.is_ipv6() && !bind.ip().is_unspecified() {
            Some(format!(
                "an IPv4 endpoint cannot be reached from a shim bound to IPv6 {bind}"
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(self.error(s.span(), format!("{:?}: {p}", s.get_ref()))),
            None => Ok(a),
        }
    }

    /// A neighbour named by `{ dif = ..., neighbor = ... }` (`key` is `enroll-via` or
    /// `neighbors`): the lower DIF (which may be left out when `over` names one) and how
    /// the neighbour is reached in it.
    pub(super) fn adjacency(
        &self,
        d: &RawDif,
        names: &[String],
        earlier: &[DifConfig],
        e: &RawEnroll,
        at: Range<usize>,
        key: &str,
    ) -> R<(DifIndex, Neighbor)> {
        let via = match &e.dif {
            Some(v) => {
                if !names.contains(v.get_ref()) {
                    return Err(self.error(
                        v.span(),
                        format!("`{key}.dif` {:?} is not in `over`", v.get_ref()),
                    ));
                }
                v.get_ref().clone()
            }
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(self.error(
                    at,
                    format!("`{key}` needs `dif = ...` when `over` names several DIFs"),
                ))
            }
        };
        let via_kind = earlier.iter().find(|x| x.name == via).map(|x| &x.kind);
        let neighbor = match (via_kind, &e.neighbor) {
            // Over Ethernet: a name resolved by broadcast; by default the DIF's own
            // name, which every member that takes newcomers answers to.
            // Over a normal DIF, the same: a name registered in it.
            (Some(DifKind::Ethernet(_) | DifKind::Normal(_)), None) => {
                Neighbor::Name(ApplicationName::new(d.name.get_ref().clone()))
            }
            (Some(DifKind::Ethernet(_) | DifKind::Normal(_)), Some(nb)) => {
                Neighbor::Name(self.name(nb)?)
            }
            (_, None) => {
                return Err(self.error(
                    at,
                    format!("`{key}` over {via:?} needs `neighbor = \"IP:PORT\"` or a peer's name"),
                ))
            }
            (kind, Some(nb)) => self.udp_neighbor(nb, &via, kind)?,
        };
        Ok((index_of(earlier, &via), neighbor))
    }

    /// A neighbour over a UDP shim: an endpoint of its family, or one of its peers.
    fn udp_neighbor(&self, nb: &Spanned<String>, via: &str, kind: Option<&DifKind>) -> R<Neighbor> {
        let udp = match kind {
            Some(DifKind::Udp(u)) => Some(u),
            _ => None,
        };
        if let Ok(a) = nb.get_ref().parse::<SocketAddr>() {
            if let Some(u) = udp {
                self.remote(nb, u.bind)?;
            }
            return Ok(Neighbor::Endpoint(a));
        }
        let peer = udp.and_then(|u| u.peers.iter().find(|(p, _)| p == nb.get_ref()));
        if let Some((name, at)) = peer {
            return Ok(Neighbor::Peer {
                name: name.clone(),
                at: *at,
            });
        }
        Err(self.error(
            nb.span(),
            format!(
                "neighbor {:?} is neither IP:PORT nor a peer of DIF {via:?}",
                nb.get_ref()
            ),
        ))
    }

    /// A DIF's name travels in enrollment messages as one `str8` and members answer to
    /// it as an application name: 1 to 255 bytes, no `|`, no control character.
    fn dif_name(&self, n: &Spanned<String>) -> R<()> {
        let name = n.get_ref();
        let problem = if name.is_empty() {
            "a DIF name cannot be empty".to_owned()
        } else if name.len() > MAX_NAME_PART {
            format!(
                "a DIF name is at most {MAX_NAME_PART} bytes (what enrollment carries); this one has {}",
                name.len()
            )
        } else if name.contains('|') {
            format!("DIF name {name:?}: '|' separates the parts of names and cannot be in one")
        } else if name.chars().any(char::is_control) {
            format!("DIF name {name:?} contains a control character")
        } else {
            return Ok(());
        };
        Err(self.error(n.span(), problem))
    }
}

/// The place of the DIF named `name` among those declared so far (which the caller
/// checked it is).
fn index_of(earlier: &[DifConfig], name: &str) -> DifIndex {
    DifIndex(
        earlier
            .iter()
            .position(|d| d.name == name)
            .unwrap_or(usize::MAX),
    )
}

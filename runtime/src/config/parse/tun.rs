//! Validation of `[tun]` (`rina tun`): the device's name and addresses, the DIF and
//! name of this host's tunnel, its MTU, and `[[tun.peer]]` routes.

use toml::Spanned;

use super::raw::RawTun;
use super::{Validator, R};
use crate::config::tun::{Prefix, TunConfig, TunPeer};
use crate::config::DifConfig;

/// Longest name the kernel takes for an interface (`IFNAMSIZ` less its NUL).
const IFNAME_MAX: usize = 15;

impl Validator<'_> {
    pub(super) fn tun(
        &self,
        raw: Option<Spanned<RawTun>>,
        difs: &[DifConfig],
    ) -> R<Option<TunConfig>> {
        let Some(raw) = raw else { return Ok(None) };
        let raw = raw.into_inner();
        let name = match &raw.name {
            None => "rina0".to_owned(),
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref().len() <= IFNAME_MAX
                    && n.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    return Err(self.error(
                        n.span(),
                        format!(
                            "invalid device name {:?}: 1 to {IFNAME_MAX} letters, digits, '-', '_' or '.'",
                            n.get_ref()
                        ),
                    ));
                }
                n.get_ref().clone()
            }
        };
        let mtu = match &raw.mtu {
            None => None,
            Some(m) if (576..=65_535).contains(m.get_ref()) => Some(*m.get_ref() as usize),
            Some(m) => {
                return Err(self.error(
                    m.span(),
                    "mtu must be 576..=65535 (IPv4's least and IP's most)",
                ))
            }
        };
        let mut peers = Vec::new();
        for p in raw.peer.unwrap_or_default() {
            let p = p.into_inner();
            let routes = p
                .routes
                .iter()
                .map(|r| self.prefix(r))
                .collect::<R<Vec<_>>>()?;
            peers.push(TunPeer {
                app: self.name(&p.app)?,
                routes,
            });
        }
        Ok(Some(TunConfig {
            name,
            dif: self.normal_dif(&raw.dif, difs)?,
            app: self.name(&raw.app)?,
            addresses: raw
                .addresses
                .iter()
                .map(|a| self.prefix(a))
                .collect::<R<Vec<_>>>()?,
            mtu,
            peers,
        }))
    }

    fn prefix(&self, s: &Spanned<String>) -> R<Prefix> {
        Prefix::parse(s.get_ref()).map_err(|e| self.error(s.span(), e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse_str;

    const DIFS: &str = "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:7000\"\n\n\
        [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = \"udp\"\nbootstrap = true\n";

    #[test]
    fn a_tunnel_parses_and_each_mistake_names_its_line() {
        let good = format!(
            "{DIFS}[tun]\ndif = \"net\"\napp = \"a\"\naddresses = [\"10.77.0.1/24\", \"fd77::1/64\"]\n\n\
             [[tun.peer]]\napp = \"b\"\nroutes = [\"10.77.0.2/32\", \"fd77::2\"]\n"
        );
        let c = parse_str(&good, Path::new("t.toml")).unwrap();
        let t = c.tun.expect("a tunnel");
        assert_eq!((t.name.as_str(), t.mtu), ("rina0", None));
        assert_eq!(t.addresses[1].to_string(), "fd77::1/64");
        assert_eq!(t.peers[0].routes[1].to_string(), "fd77::2/128");
        assert_eq!(t.peer_for("10.77.0.2".parse().unwrap()), Some(0));
        let cases = [
            ("name = \"a-very-long-device\"\n", "invalid device name"),
            ("mtu = 100\n", "mtu must be 576..=65535"),
            ("addresses = [\"10.77.0.1/40\"]\n", "prefix length"),
        ];
        for (line, needle) in cases {
            let text = format!("{DIFS}[tun]\ndif = \"net\"\napp = \"a\"\n{line}");
            let e = parse_str(&text, Path::new("t.toml")).expect_err(line);
            assert_eq!(e.line, 14, "{line}: {e}");
            assert!(e.message.contains(needle), "{line}: {e}");
        }
        let text = format!("{DIFS}[tun]\ndif = \"udp\"\napp = \"a\"\n");
        let e = parse_str(&text, Path::new("t.toml")).expect_err("a shim DIF");
        assert!(e.message.contains("shim DIF"), "{e}");
    }
}

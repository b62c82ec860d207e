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

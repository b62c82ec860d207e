//! Validation of the gateway's rules: `[[ingress]]` (an address of this host, the
//! DIF and application its connections go to) and `[[egress]]` (a name to register
//! and the address its flows go to).

use std::net::SocketAddr;

use toml::Spanned;

use super::raw::{RawEgress, RawIngress};
use super::{Validator, R};
use crate::config::{DifConfig, Egress, Ingress, Proto, DEFAULT_INGRESS_APP};

impl Validator<'_> {
    pub(super) fn ingress_rules(
        &self,
        raw: Vec<Spanned<RawIngress>>,
        difs: &[DifConfig],
    ) -> R<Vec<Ingress>> {
        let mut out: Vec<Ingress> = Vec::new();
        for r in raw {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let listen = self.socket_addr(&r.listen, "listen")?;
            let proto = self.proto(r.proto.as_ref())?.unwrap_or(Proto::Tcp);
            if let Some(other) = out.iter().find(|o| o.listen == listen && o.proto == proto) {
                return Err(self.error(
                    r.listen.span(),
                    format!(
                        "{proto} {listen} is taken by the ingress rule on line {} already",
                        other.line
                    ),
                ));
            }
            let local_app = match &r.local_app {
                Some(l) => self.name(l)?,
                None => DEFAULT_INGRESS_APP.parse().expect("a valid name"),
            };
            out.push(Ingress {
                listen,
                proto,
                dif: self.normal_dif(&r.dif, difs)?,
                app: self.name(&r.app)?,
                local_app,
                line,
            });
        }
        Ok(out)
    }

    pub(super) fn egress_rules(
        &self,
        raw: Vec<Spanned<RawEgress>>,
        difs: &[DifConfig],
    ) -> R<Vec<Egress>> {
        let mut out: Vec<Egress> = Vec::new();
        for r in raw {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let dif = self.normal_dif(&r.dif, difs)?;
            let app = self.name(&r.app)?;
            let proto = self.proto(r.proto.as_ref())?.unwrap_or(Proto::Tcp);
            if let Some(other) = out
                .iter()
                .find(|o| o.app == app && o.dif == dif && o.proto == proto)
            {
                return Err(self.error(
                    r.app.span(),
                    format!(
                        "{app} ({proto}) is served by the egress rule on line {} already",
                        other.line
                    ),
                ));
            }
            let proxy_protocol = match &r.proxy_protocol {
                Some(p) if *p.get_ref() && proto == Proto::Udp => {
                    return Err(self.error(
                        p.span(),
                        "proxy-protocol is for TCP: a UDP egress sends datagrams as they came",
                    ))
                }
                Some(p) => *p.get_ref(),
                None => false,
            };
            out.push(Egress {
                app,
                dif,
                to: self.socket_addr(&r.to, "to")?,
                proto,
                pool: r.pool.unwrap_or(false),
                proxy_protocol,
                line,
            });
        }
        Ok(out)
    }

    /// An IP address and a port other than 0 (`"0.0.0.0:8080"`, `"[::1]:80"`).
    fn socket_addr(&self, s: &Spanned<String>, key: &str) -> R<SocketAddr> {
        let addr: SocketAddr = s.get_ref().parse().map_err(|_| {
            self.error(
                s.span(),
                format!(
                    "{key} {:?} is not an address and port (\"0.0.0.0:8080\", \"[::1]:80\")",
                    s.get_ref()
                ),
            )
        })?;
        if addr.port() == 0 {
            return Err(self.error(s.span(), format!("{key} needs a port other than 0")));
        }
        Ok(addr)
    }
}

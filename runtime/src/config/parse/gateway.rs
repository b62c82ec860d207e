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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse_str, Proto};

    const DIFS: &str = r#"[[dif]]
name = "udp"
type = "udp"
bind = "127.0.0.1:7000"

[[dif]]
name = "net"
type = "normal"
over = "udp"
bootstrap = true
"#;

    /// The error for `rules` after [`DIFS`] (10 lines): its line (counted from the
    /// rules' first line) and message.
    fn err(rules: &str) -> (usize, String) {
        let e = parse_str(&format!("{DIFS}{rules}"), Path::new("gw.toml"))
            .expect_err("must be refused");
        (e.line - 10, e.message)
    }

    #[test]
    fn gateway_rules_parse_with_their_defaults() {
        let text = format!(
            "{DIFS}[[ingress]]\nlisten = \"0.0.0.0:8080\"\ndif = \"net\"\napp = \"web\"\n\n\
             [[ingress]]\nlisten = \"[::1]:53\"\nproto = \"udp\"\ndif = \"net\"\napp = \"dns\"\nlocal-app = \"edge\"\n\n\
             [[egress]]\napp = \"web\"\ndif = \"net\"\nto = \"127.0.0.1:80\"\nproxy-protocol = true\npool = true\n"
        );
        let c = parse_str(&text, Path::new("gw.toml")).unwrap();
        assert_eq!(c.ingress.len(), 2);
        let (web, dns) = (&c.ingress[0], &c.ingress[1]);
        assert_eq!(web.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!((web.proto, web.app.to_string()), (Proto::Tcp, "web".into()));
        assert_eq!(web.local_app.to_string(), "gateway");
        assert_eq!(
            (dns.proto, dns.local_app.to_string()),
            (Proto::Udp, "edge".into())
        );
        let e = &c.egress[0];
        assert_eq!(e.to, "127.0.0.1:80".parse().unwrap());
        assert!(e.proxy_protocol && e.pool && e.proto == Proto::Tcp);
        assert_eq!(e.line, 23);
    }

    #[test]
    fn each_mistake_names_its_line() {
        let cases: [(&str, usize, &str); 7] = [
            (
                "[[ingress]]\nlisten = \"8080\"\ndif = \"net\"\napp = \"web\"\n",
                2,
                "is not an address and port",
            ),
            (
                "[[ingress]]\nlisten = \"0.0.0.0:0\"\ndif = \"net\"\napp = \"web\"\n",
                2,
                "needs a port other than 0",
            ),
            (
                "[[ingress]]\nlisten = \"0.0.0.0:80\"\ndif = \"udp\"\napp = \"web\"\n",
                3,
                "shim DIF",
            ),
            (
                "[[ingress]]\nlisten = \"0.0.0.0:80\"\ndif = \"net\"\napp = \"a\"\n\n\
                 [[ingress]]\nlisten = \"0.0.0.0:80\"\ndif = \"net\"\napp = \"b\"\n",
                7,
                "taken by the ingress rule on line 1",
            ),
            (
                "[[egress]]\napp = \"web\"\ndif = \"net\"\nto = \"127.0.0.1:80\"\nproto = \"udp\"\n\
                 proxy-protocol = true\n",
                6,
                "proxy-protocol is for TCP",
            ),
            (
                "[[egress]]\napp = \"web\"\ndif = \"net\"\nto = \"127.0.0.1:80\"\n\n\
                 [[egress]]\napp = \"web\"\ndif = \"net\"\nto = \"127.0.0.1:81\"\n",
                7,
                "served by the egress rule on line 1",
            ),
            (
                "[[egress]]\napp = \"web\"\ndif = \"net\"\nto = \"127.0.0.1:80\"\nport = 1\n",
                5,
                "unknown field",
            ),
        ];
        for (rules, line, needle) in cases {
            let (at, message) = err(rules);
            assert_eq!(at, line, "{rules}: {message}");
            assert!(message.contains(needle), "{rules}: {message}");
        }
    }
}

//! The rules file as TOML gives it: the raw structures serde fills, each value with
//! its position in the text, before anything is validated.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) dif: Vec<Spanned<RawDif>>,
    #[serde(default)]
    pub(super) connect: Vec<Spanned<RawConnect>>,
    #[serde(default)]
    pub(super) listen: Vec<Spanned<RawListen>>,
    #[serde(default)]
    pub(super) name: Vec<Spanned<RawName>>,
    pub(super) default: Option<RawDefault>,
    pub(super) settings: Option<RawSettings>,
    pub(super) host: Option<Spanned<RawHost>>,
    #[serde(default)]
    pub(super) ingress: Vec<Spanned<RawIngress>>,
    #[serde(default)]
    pub(super) egress: Vec<Spanned<RawEgress>>,
    pub(super) tun: Option<Spanned<RawTun>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawDif {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) kind: Spanned<String>,
    pub(super) bind: Option<Spanned<String>>,
    pub(super) interface: Option<Spanned<String>>,
    pub(super) mtu: Option<Spanned<i64>>,
    pub(super) peers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(super) over: Option<Spanned<OneOrMany>>,
    pub(super) ipcp: Option<Spanned<String>>,
    pub(super) bootstrap: Option<Spanned<bool>>,
    pub(super) address: Option<Spanned<i64>>,
    pub(super) enroll_via: Option<Spanned<RawEnroll>>,
    pub(super) neighbors: Option<Spanned<Vec<Spanned<RawEnroll>>>>,
    pub(super) enrollment_timeout: Option<Spanned<String>>,
    pub(super) keepalive_interval: Option<Spanned<String>>,
    pub(super) keepalive_misses: Option<Spanned<i64>>,
    pub(super) security: Option<Spanned<RawSecurity>>,
    pub(super) role: Option<Spanned<String>>,
}

/// `[dif.security]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSecurity {
    pub(super) key: Option<Spanned<String>>,
    pub(super) trust: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) trust_dir: Option<Spanned<String>>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) rekey_after: Option<Spanned<String>>,
    pub(super) rekey_after_messages: Option<Spanned<i64>>,
    pub(super) names: Option<Vec<Spanned<RawNameAccess>>>,
    pub(super) pins: Option<Vec<Spanned<RawPin>>>,
}

/// `names = [{ name = "web*", keys = [...], allocate = [...] }]` in `[dif.security]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNameAccess {
    pub(super) name: Spanned<String>,
    pub(super) keys: Option<Vec<Spanned<String>>>,
    pub(super) allocate: Option<Vec<Spanned<String>>>,
}

/// `pins = [{ ipcp = "...", key = "..." }, { address = N, key = "..." }]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPin {
    pub(super) ipcp: Option<Spanned<String>>,
    pub(super) address: Option<Spanned<i64>>,
    pub(super) key: Spanned<String>,
}

/// `over = "udp0"` or `over = ["udp0", "eth0"]`, keeping each listed name's position.
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a DIF name or a list of DIF names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = seq.next_element()? {
                    v.push(n);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnroll {
    pub(super) dif: Option<Spanned<String>>,
    pub(super) neighbor: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawConnect {
    pub(super) to: Spanned<String>,
    pub(super) dif: Spanned<String>,
    pub(super) app: Spanned<String>,
    pub(super) local_app: Option<Spanned<String>>,
    pub(super) proto: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) on: Spanned<String>,
    pub(super) dif: Spanned<String>,
    pub(super) app: Spanned<String>,
    pub(super) proto: Option<Spanned<String>>,
    pub(super) pool: Option<bool>,
    pub(super) peers: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawName {
    #[serde(rename = "match")]
    pub(super) pattern: Spanned<String>,
    pub(super) dif: Spanned<String>,
    pub(super) app: Spanned<String>,
    pub(super) local_app: Option<Spanned<String>>,
    pub(super) proto: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefault {
    pub(super) action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSettings {
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) linger: Option<Spanned<String>>,
    pub(super) stack: Option<Spanned<String>>,
    pub(super) host_socket: Option<Spanned<String>>,
}

/// `[host]`: a host member's service to local programs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) socket: Option<Spanned<String>>,
    pub(super) state: Option<Spanned<String>>,
    pub(super) allow: Option<Vec<Spanned<RawAllow>>>,
}

/// `[[host.allow]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllow {
    pub(super) users: Option<Vec<Spanned<String>>>,
    pub(super) groups: Option<Vec<Spanned<String>>>,
    pub(super) difs: Option<Vec<Spanned<String>>>,
    pub(super) names: Option<Vec<Spanned<String>>>,
}

/// `[[ingress]]` (`rina gateway`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawIngress {
    pub(super) listen: Spanned<String>,
    pub(super) proto: Option<Spanned<String>>,
    pub(super) dif: Spanned<String>,
    pub(super) app: Spanned<String>,
    pub(super) local_app: Option<Spanned<String>>,
}

/// `[[egress]]` (`rina gateway`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawEgress {
    pub(super) app: Spanned<String>,
    pub(super) dif: Spanned<String>,
    pub(super) to: Spanned<String>,
    pub(super) proto: Option<Spanned<String>>,
    pub(super) pool: Option<bool>,
    pub(super) proxy_protocol: Option<Spanned<bool>>,
}

/// `[tun]` (`rina tun`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawTun {
    pub(super) name: Option<Spanned<String>>,
    pub(super) dif: Spanned<String>,
    pub(super) app: Spanned<String>,
    #[serde(default)]
    pub(super) addresses: Vec<Spanned<String>>,
    pub(super) mtu: Option<Spanned<i64>>,
    pub(super) peer: Option<Vec<Spanned<RawTunPeer>>>,
}

/// `[[tun.peer]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunPeer {
    pub(super) app: Spanned<String>,
    pub(super) routes: Vec<Spanned<String>>,
}

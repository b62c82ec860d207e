//! Rules: the typed, validated form of a rules file.
//!
//! A rules file (TOML) describes the DIFs this process joins and which socket calls go
//! to RINA. [`load`] reads and validates one; any mistake is a [`ConfigError`] that
//! names the file, line, column and problem. [`Config::match_connect`] and
//! [`Config::match_listen`] decide, for an address and port, whether a call goes to RINA
//! and with which DIF and application name.
//!
//! The types here are the contract between the parser (`parse.rs`), the matcher
//! (`rules.rs`), the runtime and the interposer.

mod describe;
mod gateway;
mod host;
mod names;
mod parse;
mod rules;
mod security;
mod template;
pub mod tun;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rina_core::ApplicationName;

pub use describe::open_dif;
pub use gateway::{Egress, Ingress, DEFAULT_INGRESS_APP, UDP_IDLE};
pub use host::{
    gid_of, groups_of, name_of, uid_of, HostAllow, HostService, HostSocket, Peer, StackMode,
    DEFAULT_HOST_SOCKET,
};
pub use names::NameRule;
pub use parse::{load, parse_str, ConfigError, MAX_DIF_DURATION, MAX_SETTINGS_DURATION};
pub use rules::{AddrPattern, Decision, PortRange, Proto, RuleTarget};
pub use security::{NameAccess, SecurityConfig};
pub use template::AppTemplate;

/// A whole, validated rules file.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// The DIFs this process joins, in file order; lower DIFs come before the DIFs
    /// stacked over them.
    pub difs: Vec<DifConfig>,
    /// Rules for `connect` (and `sendto` on datagram sockets), first match wins.
    pub connect: Vec<Rule>,
    /// Rules for `bind` + `listen` (and `bind` of datagram sockets), first match wins.
    pub listen: Vec<Rule>,
    /// Host-name rules (`[[name]]`), first match wins.
    pub names: Vec<NameRule>,
    /// What happens to calls no rule matches.
    pub default: DefaultPolicy,
    /// Process-wide settings.
    pub settings: Settings,
    /// The service to local programs, for a host member (`[host]`).
    pub host: Option<HostService>,
    /// The gateway's ingress rules (`[[ingress]]`; `rina gateway` only).
    pub ingress: Vec<Ingress>,
    /// The gateway's egress rules (`[[egress]]`; `rina gateway` only).
    pub egress: Vec<Egress>,
    /// The tunnel (`[tun]`; `rina tun` only).
    pub tun: Option<tun::TunConfig>,
}

/// A DIF of a rules file, by its place in [`Config::difs`]: what rules, DIFs and
/// requests refer to once the file is loaded (names are checked once, at load).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DifIndex(pub usize);

/// One DIF this process is a member of.
#[derive(Clone, Debug, PartialEq)]
pub struct DifConfig {
    /// The DIF's name (unique in the file).
    pub name: String,
    /// What kind of DIF, with its kind-specific settings.
    pub kind: DifKind,
}

/// The kinds of DIF.
#[derive(Clone, Debug, PartialEq)]
pub enum DifKind {
    /// A shim DIF over a UDP tunnel (IPv4 or IPv6).
    Udp(UdpShimConfig),
    /// A shim DIF straight over an Ethernet interface (`AF_PACKET`).
    Ethernet(EthShimConfig),
    /// A normal DIF.
    Normal(Box<NormalDifConfig>),
    /// A DIF of the host member, which serves this program (`stack = "host"`): only
    /// its name is known here.
    Host,
}

/// A UDP tunnel shim DIF.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpShimConfig {
    /// The local UDP endpoint (`bind = "127.0.0.1:7000"`).
    pub bind: SocketAddr,
    /// Statically known peers: IPC process (or DIF) name -> UDP endpoint.
    pub peers: Vec<(String, SocketAddr)>,
    /// Largest datagram payload the shim sends (default 1452 for IPv4, 1432 for IPv6
    /// on non-loopback addresses, 65000 on loopback).
    pub mtu: usize,
}

/// An Ethernet shim DIF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthShimConfig {
    /// The interface (`interface = "eth0"`), in the process's network namespace. Its
    /// MTU is the shim's.
    pub interface: String,
}

/// A normal DIF.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalDifConfig {
    /// The DIFs below this one (each declared earlier in the file).
    pub over: Vec<DifIndex>,
    /// This member's IPC process name (default: `<program>.<dif>|<pid>`, see
    /// [`default_member_name`], filled by the runtime when `None`).
    pub ipcp_name: Option<ApplicationName>,
    /// How this member joins.
    pub join: Join,
    /// More members to keep an adjacency with once enrolled: (lower DIF, neighbour).
    pub neighbors: Vec<(DifIndex, Neighbor)>,
    /// Enrollment settings.
    pub enrollment_timeout: Duration,
    /// Interval between keepalives on each N-1 flow.
    pub keepalive_interval: Duration,
    /// Keepalives missed before a neighbour is declared lost.
    pub keepalive_misses: u32,
    /// Its security (`None`: an open DIF).
    pub security: Option<SecurityConfig>,
    /// A leaf or a full member (`role = "leaf" | "member"`; default: a leaf in a
    /// program's own stack, a full member in `rina node` or when it bootstraps).
    pub role: rina_core::node::Role,
}

/// How a normal-DIF member joins its DIF.
#[derive(Clone, Debug, PartialEq)]
pub enum Join {
    /// This member is the first one: it assigns itself an address and serves as enroller.
    Bootstrap {
        /// Its address (default 1).
        address: u32,
    },
    /// Enroll through a neighbour that is already a member.
    Enroll {
        /// The DIF below through which the neighbour is reached (one of `over`).
        via: DifIndex,
        /// The neighbour: a peer name from the shim's `peers`, or a literal endpoint.
        neighbor: Neighbor,
    },
}

/// How a neighbour to enroll through is named.
#[derive(Clone, Debug, PartialEq)]
pub enum Neighbor {
    /// A UDP endpoint.
    Endpoint(SocketAddr),
    /// A peer of the UDP shim's `peers` table, by its name there, and its endpoint.
    Peer {
        /// Its name in the table.
        name: String,
        /// Its endpoint.
        at: SocketAddr,
    },
    /// An application name: over Ethernet, resolved by broadcast (a member's IPC
    /// process name, or the DIF's name for any member); over a normal DIF, a name
    /// registered in it.
    Name(ApplicationName),
}

/// One rule: which addresses it matches, and where matching calls go.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The addresses and ports it matches.
    pub pattern: AddrPattern,
    /// The kind of socket it matches (`proto = "tcp"` or `"udp"`); `None`: both.
    pub proto: Option<Proto>,
    /// Where a match goes.
    pub target: RuleTarget,
    /// 1-based line of the rule in the file (for `rina check` and messages).
    pub line: usize,
}

/// Where unmatched calls go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// To libc, as if there were no interposer (the default).
    #[default]
    Pass,
    /// Refused: `connect` fails with ECONNREFUSED, `bind` with EACCES.
    Deny,
}

/// Process-wide settings (`[settings]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// How long `connect` waits for a flow (including joining the DIF).
    pub connect_timeout: Duration,
    /// How long a process waits at exit for its flows to deliver what was written.
    pub linger: Duration,
    /// A stack of the program's own, or the host member's (`stack = "host"`).
    pub stack: StackMode,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(30),
            stack: StackMode::Embedded,
        }
    }
}

impl Config {
    /// The DIF with this name.
    pub fn dif(&self, name: &str) -> Option<&DifConfig> {
        self.difs.iter().find(|d| d.name == name)
    }

    /// The name of DIF `i` (empty if the file has no such DIF).
    pub fn dif_name(&self, i: DifIndex) -> &str {
        self.difs.get(i.0).map_or("", |d| d.name.as_str())
    }

    /// Where a `connect` (or a datagram's `sendto`) to `addr` on a `proto` socket goes.
    pub fn match_connect(&self, addr: SocketAddr, proto: Proto) -> Decision<'_> {
        rules::decide(&self.connect, self.default, addr, proto)
    }

    /// True if a connect to `addr` may go to RINA or be denied, whatever the socket's
    /// protocol: a connect rule's pattern matches it, it is a host-name rule's
    /// synthetic address, or the default denies. No template is filled: the hooks
    /// ask this first and decide (once) only when it holds.
    pub fn connect_may_match(&self, addr: SocketAddr) -> bool {
        self.default == DefaultPolicy::Deny
            || self.connect.iter().any(|r| r.pattern.matches(addr))
            || (!self.names.is_empty()
                && matches!(addr.ip().to_canonical(), IpAddr::V4(v4) if crate::synthetic::is_host_address(v4)))
    }

    /// Where a `bind`/`listen` on `addr` of a `proto` socket goes.
    pub fn match_listen(&self, addr: SocketAddr, proto: Proto) -> Decision<'_> {
        rules::decide(&self.listen, self.default, addr, proto)
    }

    /// The interfaces of the Ethernet shim DIFs (which need `CAP_NET_RAW`).
    pub fn ethernet_interfaces(&self) -> Vec<&str> {
        self.difs
            .iter()
            .filter_map(|d| match &d.kind {
                DifKind::Ethernet(e) => Some(e.interface.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Why this process cannot run these rules, if it lacks `CAP_NET_RAW` and they
    /// have an Ethernet shim (checked once, at load, so that a program stops at once
    /// with the reason rather than fail at its first call).
    pub fn missing_net_raw(&self) -> Option<shims::eth::EthError> {
        let iface = *self.ethernet_interfaces().first()?;
        (has_net_raw() == Some(false)).then(|| shims::eth::EthError::Permission {
            interface: iface.to_owned(),
        })
    }

    /// The first name rule matching `host`, with its application-name template filled
    /// in but for `{port}`.
    pub fn match_name(&self, host: &str) -> Option<(usize, AppTemplate)> {
        self.names
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.resolve(host).map(|t| (i, t)))
    }

    /// The rules for a fork child that makes RINA calls of its own while its parent's
    /// stack holds the configured endpoints: the child becomes one more member of each
    /// DIF. Its UDP shims bind a free port on the same address; a DIF the parent
    /// bootstraps is joined through the parent's endpoint; an IPC process name given
    /// in the rules gets the child's pid as its instance (member names are unique).
    pub fn for_fork_child(&self, pid: u32) -> Config {
        let mut c = self.clone();
        let shims: Vec<(DifIndex, SocketAddr)> = self
            .difs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match &d.kind {
                DifKind::Udp(u) => Some((DifIndex(i), u.bind)),
                DifKind::Ethernet(_) | DifKind::Normal(_) | DifKind::Host => None,
            })
            .collect();
        for d in &mut c.difs {
            match &mut d.kind {
                DifKind::Udp(u) => u.bind.set_port(0),
                // Another process on the interface has its own demultiplexing id.
                DifKind::Ethernet(_) | DifKind::Host => {}
                DifKind::Normal(n) => {
                    if let Some(name) = &mut n.ipcp_name {
                        name.process_instance = pid.to_string();
                    }
                    if matches!(n.join, Join::Bootstrap { .. }) {
                        let parent = n
                            .over
                            .iter()
                            .find_map(|o| shims.iter().find(|(i, _)| i == o));
                        if let Some((via, bind)) = parent {
                            let mut at = *bind;
                            if at.ip().is_unspecified() {
                                at.set_ip(match at {
                                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                                });
                            }
                            n.join = Join::Enroll {
                                via: *via,
                                neighbor: Neighbor::Endpoint(at),
                            };
                        }
                    }
                }
            }
        }
        c
    }

    /// Gives the members that would take this process's default names (see
    /// [`default_member_name`]) names of their own, `<pid>.<tag>`: a stack that
    /// replaces one handed to a keeper must not take the keeper's names, or its
    /// enrollment would replace the keeper's adjacencies (and end its flows).
    pub fn with_fresh_member_names(mut self, program: &str, pid: u32, tag: u16) -> Config {
        for d in &mut self.difs {
            if let DifKind::Normal(n) = &mut d.kind {
                if n.ipcp_name.is_none() {
                    let mut name = default_member_name(program, &d.name, pid);
                    name.process_instance = format!("{pid}.{tag:x}");
                    n.ipcp_name = Some(name);
                }
            }
        }
        self
    }

    /// A human-readable account of what this file makes a process do (`rina check`).
    pub fn describe(&self) -> String {
        describe::describe(self)
    }
}

/// The IPC process name a member of DIF `dif` takes when the rules give none
/// (`ipcp`): `<program>.<dif>` with the process id as instance (`nc.net|1234`). The
/// program's name is the basename of `argv[0]`; a `|` or control character in it
/// becomes `_`, and the process name is cut to the longest name part the wire
/// carries ([`MAX_NAME_PART`](rina_core::name::MAX_NAME_PART) bytes).
pub fn default_member_name(program: &str, dif: &str, pid: u32) -> ApplicationName {
    let mut name: String = format!("{program}.{dif}")
        .chars()
        .map(|c| if c == '|' || c.is_control() { '_' } else { c })
        .collect();
    let mut cut = name.len().min(rina_core::name::MAX_NAME_PART);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    ApplicationName::with_instance(name, pid.to_string())
}

/// Finds the rules file for a program, in the order of DESIGN.md D4: `RINA_CONFIG`,
/// then `$XDG_CONFIG_HOME/rina/<program>.toml` (or `~/.config/...`), then
/// `/etc/rina/<program>.toml`, then the same two places with `default.toml`.
/// `None`: no rules, everything passes to libc.
pub fn locate(program: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(p) = env("RINA_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let xdg = env("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    let mut dirs: Vec<PathBuf> = xdg.into_iter().map(|d| d.join("rina")).collect();
    dirs.push(PathBuf::from("/etc/rina"));
    for file in [format!("{program}.toml"), "default.toml".to_owned()] {
        for d in &dirs {
            let p = d.join(&file);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// True if this process may open raw Ethernet sockets (`CAP_NET_RAW` in its effective
/// set, from /proc/self/status); `None` if that cannot be told.
pub fn has_net_raw() -> Option<bool> {
    const CAP_NET_RAW: u32 = 13;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let eff = u64::from_str_radix(hex, 16).ok()?;
    Some(eff & (1 << CAP_NET_RAW) != 0)
}

/// True if `ip` is a loopback address (used for MTU defaults).
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

//! The account of a rules file that `rina check` prints: the DIFs it joins, the rules
//! in the order they apply, and what happens to a call no rule matches.

use std::fmt::Write as _;

use super::{Config, DefaultPolicy, DifKind, Join, Neighbor, Proto};

fn proto_text(p: Option<Proto>) -> String {
    p.map_or_else(|| " (tcp and udp)".to_owned(), |p| format!(" ({p} only)"))
}

/// The account `rina check` prints.
pub(super) fn describe(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: valid", c.path.display());
    host(&mut s, c);
    difs(&mut s, c);
    rules(&mut s, c);
    gateway(&mut s, c);
    tun(&mut s, c);
    let d = match c.default {
        DefaultPolicy::Pass => "pass to TCP/IP",
        DefaultPolicy::Deny => "refused",
    };
    let _ = writeln!(s, "anything else: {d}");
    let _ = writeln!(
        s,
        "connect timeout {:?}, linger at exit {:?}",
        c.settings.connect_timeout, c.settings.linger
    );
    s
}

/// What every DIF without security is, in one line (for `rina check` and the log).
pub fn open_dif(name: &str) -> String {
    format!("DIF {name} is open: anyone who reaches its members' endpoints can join it and read its traffic")
}

/// Who runs the stack: the host member serving this program, or this host member
/// serving others.
fn host(s: &mut String, c: &Config) {
    if let super::StackMode::Host(at) = &c.settings.stack {
        let _ = writeln!(
            s,
            "served by the host member at {at}: no stack of its own (it joins nothing, \
             holds no key and needs no CAP_NET_RAW)"
        );
    }
    if let Some(h) = &c.host {
        let who = if h.allow.is_empty() {
            "root and this user".to_owned()
        } else {
            format!("{} [[host.allow]] entries", h.allow.len())
        };
        let _ = writeln!(
            s,
            "serves the programs of this host at {} (for {who})",
            h.socket
        );
    }
}

/// The gateway's rules (`rina gateway`), a line each.
fn gateway(s: &mut String, c: &Config) {
    if c.ingress.is_empty() && c.egress.is_empty() {
        return;
    }
    let _ = writeln!(s, "rina gateway:");
    for i in &c.ingress {
        let _ = writeln!(
            s,
            "  line {}: {} {} -> flows to {} in {} (from {})",
            i.line,
            i.proto,
            i.listen,
            i.app,
            c.dif_name(i.dif),
            i.local_app
        );
    }
    for e in &c.egress {
        let _ = writeln!(
            s,
            "  line {}: {} registered in {}{} -> {} {}{}",
            e.line,
            e.app,
            c.dif_name(e.dif),
            if e.pool { " (pool)" } else { "" },
            e.proto,
            e.to,
            if e.proxy_protocol {
                ", opening with a PROXY v2 header"
            } else {
                ""
            }
        );
    }
}

/// The tunnel (`rina tun`): its device and routes.
fn tun(s: &mut String, c: &Config) {
    let Some(t) = &c.tun else { return };
    let addrs: Vec<String> = t.addresses.iter().map(ToString::to_string).collect();
    let mtu = t
        .mtu
        .map_or_else(|| "what one PDU carries".to_owned(), |m| m.to_string());
    let _ = writeln!(
        s,
        "rina tun: device {} ({}; mtu {mtu}) as {} in {}",
        t.name,
        if addrs.is_empty() {
            "no address".to_owned()
        } else {
            addrs.join(", ")
        },
        t.app,
        c.dif_name(t.dif)
    );
    for p in &t.peers {
        let routes: Vec<String> = p.routes.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "  {} -> flow to {}", routes.join(", "), p.app);
    }
}

/// The DIFs, a few lines each.
fn difs(s: &mut String, c: &Config) {
    let _ = writeln!(s, "DIFs ({}):", c.difs.len());
    for d in &c.difs {
        match &d.kind {
            DifKind::Host => {
                let _ = writeln!(s, "  {}: a DIF of the host member", d.name);
            }
            DifKind::Udp(u) => {
                let _ = writeln!(
                    s,
                    "  {}: UDP shim bound to {} (MTU {})",
                    d.name, u.bind, u.mtu
                );
                for (name, addr) in &u.peers {
                    let _ = writeln!(s, "    peer {name} at {addr}");
                }
            }
            DifKind::Ethernet(e) => {
                let _ = writeln!(
                    s,
                    "  {}: Ethernet shim on interface {} (its MTU; peers found by broadcast)",
                    d.name, e.interface
                );
            }
            DifKind::Normal(n) => {
                // The name the runtime forms (`default_member_name`), with what it
                // depends on left as placeholders.
                let who = n.ipcp_name.as_ref().map_or_else(
                    || format!("{}.{}|<pid>", "<program>", d.name),
                    ToString::to_string,
                );
                let role = match n.role {
                    rina_core::node::Role::Leaf => "as a leaf",
                    rina_core::node::Role::Full => "as a full member",
                    rina_core::node::Role::Auto => {
                        "(a leaf in a program, a full member in `rina node`)"
                    }
                };
                let join = match &n.join {
                    Join::Bootstrap { address } => format!("bootstraps it (address {address})"),
                    Join::Enroll { via, neighbor } => {
                        let n = match neighbor {
                            Neighbor::Endpoint(a) => a.to_string(),
                            Neighbor::Peer { name, .. } => format!("peer {name}"),
                            Neighbor::Name(p) => format!("peer {p}"),
                        };
                        format!("enrolls through {n} over {} {role}", c.dif_name(*via))
                    }
                };
                let _ = writeln!(
                    s,
                    "  {}: normal DIF over {}; member {who} {join}",
                    d.name,
                    n.over
                        .iter()
                        .map(|&i| c.dif_name(i))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let _ = writeln!(
                    s,
                    "    enrollment timeout {:?}, keepalive every {:?}, lost after {} misses",
                    n.enrollment_timeout, n.keepalive_interval, n.keepalive_misses
                );
                let line = match &n.security {
                    Some(sec) => sec.describe(&d.name),
                    None => open_dif(&d.name),
                };
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    let defaults = c
        .difs
        .iter()
        .any(|d| matches!(&d.kind, DifKind::Normal(n) if n.ipcp_name.is_none()));
    if defaults {
        let _ = writeln!(
            s,
            "  (<program>: the basename of the program's argv[0], `node` under `rina node`; \
             <pid>: its process id; `ipcp = \"...\"` names a member explicitly)"
        );
    }
}

/// The connect, listen and name rules, in the order they apply.
fn rules(s: &mut String, c: &Config) {
    let _ = writeln!(s, "connect rules ({}), first match wins:", c.connect.len());
    for r in &c.connect {
        let local = r
            .target
            .local_app
            .as_ref()
            .map_or(String::new(), |l| format!(" as {:?}", l.to_string()));
        let _ = writeln!(
            s,
            "  line {}: connect {}{} -> DIF {}, application {:?}{local}",
            r.line,
            r.pattern,
            proto_text(r.proto),
            c.dif_name(r.target.dif),
            r.target.app.as_str()
        );
    }
    let _ = writeln!(s, "listen rules ({}), first match wins:", c.listen.len());
    for r in &c.listen {
        let _ = writeln!(
            s,
            "  line {}: listen {}{} -> DIF {}, registers {:?}{}; peers show in {}",
            r.line,
            r.pattern,
            proto_text(r.proto),
            c.dif_name(r.target.dif),
            r.target.app.as_str(),
            if r.target.pool {
                " as one of a pool"
            } else {
                ""
            },
            r.target.peers,
        );
    }
    let _ = writeln!(s, "name rules ({}), first match wins:", c.names.len());
    for n in &c.names {
        let r = &n.rule;
        let re = n.pattern.as_str();
        let re = re
            .strip_prefix("^(?:")
            .and_then(|x| x.strip_suffix(")$"))
            .unwrap_or(re);
        let _ = writeln!(
            s,
            "  line {}: host names matching {re:?}{} -> DIF {}, application {:?}",
            r.line,
            proto_text(r.proto),
            c.dif_name(r.target.dif),
            r.target.app.as_str()
        );
    }
}

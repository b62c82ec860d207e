//! Host names a `[[name]]` rule matches: resolved without DNS to a synthetic address
//! in `127.64.0.0/10` ([`crate::synthetic::host_address`]), remembered here, and turned
//! into a flow to the rule's application when the program connects to it.
//!
//! The lookup functions' results are made by libc itself: the hooks call the real
//! `getaddrinfo`/`gethostbyname*` with the synthetic address in numeric form, so the
//! program frees them with the real `freeaddrinfo` and nothing of ours is in them.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use once_cell::sync::Lazy;
use parking_lot::Mutex;
use runtime::config::{AppTemplate, Decision, Proto};

use crate::state;
use crate::synthetic;

/// A resolved host name.
#[derive(Clone, Debug)]
struct Resolved {
    /// The host name (lower case).
    host: String,
    /// The name rule (index into the rules' `names`).
    rule: usize,
    /// The application-name template, filled but for `{port}`.
    app: AppTemplate,
}

static RESOLVED: Lazy<Mutex<BTreeMap<Ipv4Addr, Resolved>>> =
    Lazy::new(|| Mutex::new(BTreeMap::new()));

/// What a lookup of a host name gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No name rule matches: ask libc.
    Pass,
    /// A rule matches: this synthetic address.
    Address(Ipv4Addr),
    /// A rule matches but the name it gives is not a valid application name.
    NoName,
    /// The lookup failed inside the interposer (a bug): it fails, and never goes on
    /// to DNS, since a rule may have matched (fail closed, D4).
    Failed,
}

/// Resolves `host` through the name rules.
pub fn lookup(host: &CStr) -> Lookup {
    let Some(rules) = state::rules() else {
        return Lookup::Pass;
    };
    if rules.names.is_empty() {
        return Lookup::Pass;
    }
    let Ok(host) = host.to_str() else {
        return Lookup::Pass;
    };
    if host.parse::<IpAddr>().is_ok() {
        return Lookup::Pass;
    }
    let Some((rule, app)) = rules.match_name(host) else {
        return Lookup::Pass;
    };
    if app
        .fill(SocketAddr::from((Ipv4Addr::BROADCAST, u16::MAX)))
        .is_err()
    {
        return Lookup::NoName;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let mut ip = synthetic::host_address(&host);
    let mut table = RESOLVED.lock();
    // Another name with the same hash takes the next free address.
    while let Some(r) = table.get(&ip) {
        if r.host == host {
            break;
        }
        ip = synthetic::next_host_address(ip);
    }
    table.insert(ip, Resolved { host, rule, app });
    Lookup::Address(ip)
}

/// The numeric form to hand libc for `host`, for a lookup of address family `af`
/// (IPv4-mapped for AF_INET6).
pub fn numeric(ip: Ipv4Addr, af: libc::c_int) -> CString {
    let text = if af == libc::AF_INET6 {
        ip.to_ipv6_mapped().to_string()
    } else {
        ip.to_string()
    };
    CString::new(text).expect("an address has no NUL")
}

/// Where a connect (or a datagram) to `sa` on a `proto` socket goes, if `sa` is a
/// synthetic host address; `None` for any other address. An address of the range
/// that was never resolved here is refused (fail closed).
pub fn decide(sa: SocketAddr, proto: Proto) -> Option<Decision<'static>> {
    let rules = state::rules()?;
    if rules.names.is_empty() {
        return None;
    }
    let ip = synthetic::as_host_address(sa)?;
    let r = RESOLVED.lock().get(&ip).cloned();
    let Some(r) = r else {
        return Some(Decision::Deny);
    };
    let rule = &rules.names.get(r.rule)?.rule;
    if rule.proto.is_some_and(|p| p != proto) {
        return Some(Decision::Deny);
    }
    Some(match r.app.fill(sa) {
        Ok(app) => Decision::Rina { rule, app },
        Err(_) => Decision::Deny,
    })
}

/// Holds the table's lock across `fork` (see [`crate::hold_across_fork`]).
pub fn register_atfork() {
    crate::hold_across_fork!(RESOLVED);
}

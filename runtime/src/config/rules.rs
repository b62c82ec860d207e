//! Rule matching: address patterns, port ranges, application-name templates.

use std::net::{IpAddr, SocketAddr};

use rina_core::ApplicationName;

use super::{Config, DefaultPolicy, Rule};

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
    pub dif: String,
    /// The application name: for `connect`, the application a flow is allocated to;
    /// for `listen`, the name registered. `{port}` and `{addr}` are replaced by the
    /// call's port and address.
    pub app: String,
    /// For `connect`: the name this process presents as the source of the flow
    /// (default: the program's name).
    pub local_app: Option<String>,
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

/// Decides where a call to `addr` goes (placeholder until the matcher lands).
pub(super) fn decide<'a>(rules: &'a [Rule], default: DefaultPolicy, addr: SocketAddr) -> Decision<'a> {
    let _ = (rules, addr, IpAddr::from([0u8; 4]));
    match default {
        DefaultPolicy::Pass => Decision::Pass,
        DefaultPolicy::Deny => Decision::Deny,
    }
}

/// Describes a config (placeholder).
pub(super) fn describe(config: &Config) -> String {
    format!("{config:?}")
}

#[allow(dead_code)]
fn _uses(_: ApplicationName) {}

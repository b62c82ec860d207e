//! TOML -> [`Config`], validated. Every mistake is a [`ConfigError`] that names the
//! file, line and column, and says what was expected (DESIGN.md D4: rules fail closed).
//!
//! # The format
//!
//! ```toml
//! # A UDP tunnel shim DIF.
//! [[dif]]
//! name = "udp0"
//! type = "udp"
//! bind = "127.0.0.1:7000"          # or "[::1]:7000"; port 0 picks a free port
//! mtu = 65000                      # optional, 576..=65000; default 65000 if the bind address
//!                                  # is loopback, else 1452 (IPv4) / 1432 (IPv6)
//! [dif.peers]                      # optional static peers: name = "ip:port"
//! server = "127.0.0.1:7000"
//!
//! # A shim DIF straight over Ethernet (raw frames, Ethertype 0xD1F0; needs CAP_NET_RAW).
//! [[dif]]
//! name = "eth0dif"
//! type = "ethernet"
//! interface = "eth0"               # the interface's MTU is the shim's
//!
//! # A normal DIF over it.
//! [[dif]]
//! name = "net"
//! type = "normal"
//! over = ["udp0"]                  # or over = "udp0"; each a DIF declared EARLIER in the file
//! ipcp = "server.net"              # optional IPC process name (application-name text form)
//! bootstrap = true                 # the first member; optional `address = 1` (default 1, > 0)
//! # or, instead of bootstrap:
//! # enroll-via = { dif = "udp0", neighbor = "127.0.0.1:7000" }
//! #   neighbor: "ip:port" or a name from that shim's peers; over an Ethernet DIF, a name
//! #   found by broadcast (a member's IPC process name; left out: any member of the DIF);
//! #   `dif` may be left out when `over` names exactly one DIF
//! neighbors = [{ neighbor = "127.0.0.1:7002" }]  # optional: more members to keep an
//! #   adjacency with once a member (same form as enroll-via); each adjacency, the one
//! #   enrolled through included, is set up again when lost, with back-off
//! enrollment-timeout = "5s"        # optional; durations are "500ms", "5s", "2m", "1h";
//!                                  # default 5s, at most 1h
//! keepalive-interval = "2s"        # default 2s, at most 1h
//! keepalive-misses = 3             # default 3, 1..=1000
//!
//! [[connect]]                      # first match wins, in file order
//! to = "127.0.0.1:5000"            # HOST:PORTS, see below
//! dif = "net"                      # must name a normal DIF
//! app = "echo"                     # remote application; "{port}" and "{addr}" are filled in
//! local-app = "nc-client"          # optional: the name this side presents
//! proto = "tcp"                    # optional: "tcp" (stream sockets) or "udp" (datagram
//!                                  # sockets); default: both
//!
//! [[listen]]                       # first match wins, in file order
//! on = "127.0.0.1:5000"
//! dif = "net"
//! app = "echo"                     # the name registered; templates as for connect
//! proto = "udp"                    # optional, as for connect
//! pool = true                      # optional: one of several servers of the name (all
//!                                  # must say so); otherwise a name another member
//!                                  # serves is refused (EADDRINUSE)
//! peers = "100.64.0.0/10"          # optional: where remote applications show (a range
//!                                  # hashed into, or one address); default 100.64.0.0/10
//!
//! [[name]]                         # host names resolved without DNS (getaddrinfo & co.)
//! match = '^(?P<app>[a-z0-9-]+)\.rina$'  # a regular expression; the whole name must match
//! dif = "net"
//! app = "{app}"                    # captures by name or number, {name}, {port}
//! # local-app, proto: as for connect
//!
//! [default]
//! action = "pass"                  # or "deny": what happens to a call no rule matches
//!                                  # (connect and listen alike); default "pass"
//!
//! [settings]
//! connect-timeout = "10s"          # default 10s, at most 24h
//! linger = "30s"                   # default 30s, 0 to 24h
//! ```
//!
//! `HOST:PORTS`: HOST is `*` (any address of either family), an IPv4 address, an IPv4
//! prefix (`10.0.0.0/8`), an IPv6 address in brackets (`[::1]`) or an IPv6 prefix in
//! brackets (`[fd00::/8]`); bits beyond the prefix must be zero. PORTS is `*`, a port
//! `N` or a range `A-B` (1..=65535, A <= B). An IPv4 pattern also matches the same
//! address written IPv4-mapped (`::ffff:10.0.0.1`), as programs with AF_INET6 sockets do.
//!
//! Application-name templates: `{port}` becomes the call's port number and `{addr}` its
//! IP address in text form (an IPv4-mapped IPv6 address is written as plain IPv4, so
//! AF_INET and AF_INET6 programs reach the same name). Templates are checked when the
//! file loads by filling them with the longest addresses and ports there are, so
//! matching a call can never produce an invalid name.
//!
//! Peer and neighbour endpoints must be addresses one can send to (not `0.0.0.0`, not
//! port 0) of the shim's address family.
//!
//! What the wire carries bounds names: a DIF name is 1 to 255 bytes (one `str8` in
//! enrollment) with no `|` or control character, since members also answer to it as an
//! application name; each part of an application name is at most 255 bytes. A
//! `[[name]]` template that no host name can fill into a valid name is refused.
//!
//! Only a regular file of UTF-8 text is read ([`load`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rina_core::name::MAX_NAME_PART;
use rina_core::ApplicationName;
use serde::Deserialize;
use toml::Spanned;

use super::names::{self, NameRule};
use super::rules::{AddrPattern, Proto, RuleTarget};
use super::{
    Config, DefaultPolicy, DifConfig, DifKind, EthShimConfig, Join, Neighbor, NormalDifConfig,
    Rule, Settings, UdpShimConfig,
};

/// A rules file could not be read or is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), position(*line, *column))]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, 0 if the error has no position (the file cannot be read).
    pub line: usize,
    /// 1-based column, 0 if none.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line, or `None` when the error has no position (the file cannot be read).
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }

    /// 1-based column (in characters), or `None` when the error has no position.
    pub fn col(&self) -> Option<usize> {
        (self.line > 0).then_some(self.column)
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn position(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}:{column}")
    }
}

/// Reads and validates a rules file.
///
/// Only a regular file is read: a FIFO, a directory or a device is refused without
/// waiting on it (the file is opened nonblocking and checked before anything is read).
/// The text must be UTF-8; the first byte that is not is reported with its position.
///
/// # Errors
/// A [`ConfigError`] naming the file, line, column and problem.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = read_rules(path).map_err(|message| ConfigError {
        path: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
    })?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => parse_str(text, path),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The prefix up to `valid_up_to` is UTF-8 by definition.
            let text = std::str::from_utf8(good).unwrap_or_default();
            let v = Validator { text, path };
            let bad = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
            Err(v.error(
                text.len()..text.len(),
                format!(
                    "byte 0x{bad:02X} is not UTF-8 text: a rules file is UTF-8 (re-encode it, e.g. `iconv -t UTF-8`)"
                ),
            ))
        }
    }
}

/// The bytes of a rules file, if it is a regular file that can be read.
fn read_rules(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    // Nonblocking: opening a FIFO for reading would otherwise wait for a writer.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let t = f
        .metadata()
        .map_err(|e| format!("cannot read: {e}"))?
        .file_type();
    let what = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        return Err(format!(
            "is {what}, not a rules file (rules are read from a regular file only)"
        ));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// Parses and validates rules from `text` (read from `path`, named in errors).
///
/// # Errors
/// A [`ConfigError`] naming the file, line, column and problem.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let v = Validator { text, path };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e
            .message()
            .trim_end()
            .replace("expected i64", "expected an integer")
            .replace("expected u32", "expected an integer");
        let said = v.error(span, message);
        // `[dif]` for `[[dif]]` (or the reverse for `[settings]`): toml's own message
        // ("invalid type", "duplicate key") does not say so and may point at a later
        // line. The earlier of the two mistakes is reported.
        match v.wrong_table_kind() {
            Some(w) if (w.line, w.column) <= (said.line, said.column) => w,
            _ => said,
        }
    })?;
    v.build(raw)
}

/// The longest `enrollment-timeout` and `keepalive-interval` (a neighbour is declared
/// lost after at most 1000 intervals).
pub const MAX_DIF_DURATION: Duration = Duration::from_secs(3600);
/// The longest `connect-timeout` and `linger`.
pub const MAX_SETTINGS_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Keys that are arrays of tables (`[[dif]]`) and keys that are tables (`[settings]`).
const ARRAYS_OF_TABLES: [&str; 4] = ["dif", "connect", "listen", "name"];
const TABLES: [&str; 2] = ["default", "settings"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    dif: Vec<Spanned<RawDif>>,
    #[serde(default)]
    connect: Vec<Spanned<RawConnect>>,
    #[serde(default)]
    listen: Vec<Spanned<RawListen>>,
    #[serde(default)]
    name: Vec<Spanned<RawName>>,
    default: Option<RawDefault>,
    settings: Option<RawSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDif {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    bind: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    peers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    over: Option<Spanned<OneOrMany>>,
    ipcp: Option<Spanned<String>>,
    bootstrap: Option<Spanned<bool>>,
    address: Option<Spanned<i64>>,
    enroll_via: Option<Spanned<RawEnroll>>,
    neighbors: Option<Spanned<Vec<Spanned<RawEnroll>>>>,
    enrollment_timeout: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<String>>,
    keepalive_misses: Option<Spanned<i64>>,
}

/// `over = "udp0"` or `over = ["udp0", "eth0"]`, keeping each listed name's position.
enum OneOrMany {
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
struct RawEnroll {
    dif: Option<Spanned<String>>,
    neighbor: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConnect {
    to: Spanned<String>,
    dif: Spanned<String>,
    app: Spanned<String>,
    local_app: Option<Spanned<String>>,
    proto: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    on: Spanned<String>,
    dif: Spanned<String>,
    app: Spanned<String>,
    proto: Option<Spanned<String>>,
    pool: Option<bool>,
    peers: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawName {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    dif: Spanned<String>,
    app: Spanned<String>,
    local_app: Option<Spanned<String>>,
    proto: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefault {
    action: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSettings {
    connect_timeout: Option<Spanned<String>>,
    linger: Option<Spanned<String>>,
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

type R<T> = Result<T, ConfigError>;

impl Validator<'_> {
    /// The text before byte `at` (clamped to the text and to a character boundary).
    fn before(&self, at: usize) -> &str {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        &self.text[..at]
    }

    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let before = self.before(span.start);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: one_line(&message.into()),
        }
    }

    /// The first table header of the wrong kind: an array of tables written as one
    /// table (`[dif]` for `[[dif]]`), a sub-table before any entry it could belong to
    /// (`[dif.peers]` before the first `[[dif]]`), or a table written as an array
    /// (`[[settings]]`). Looked for only when toml refused the file.
    fn wrong_table_kind(&self) -> Option<ConfigError> {
        let mut at = 0;
        let mut seen: Vec<&str> = Vec::new();
        for line in self.text.split_inclusive('\n') {
            let start = at;
            at += line.len();
            let l = line.trim_start();
            let here = start + (line.len() - l.len());
            let head = l.split('#').next().unwrap_or_default().trim_end();
            let (double, key) =
                if let Some(k) = head.strip_prefix("[[").and_then(|k| k.strip_suffix("]]")) {
                    (true, k.trim())
                } else if let Some(k) = head.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
                    (false, k.trim())
                } else {
                    continue;
                };
            let what = |k: &str| if k == "dif" { "DIF" } else { "rule" };
            if double {
                if TABLES.contains(&key) {
                    return Some(self.error(
                        here..here,
                        format!(
                            "`[[{key}]]` makes a list; write `[{key}]` (one such section per file)"
                        ),
                    ));
                }
                seen.push(key);
            } else if ARRAYS_OF_TABLES.contains(&key) {
                return Some(self.error(
                    here..here,
                    format!(
                        "`[{key}]` is a single table; write `[[{key}]]` (double brackets), once per {}",
                        what(key)
                    ),
                ));
            } else if let Some((parent, _)) = key.split_once('.') {
                let parent = parent.trim();
                if ARRAYS_OF_TABLES.contains(&parent) && !seen.contains(&parent) {
                    return Some(self.error(
                        here..here,
                        format!(
                            "`[{key}]` belongs to a `[[{parent}]]` entry, and none comes before it"
                        ),
                    ));
                }
            }
        }
        None
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.before(span.start).matches('\n').count() + 1
    }

    fn build(&self, raw: RawFile) -> R<Config> {
        let all: Vec<String> = raw
            .dif
            .iter()
            .map(|d| d.get_ref().name.get_ref().clone())
            .collect();
        let mut difs: Vec<DifConfig> = Vec::new();
        for d in raw.dif {
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
                "normal" => DifKind::Normal(self.normal(&d, &span, &difs, &all)?),
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
        let normal = |dif: &Spanned<String>| -> R<String> {
            match difs.iter().find(|d| d.name == *dif.get_ref()) {
                Some(DifConfig {
                    kind: DifKind::Normal(_),
                    ..
                }) => Ok(dif.get_ref().clone()),
                Some(_) => Err(self.error(
                    dif.span(),
                    format!(
                        "DIF {:?} is a shim DIF; rules must name a normal DIF",
                        dif.get_ref()
                    ),
                )),
                None => Err(self.error(
                    dif.span(),
                    format!(
                        "unknown DIF {:?} (declared DIFs: {})",
                        dif.get_ref(),
                        list_or_none(difs.iter().map(|d| d.name.as_str()))
                    ),
                )),
            }
        };
        let mut connect = Vec::new();
        for r in raw.connect {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let pattern = self.pattern(&r.to)?;
            let dif = normal(&r.dif)?;
            self.template(&r.app)?;
            if let Some(l) = &r.local_app {
                self.name(l)?;
            }
            connect.push(Rule {
                pattern,
                proto: self.proto(r.proto.as_ref())?,
                target: RuleTarget {
                    dif,
                    app: r.app.into_inner(),
                    local_app: r.local_app.map(Spanned::into_inner),
                    pool: false,
                    peers: Default::default(),
                },
                line,
            });
        }
        let mut listen = Vec::new();
        for r in raw.listen {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let pattern = self.pattern(&r.on)?;
            let dif = normal(&r.dif)?;
            self.template(&r.app)?;
            let peers = match &r.peers {
                None => Default::default(),
                Some(p) => p.get_ref().parse().map_err(|e| {
                    self.error(
                        p.span(),
                        format!(
                            "invalid peers {:?}: {e} (an address, or ADDRESS/PREFIX)",
                            p.get_ref()
                        ),
                    )
                })?,
            };
            listen.push(Rule {
                pattern,
                proto: self.proto(r.proto.as_ref())?,
                target: RuleTarget {
                    dif,
                    app: r.app.into_inner(),
                    local_app: None,
                    pool: r.pool.unwrap_or(false),
                    peers,
                },
                line,
            });
        }
        let mut names = Vec::new();
        for r in raw.name {
            let line = self.line_of(&r.span());
            let r = r.into_inner();
            let text = r.pattern.get_ref();
            let pattern = regex::Regex::new(&format!("^(?:{text})$")).map_err(|e| {
                self.error(
                    r.pattern.span(),
                    format!(
                        "invalid regular expression {text:?}: {}",
                        one_line(&e.to_string())
                    ),
                )
            })?;
            let dif = normal(&r.dif)?;
            names::check_template(&pattern, r.app.get_ref())
                .and_then(|()| names::check_shortest_fill(r.app.get_ref()))
                .map_err(|e| {
                    self.error(
                        r.app.span(),
                        format!("invalid application-name template: {e}"),
                    )
                })?;
            if let Some(l) = &r.local_app {
                self.name(l)?;
            }
            names.push(NameRule {
                pattern,
                rule: Rule {
                    pattern: AddrPattern::parse("*:*").expect("the any-address pattern"),
                    proto: self.proto(r.proto.as_ref())?,
                    target: RuleTarget {
                        dif,
                        app: r.app.into_inner(),
                        local_app: r.local_app.map(Spanned::into_inner),
                        pool: false,
                        peers: Default::default(),
                    },
                    line,
                },
            });
        }
        let default = match raw.default.and_then(|d| d.action) {
            None => DefaultPolicy::Pass,
            Some(a) => match a.get_ref().as_str() {
                "pass" => DefaultPolicy::Pass,
                "deny" => DefaultPolicy::Deny,
                other => {
                    return Err(self.error(
                        a.span(),
                        format!("unknown action {other:?} (expected \"pass\" or \"deny\")"),
                    ))
                }
            },
        };
        let mut settings = Settings::default();
        if let Some(s) = raw.settings {
            if let Some(t) = &s.connect_timeout {
                settings.connect_timeout =
                    self.duration(t, "connect-timeout", false, MAX_SETTINGS_DURATION)?;
            }
            if let Some(t) = &s.linger {
                settings.linger = self.duration(t, "linger", true, MAX_SETTINGS_DURATION)?;
            }
        }
        Ok(Config {
            path: self.path.to_path_buf(),
            difs,
            connect,
            listen,
            names,
            default,
            settings,
        })
    }

    fn not_for(&self, present: Option<Range<usize>>, key: &str, kind: &str) -> R<()> {
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
        let ipcp_name = d.ipcp.as_ref().map(|n| self.name(n)).transpose()?;
        let join = match (&d.bootstrap, &d.enroll_via) {
            (Some(b), Some(_)) if *b.get_ref() => {
                return Err(self.error(
                    b.span(),
                    "a member either bootstraps the DIF or enrolls (`enroll-via`), not both",
                ))
            }
            (Some(b), _) if *b.get_ref() => {
                let address = match &d.address {
                    None => 1,
                    Some(a) => {
                        let v = *a.get_ref();
                        if !(1..=i64::from(u32::MAX)).contains(&v) {
                            return Err(self.error(a.span(), "address must be 1..=4294967295"));
                        }
                        v as u32
                    }
                };
                Join::Bootstrap { address }
            }
            (_, Some(e)) => {
                self.not_for(
                    d.address.as_ref().map(Spanned::span),
                    "address",
                    "enrolling (only a bootstrap member sets its address)",
                )?;
                let e_ref = e.get_ref();
                let (via, neighbor) =
                    self.adjacency(d, &names, earlier, e_ref, e.span(), "enroll-via")?;
                Join::Enroll { via, neighbor }
            }
            _ => {
                return Err(self.error(
                    span.clone(),
                    format!(
                        "normal DIF {:?} needs `bootstrap = true` or `enroll-via = {{ ... }}`",
                        d.name.get_ref()
                    ),
                ))
            }
        };
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
        let mut neighbors = Vec::new();
        if let Some(list) = &d.neighbors {
            for n in list.get_ref() {
                neighbors.push(self.adjacency(
                    d,
                    &names,
                    earlier,
                    n.get_ref(),
                    n.span(),
                    "neighbors",
                )?);
            }
        }
        Ok(NormalDifConfig {
            over: names,
            ipcp_name,
            join,
            neighbors,
            enrollment_timeout,
            keepalive_interval,
            keepalive_misses,
        })
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
    fn adjacency(
        &self,
        d: &RawDif,
        names: &[String],
        earlier: &[DifConfig],
        e: &RawEnroll,
        at: Range<usize>,
        key: &str,
    ) -> R<(String, Neighbor)> {
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
                Neighbor::Name(d.name.get_ref().clone())
            }
            (Some(DifKind::Ethernet(_) | DifKind::Normal(_)), Some(nb)) => {
                self.name(nb)?;
                Neighbor::Name(nb.get_ref().clone())
            }
            (_, None) => {
                return Err(self.error(
                    at,
                    format!("`{key}` over {via:?} needs `neighbor = \"IP:PORT\"` or a peer's name"),
                ))
            }
            (kind, Some(nb)) => self.udp_neighbor(nb, &via, kind)?,
        };
        Ok((via, neighbor))
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
        if udp.is_some_and(|u| u.peers.iter().any(|(p, _)| p == nb.get_ref())) {
            return Ok(Neighbor::Name(nb.get_ref().clone()));
        }
        Err(self.error(
            nb.span(),
            format!(
                "neighbor {:?} is neither IP:PORT nor a peer of DIF {via:?}",
                nb.get_ref()
            ),
        ))
    }

    fn proto(&self, s: Option<&Spanned<String>>) -> R<Option<Proto>> {
        let Some(s) = s else { return Ok(None) };
        match s.get_ref().as_str() {
            "tcp" => Ok(Some(Proto::Tcp)),
            "udp" => Ok(Some(Proto::Udp)),
            other => Err(self.error(
                s.span(),
                format!(
                    "unknown proto {other:?} (expected \"tcp\" or \"udp\"; leave it out for both)"
                ),
            )),
        }
    }

    fn pattern(&self, s: &Spanned<String>) -> R<AddrPattern> {
        AddrPattern::parse(s.get_ref())
            .map_err(|e| self.error(s.span(), format!("invalid address: {e}")))
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

    fn name(&self, s: &Spanned<String>) -> R<ApplicationName> {
        s.get_ref().parse().map_err(|e| {
            self.error(
                s.span(),
                format!("invalid application name {:?}: {e}", s.get_ref()),
            )
        })
    }

    /// Checks an application-name template by filling it with sample values.
    fn template(&self, s: &Spanned<String>) -> R<()> {
        let t = s.get_ref();
        let rest = t.replace("{port}", "").replace("{addr}", "");
        if rest.contains('{') || rest.contains('}') {
            return Err(self.error(
                s.span(),
                format!("{t:?}: only {{port}} and {{addr}} can be filled in"),
            ));
        }
        let target = RuleTarget {
            dif: String::new(),
            app: t.clone(),
            local_app: None,
            pool: false,
            peers: Default::default(),
        };
        // The longest text any address and port fill in: if these give a valid name,
        // every call does (names only fail on length, `|` or control characters).
        for sample in [
            "255.255.255.255:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ] {
            target
                .app_for(sample.parse().expect("sample address"))
                .map_err(|e| {
                    self.error(s.span(), format!("invalid application name {t:?}: {e}"))
                })?;
        }
        Ok(())
    }

    /// A duration for `key`, at most `max`, and more than zero unless `zero_ok`.
    fn duration(
        &self,
        s: &Spanned<String>,
        key: &str,
        zero_ok: bool,
        max: Duration,
    ) -> R<Duration> {
        let d = parse_duration(s.get_ref()).ok_or_else(|| {
            self.error(
                s.span(),
                format!(
                    "{:?} is not a duration (e.g. \"500ms\", \"5s\", \"2m\", \"1h\")",
                    s.get_ref()
                ),
            )
        })?;
        if d.is_zero() && !zero_ok {
            return Err(self.error(s.span(), format!("{key} must be more than zero")));
        }
        if d > max {
            return Err(self.error(
                s.span(),
                format!(
                    "{key} {:?} is too long: at most {}h",
                    s.get_ref(),
                    max.as_secs() / 3600
                ),
            ));
        }
        Ok(d)
    }
}

/// Joins a multi-line message (toml writes some) into one line: `a; b`.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `a, b, c`, or `none`.
fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// `"500ms"`, `"5s"`, `"2m"`, `"1h"`. A number too large for any clock gives
/// [`Duration::MAX`] (refused by the caller's bound, with its position).
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    if n.is_empty() {
        return None;
    }
    let n: Option<u64> = n.parse().ok();
    let secs = |per: u64| {
        n.and_then(|n| n.checked_mul(per))
            .map_or(Duration::MAX, Duration::from_secs)
    };
    match unit.trim() {
        "ms" => Some(n.map_or(Duration::MAX, Duration::from_millis)),
        "s" => Some(secs(1)),
        "m" => Some(secs(60)),
        "h" => Some(secs(3600)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

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
//! bootstrap = true                 # the first member; optional `address = 1` (1..2^31)
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
//! role = "leaf"                    # optional: "leaf" (relays for no one, costs the DIF
//! #   nothing when it comes and goes) or "member" (a full member that relays and takes
//! #   newcomers); default: a leaf in a program's own stack, a member in `rina node`
//! #   and when it bootstraps
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
//! stack = "host"                   # optional: the host member serves this program (no
//!                                  # stack of its own, no [[dif]]: rules name its DIFs)
//! host-socket = "@rina-host"       # optional: where it listens (default "@rina-host")
//!
//! [host]                           # a host member (rina node) serving local programs:
//!                                  # see config/host.rs
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

mod difs;
mod gateway;
mod host;
mod join;
mod raw;
mod rules;
mod security;
mod tun;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rina_core::ApplicationName;
use toml::Spanned;

use super::{Config, Settings};
use raw::{RawFile, RawSettings};

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
const ARRAYS_OF_TABLES: [&str; 6] = ["dif", "connect", "listen", "name", "ingress", "egress"];
const TABLES: [&str; 4] = ["default", "settings", "host", "tun"];

/// Checks raw rules against the text they came from, for positions in errors.
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
        let settings = self.settings(raw.settings.as_ref())?;
        let difs = if matches!(settings.stack, crate::config::StackMode::Host(_)) {
            self.host_difs(&raw)?
        } else {
            self.difs(raw.dif)?
        };
        let host = self.host(raw.host)?;
        let connect = self.connect_rules(raw.connect, &difs)?;
        let listen = self.listen_rules(raw.listen, &difs)?;
        let names = self.name_rules(raw.name, &difs)?;
        let default = self.default_policy(raw.default)?;
        Ok(Config {
            path: self.path.to_path_buf(),
            ingress: self.ingress_rules(raw.ingress, &difs)?,
            egress: self.egress_rules(raw.egress, &difs)?,
            tun: self.tun(raw.tun, &difs)?,
            difs,
            connect,
            listen,
            names,
            default,
            settings,
            host,
        })
    }

    fn settings(&self, raw: Option<&RawSettings>) -> R<Settings> {
        let mut settings = Settings::default();
        if let Some(s) = raw {
            if let Some(t) = &s.connect_timeout {
                settings.connect_timeout =
                    self.duration(t, "connect-timeout", false, MAX_SETTINGS_DURATION)?;
            }
            if let Some(t) = &s.linger {
                settings.linger = self.duration(t, "linger", true, MAX_SETTINGS_DURATION)?;
            }
            settings.stack = self.stack_mode(s.stack.as_ref(), s.host_socket.as_ref())?;
        }
        Ok(settings)
    }

    fn name(&self, s: &Spanned<String>) -> R<ApplicationName> {
        s.get_ref().parse().map_err(|e| {
            self.error(
                s.span(),
                format!("invalid application name {:?}: {e}", s.get_ref()),
            )
        })
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

//! The host member (issue 13): one long-lived stack per host (network namespace) that
//! the programs of the host attach to instead of running a stack each.
//!
//! A program's rules choose it with `[settings] stack = "host"` ([`StackMode::Host`]):
//! its rules then name the host member's DIFs and declare none of their own. The
//! host member (`rina node`) serves programs when its rules have a `[host]` section
//! ([`HostService`]):
//!
//! ```toml
//! [host]
//! socket = "@rina-host"            # "@name": abstract (this network namespace); else a path
//! [[host.allow]]                   # who may use it (default: root and the node's own user)
//! users = ["alice", "1001"]        # user names or uids ...
//! groups = ["rina"]                # ... or groups (primary or supplementary)
//! difs = ["net"]                   # the DIFs they may use (default: all)
//! names = ["web*"]                 # the names they may register (default: all)
//! ```
//!
//! `state = "PATH"` in `[host]` says where the host member keeps the names it registered
//! for programs (default `/run/rina/host-<netns>-<socket>.json`), so that after a restart
//! it registers them again for the programs still holding their listeners.
//!
//! A local program's user is what the kernel says of its socket (`SO_PEERCRED`), its
//! groups what `/proc/<pid>/status` lists.

use std::path::PathBuf;

use rina_core::ipcp::NamePattern;

/// The socket name programs and the host member meet at when none is given.
pub const DEFAULT_HOST_SOCKET: &str = "@rina-host";

/// Where a program's RINA calls go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StackMode {
    /// A stack of its own, in the process (the default).
    #[default]
    Embedded,
    /// The host member at this socket serves it: no stack in the process.
    Host(HostSocket),
}

/// The local socket of a host member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostSocket {
    /// An abstract AF_UNIX name (without the leading NUL): one per network namespace.
    Abstract(String),
    /// A path in the file system.
    Path(PathBuf),
}

impl HostSocket {
    /// `@name` is abstract, anything else a path.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.strip_prefix('@') {
            Some("") => Err("an abstract socket name needs a name after '@'".into()),
            Some(n) if n.len() > 100 => {
                Err("the socket name is too long (at most 100 bytes)".into())
            }
            Some(n) => Ok(Self::Abstract(n.to_owned())),
            None if s.is_empty() => Err("the socket needs a name (\"@name\" or a path)".into()),
            None if s.len() > 100 => Err("the socket path is too long (at most 100 bytes)".into()),
            None => Ok(Self::Path(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for HostSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Abstract(n) => write!(f, "@{n}"),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A host member's service to local programs (`[host]`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostService {
    /// Where it listens.
    pub socket: HostSocket,
    /// Who may use it, first match wins; empty: root and the node's own user, for
    /// every DIF and name.
    pub allow: Vec<HostAllow>,
    /// Where it keeps the names it registered for programs, to register them again
    /// after a restart (`None`: under `/run/rina/`).
    pub state: Option<PathBuf>,
}

/// One `[[host.allow]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct HostAllow {
    /// Users it covers (uids).
    pub users: Vec<u32>,
    /// Groups it covers (gids).
    pub groups: Vec<u32>,
    /// The DIFs they may use (`None`: all).
    pub difs: Option<Vec<String>>,
    /// The names they may register (`None`: all).
    pub names: Option<Vec<String>>,
    /// Its line in the rules file (for messages).
    pub line: usize,
}

/// Who a local program is, as the kernel tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its process.
    pub pid: u32,
    /// Its user.
    pub uid: u32,
    /// Its groups: the primary one first.
    pub gids: Vec<u32>,
}

impl HostService {
    /// Whether `peer` may use `dif`, and register `name` in it (`None`: a flow is
    /// asked for, nothing registered). `Err` says why not (for the log).
    pub fn permits(&self, peer: &Peer, dif: &str, name: Option<&str>) -> Result<(), String> {
        if self.allow.is_empty() {
            let me = rustix::process::getuid().as_raw();
            return if peer.uid == 0 || peer.uid == me {
                Ok(())
            } else {
                Err(format!(
                    "uid {} is not root or the host member's user, and no [[host.allow]] names it",
                    peer.uid
                ))
            };
        }
        let Some(a) = self.allow.iter().find(|a| {
            a.users.contains(&peer.uid) || peer.gids.iter().any(|g| a.groups.contains(g))
        }) else {
            return Err(format!(
                "no [[host.allow]] names uid {} or its groups",
                peer.uid
            ));
        };
        if a.difs.as_ref().is_some_and(|d| !d.iter().any(|d| d == dif)) {
            return Err(format!(
                "the [[host.allow]] of line {} does not list DIF {dif:?}",
                a.line
            ));
        }
        if let (Some(name), Some(pats)) = (name, &a.names) {
            if !pats
                .iter()
                .any(|p| NamePattern::new(p.clone()).matches(name))
            {
                return Err(format!(
                    "the [[host.allow]] of line {} does not let it register {name:?}",
                    a.line
                ));
            }
        }
        Ok(())
    }
}

/// The groups of process `pid` (`/proc/<pid>/status`), after `primary`.
pub fn groups_of(pid: u32, primary: u32) -> Vec<u32> {
    let mut gids = vec![primary];
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        if let Some(l) = s.lines().find_map(|l| l.strip_prefix("Groups:")) {
            gids.extend(l.split_whitespace().filter_map(|g| g.parse::<u32>().ok()));
        }
    }
    gids
}

/// The uid of user `name` (or a number), from `/etc/passwd`.
pub fn uid_of(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| id_in("/etc/passwd", name))
}

/// The gid of group `name` (or a number), from `/etc/group`.
pub fn gid_of(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| id_in("/etc/group", name))
}

/// The user (or group) name of `id` in `file`, or the number.
pub fn name_of(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

fn id_in(file: &str, name: &str) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gids: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn allow_rules_match_users_groups_difs_and_names() {
        let s = HostService {
            state: None,
            socket: HostSocket::parse("@h").unwrap(),
            allow: vec![
                HostAllow {
                    users: vec![1000],
                    groups: vec![],
                    difs: Some(vec!["net".into()]),
                    names: Some(vec!["web*".into()]),
                    line: 3,
                },
                HostAllow {
                    users: vec![],
                    groups: vec![50],
                    difs: None,
                    names: None,
                    line: 9,
                },
            ],
        };
        assert!(s.permits(&peer(1000, &[1000]), "net", Some("web1")).is_ok());
        assert!(s.permits(&peer(1000, &[1000]), "net", None).is_ok());
        let e = s
            .permits(&peer(1000, &[1000]), "net", Some("db"))
            .unwrap_err();
        assert!(e.contains("line 3") && e.contains("\"db\""), "{e}");
        assert!(s.permits(&peer(1000, &[1000]), "other", None).is_err());
        assert!(s.permits(&peer(7, &[7, 50]), "any", Some("x")).is_ok());
        let e = s.permits(&peer(7, &[7]), "net", None).unwrap_err();
        assert!(e.contains("uid 7"), "{e}");
    }

    #[test]
    fn socket_names() {
        assert_eq!(
            HostSocket::parse("@x"),
            Ok(HostSocket::Abstract("x".into()))
        );
        assert_eq!(
            HostSocket::parse("/run/rina.sock"),
            Ok(HostSocket::Path("/run/rina.sock".into()))
        );
        assert!(HostSocket::parse("@").is_err());
        assert!(HostSocket::parse("").is_err());
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("1234"), Some(1234));
        assert_eq!(name_of("/etc/passwd", 0), "root");
    }
}

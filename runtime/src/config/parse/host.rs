//! Validation of what concerns the host member: a program's `stack = "host"` (its
//! rules then name the host member's DIFs and declare none) and a host member's
//! `[host]` section (its socket and who may use it).

use toml::Spanned;

use super::raw::{RawFile, RawHost};
use super::{Validator, R};
use crate::config::{
    gid_of, uid_of, DifConfig, DifKind, HostAllow, HostService, HostSocket, StackMode,
    DEFAULT_HOST_SOCKET,
};

impl Validator<'_> {
    /// `stack` and `host-socket` of `[settings]`.
    pub(super) fn stack_mode(
        &self,
        stack: Option<&Spanned<String>>,
        socket: Option<&Spanned<String>>,
    ) -> R<StackMode> {
        let host = match stack.map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "embedded")) => false,
            Some((_, "host")) => true,
            Some((s, other)) => {
                return Err(self.error(
                    s.span(),
                    format!("unknown stack {other:?} (expected \"embedded\" or \"host\")"),
                ))
            }
        };
        if !host {
            if let Some(s) = socket {
                return Err(self.error(s.span(), "host-socket is only for stack = \"host\""));
            }
            return Ok(StackMode::Embedded);
        }
        let socket = match socket {
            Some(s) => self.host_socket(s)?,
            None => HostSocket::Abstract(DEFAULT_HOST_SOCKET[1..].to_owned()),
        };
        Ok(StackMode::Host(socket))
    }

    fn host_socket(&self, s: &Spanned<String>) -> R<HostSocket> {
        HostSocket::parse(s.get_ref()).map_err(|e| self.error(s.span(), e))
    }

    /// The DIFs a program served by the host member refers to: every DIF its rules
    /// name, in the order first named; it may declare none of its own.
    pub(super) fn host_difs(&self, raw: &RawFile) -> R<Vec<DifConfig>> {
        if let Some(d) = raw.dif.first() {
            return Err(self.error(
                d.span(),
                "a program served by the host member (stack = \"host\") declares no DIFs: \
                 its rules name the host member's",
            ));
        }
        let named = raw
            .connect
            .iter()
            .map(|r| r.get_ref().dif.get_ref())
            .chain(raw.listen.iter().map(|r| r.get_ref().dif.get_ref()))
            .chain(raw.name.iter().map(|r| r.get_ref().dif.get_ref()));
        let mut difs: Vec<DifConfig> = Vec::new();
        for name in named {
            if !difs.iter().any(|d| d.name == *name) {
                difs.push(DifConfig {
                    name: name.clone(),
                    kind: DifKind::Host,
                });
            }
        }
        Ok(difs)
    }

    /// `[host]`: where the host member listens, and who may use it.
    pub(super) fn host(&self, raw: Option<Spanned<RawHost>>) -> R<Option<HostService>> {
        let Some(raw) = raw else { return Ok(None) };
        let raw = raw.into_inner();
        let socket = match &raw.socket {
            Some(s) => self.host_socket(s)?,
            None => HostSocket::Abstract(DEFAULT_HOST_SOCKET[1..].to_owned()),
        };
        let mut allow = Vec::new();
        for a in raw.allow.unwrap_or_default() {
            let line = self.line_of(&a.span());
            let span = a.span();
            let a = a.into_inner();
            let ids =
                |list: &Option<Vec<Spanned<String>>>, what: &str, find: fn(&str) -> Option<u32>| {
                    list.iter()
                        .flatten()
                        .map(|u| {
                            find(u.get_ref()).ok_or_else(|| {
                                self.error(
                                    u.span(),
                                    format!("no {what} {:?} on this host", u.get_ref()),
                                )
                            })
                        })
                        .collect::<R<Vec<u32>>>()
                };
            let users = ids(&a.users, "user", uid_of)?;
            let groups = ids(&a.groups, "group", gid_of)?;
            if users.is_empty() && groups.is_empty() {
                return Err(self.error(span, "[[host.allow]] needs users or groups"));
            }
            let strings = |l: Option<Vec<Spanned<String>>>| {
                l.map(|v| v.into_iter().map(Spanned::into_inner).collect::<Vec<_>>())
            };
            allow.push(HostAllow {
                users,
                groups,
                difs: strings(a.difs),
                names: strings(a.names),
                line,
            });
        }
        let state = raw.state.as_ref().map(|s| {
            let p = std::path::Path::new(s.get_ref());
            self.path
                .parent()
                .map_or_else(|| p.to_path_buf(), |d| d.join(p))
        });
        Ok(Some(HostService {
            socket,
            allow,
            state,
        }))
    }
}

//! What a host member remembers across a restart: the names it registered for the
//! programs it serves, kept in a state file (`[host] state`, by default under
//! `/run/rina/`). A host member that starts again (after a crash, SIGKILL, an upgrade)
//! registers again every name whose listener (or datagram socket) is still held by a
//! program, once its DIF is joined and if the rules still allow its user: servers that
//! kept running are reachable again without being restarted.
//!
//! The file is the host member's own: written with mode 0600, and read only if this
//! user owns it and nobody else may write it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rina_core::Instant;
use serde::{Deserialize, Serialize};

use super::Driver;
use crate::api::{FlowError, Reply};
use crate::config::{HostService, HostSocket, Peer};
use crate::host::wire::{ListenMsg, Target};

/// One registration made for a program.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Registration {
    /// The program's user and groups when it registered.
    pub(super) uid: u32,
    pub(super) gids: Vec<u32>,
    /// What it asked for.
    pub(super) listen: ListenMsg,
    /// Tries to register it again so far (the previous host member's registration may
    /// still be in the directory until the DIF forgets that member).
    #[serde(skip)]
    pub(super) tries: u32,
}

/// How often a name another (gone) member still holds is tried again, and how many
/// times: past the bound in which a DIF forgets a member that vanished.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_TRIES: u32 = 120;

impl Registration {
    /// True while a program still holds the listener or the datagram socket.
    fn alive(&self, listeners: &std::collections::BTreeSet<Vec<u8>>) -> bool {
        match &self.listen.target {
            Target::Stream { name, .. } => listeners.contains(name),
            Target::Datagram(a) => !crate::handle::nobody_holds(*a),
        }
    }
}

/// Where the state of a host member serving at `rules.socket` goes when the rules say
/// nothing: `/run/rina/host-<network namespace>-<socket>.json`.
pub(super) fn path(rules: &HostService) -> PathBuf {
    if let Some(p) = &rules.state {
        return p.clone();
    }
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino());
    let name: String = match &rules.socket {
        HostSocket::Abstract(n) => n.clone(),
        HostSocket::Path(p) => p.display().to_string(),
    }
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        }
    })
    .collect();
    PathBuf::from(format!("/run/rina/host-{netns}-{name}.json"))
}

/// The registrations a previous host member left at `path` (none if there is no file,
/// or it is not ours alone).
pub(super) fn load(path: &Path) -> Vec<Registration> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me || meta.mode() & 0o022 != 0 {
        tracing::warn!(
            "host: {} is not this user's alone; its registrations are not restored",
            path.display()
        );
        return Vec::new();
    }
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes the registrations still alive to `path` (best effort: a host member that
/// cannot keep its state still serves).
pub(super) fn save(path: &Path, entries: &mut Vec<Registration>) {
    let listeners = super::keeper::live_listeners();
    entries.retain(|r| r.alive(&listeners));
    let Ok(text) = serde_json::to_vec(entries) else {
        return;
    };
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        tracing::warn!("host: cannot keep its state in {}: {e}", path.display());
    }
}

impl Driver {
    /// Registers again the names a previous host member held for programs that still
    /// hold their listeners, each once its DIF is joined.
    pub(super) fn restore_host(&mut self, now: Instant) {
        let Some(h) = self.host.as_mut() else { return };
        if now >= h.retry_at {
            let again = std::mem::take(&mut *h.retry.lock());
            if !again.is_empty() {
                h.to_restore.extend(again);
                h.retry_at = now + RETRY_EVERY;
            }
        }
        if h.to_restore.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut h.to_restore);
        let (ready, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|r| {
            self.host
                .as_ref()
                .and_then(|h| h.dif_index(&r.listen.dif))
                .and_then(|i| self.stack.dif_of(i))
                .is_some_and(|d| self.stack.node.dif(d).ipcp().is_enrolled())
        });
        if let Some(h) = self.host.as_mut() {
            h.to_restore = later;
        }
        if ready.is_empty() {
            return;
        }
        let listeners = super::keeper::live_listeners();
        for r in ready.into_iter().filter(|r| r.alive(&listeners)) {
            self.restore_one(now, r);
        }
    }

    fn restore_one(&mut self, now: Instant, r: Registration) {
        let peer = Peer {
            pid: 0,
            uid: r.uid,
            gids: r.gids.clone(),
        };
        let app = r.listen.app.clone();
        let req = match self.host_listen(&peer, r.listen.clone()) {
            Ok((req, _)) => req,
            Err(e) => {
                tracing::info!("host: {app} not registered again: {e}");
                return;
            }
        };
        let Some(retry) = self.host.as_ref().map(|h| h.retry.clone()) else {
            return;
        };
        let reply = Reply::then(
            move |res: Result<(), FlowError>| match res {
                Ok(()) => {
                    tracing::info!("host: {app} registered again for the program that holds it");
                }
                // The previous host member's entry, until the DIF forgets it.
                Err(FlowError::NameInUse(_)) if r.tries < MAX_TRIES => {
                    let mut r = r;
                    r.tries += 1;
                    retry.lock().push(r);
                }
                Err(e) => tracing::info!("host: {app} not registered again: {e}"),
            },
            Err(FlowError::RuntimeDown("stopped".into())),
        );
        self.listen(now, req, reply);
    }
}

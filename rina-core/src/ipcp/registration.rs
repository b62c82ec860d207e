//! Registration: the application names served at this member, for which kinds of
//! flow, and whether as one of a pool. Each change is published to the directory,
//! which every member replicates (see [`super::directory`]).

use crate::time::Instant;
use crate::wire::mgmt::{DirEntry, MgmtMessage};
use crate::{Address, ApplicationName};

use super::{FlowKinds, IpcProcess, RegisterError};

impl IpcProcess {
    /// Registers an application name at this member, for both kinds of flow, and
    /// floods it to the DIF.
    ///
    /// # Errors
    /// [`RegisterError::AlreadyRegistered`] if this member registered it before.
    pub fn register(&mut self, now: Instant, app: ApplicationName) -> Result<(), RegisterError> {
        self.register_for(now, app, FlowKinds::ALL)
    }

    /// Registers an application name for the flow kinds `kinds` (adding to the kinds
    /// it already accepts); the name is flooded to the DIF when first registered.
    ///
    /// # Errors
    /// [`RegisterError::AlreadyRegistered`] if every kind in `kinds` was registered
    /// before.
    pub fn register_for(
        &mut self,
        now: Instant,
        app: ApplicationName,
        kinds: FlowKinds,
    ) -> Result<(), RegisterError> {
        self.register_with(now, app, kinds, false)
    }

    /// As [`IpcProcess::register_for`]; `pool`: this member serves the name as one of a
    /// pool, which the directory tells every member (see [`Directory::holders`]). The
    /// first registration of the name decides.
    ///
    /// # Errors
    /// As [`IpcProcess::register_for`].
    ///
    /// [`Directory::holders`]: super::directory::Directory::holders
    pub fn register_with(
        &mut self,
        now: Instant,
        app: ApplicationName,
        kinds: FlowKinds,
        pool: bool,
    ) -> Result<(), RegisterError> {
        if !self.may_register_here(&app) {
            return Err(RegisterError::NotAllowed);
        }
        let had = self.registered.get(&app).copied();
        let before = had.unwrap_or_default();
        if kinds.minus(before).is_empty() {
            return Err(RegisterError::AlreadyRegistered);
        }
        if had.is_none() && pool {
            self.pooled.insert(app.clone());
        }
        self.registered.insert(app.clone(), before.union(kinds));
        if let (None, Some(a)) = (had, self.address) {
            self.publish_registration(now, &app, a, true);
        }
        Ok(())
    }

    /// Withdraws a registration (every kind).
    pub fn unregister(&mut self, now: Instant, app: &ApplicationName) {
        self.unregister_for(now, app, FlowKinds::ALL);
    }

    /// Stops accepting flows of `kinds` for `app`; the name is withdrawn from the DIF
    /// when no kind is left.
    pub fn unregister_for(&mut self, now: Instant, app: &ApplicationName, kinds: FlowKinds) {
        let Some(before) = self.registered.get(app).copied() else {
            return;
        };
        let left = before.minus(kinds);
        if !left.is_empty() {
            self.registered.insert(app.clone(), left);
            return;
        }
        self.registered.remove(app);
        self.pooled.remove(app);
        if let Some(a) = self.address {
            self.publish_registration(now, app, a, false);
        }
    }

    /// True if this member registered any name.
    pub fn has_registrations(&self) -> bool {
        !self.registered.is_empty()
    }

    /// True if this member registered `app` (for any kind of flow).
    pub fn is_registered(&self, app: &ApplicationName) -> bool {
        self.registered.contains_key(app)
    }

    pub(super) fn publish_registration(
        &mut self,
        now: Instant,
        app: &ApplicationName,
        a: Address,
        present: bool,
    ) {
        let e = DirEntry {
            app: app.clone(),
            address: a.0,
            seq: self.directory.seq(app, a) + 1,
            present,
            pool: self.pooled.contains(app),
        };
        self.directory.apply(&e, now);
        self.send_to_neighbors(now, &MgmtMessage::Directory(vec![e]), None);
    }
}
